"""Foreground Dice and IoU, pooled over all voxels of a stack and per slice."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emseg_monai.errors import InputError
from emseg_monai.io.stacks import atomic_write


def _check(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise InputError(f"prediction shape {pred.shape} differs from ground-truth shape {truth.shape}")
    return pred, truth


def counts(pred: np.ndarray, truth: np.ndarray, axis: tuple[int, ...] | None = None) -> tuple[np.ndarray, ...]:
    """True-positive, false-positive and false-negative voxel counts (summed over ``axis``)."""
    pred, truth = _check(pred, truth)
    tp = np.logical_and(pred, truth).sum(axis=axis)
    fp = np.logical_and(pred, ~truth).sum(axis=axis)
    fn = np.logical_and(~pred, truth).sum(axis=axis)
    return tp, fp, fn


def _scores(tp, fp, fn) -> tuple[np.ndarray, np.ndarray]:
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    union = tp + fp + fn
    dice = np.where(union > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 1.0)
    iou = np.where(union > 0, tp / np.maximum(union, 1), 1.0)
    return dice, iou


def dice_iou(pred: np.ndarray, truth: np.ndarray, slices: Sequence[int] | None = None) -> tuple[float, float]:
    """Foreground Dice and IoU pooled over every voxel of the (selected slices of the) stack.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        (Z, Y, X) masks, bool or {0, 1} / {0, 255}.
    slices : sequence of int or None
        Restrict to these slices (e.g. the unlabeled ones).

    Returns
    -------
    (dice, iou) : floats in [0, 1]; both 1.0 when both masks are empty.

    Examples
    --------
    >>> a = np.zeros((1, 2, 2), bool); a[0, 0] = True
    >>> dice_iou(a, a)
    (1.0, 1.0)
    """
    pred, truth = _check(pred, truth)
    if slices is not None:
        chosen = np.asarray(slices, dtype=np.int64)
        if chosen.size == 0:
            raise InputError("no slice to score: the slice selection is empty")
        pred, truth = pred[chosen], truth[chosen]
    dice, iou = _scores(*counts(pred, truth))
    return float(dice), float(iou)


def per_slice_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per-slice ``dice``, ``iou``, ``tp``, ``fp``, ``fn`` arrays of length Z for (Z, Y, X) masks."""
    tp, fp, fn = counts(pred, truth, axis=(1, 2))
    dice, iou = _scores(tp, fp, fn)
    return {"slice": np.arange(len(tp)), "dice": dice, "iou": iou, "tp": tp, "fp": fp, "fn": fn}


def write_per_slice_csv(
    path: str | Path, pred: np.ndarray, truth: np.ndarray, overwrite: bool = True, slices: np.ndarray | None = None
) -> Path:
    """Write one row per slice (slice, dice, iou, tp, fp, fn) to a CSV file, atomically.

    ``slices`` gives the slice numbers of the rows when ``pred`` and ``truth`` hold a selection.
    """
    scores = per_slice_scores(pred, truth)
    if slices is not None:
        scores["slice"] = np.asarray(slices, dtype=np.int64)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(list(scores))
    for row in zip(*scores.values()):
        writer.writerow([f"{v:.6f}" if isinstance(v, float) else int(v) for v in row])
    return atomic_write(path, lambda tmp: tmp.write_text(text.getvalue()), overwrite=overwrite)


def markdown_table(
    rows: Sequence[tuple[str, float, float]], header: tuple[str, str, str] = ("method", "Dice (%)", "IoU (%)")
) -> str:
    """Markdown table of (name, dice, iou) rows, scores given in [0, 1] and shown in % with 2 decimals."""
    lines = [f"| {header[0]} | {header[1]} | {header[2]} |", "|---|---:|---:|"]
    lines += [f"| {name} | {100 * d:.2f} | {100 * i:.2f} |" for name, d, i in rows]
    return "\n".join(lines)
