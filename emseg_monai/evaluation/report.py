"""Evaluate mask files against ground truth: pooled scores, per-slice CSV, JSON summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from emseg_monai.data.slices import parse_slice_spec
from emseg_monai.evaluation.metrics import dice_iou, write_per_slice_csv
from emseg_monai.io.stacks import atomic_write, read_mask

logger = logging.getLogger(__name__)


def evaluate_files(
    pred_file: str | Path,
    label_file: str | Path,
    slices: str = "all",
    csv_file: str | Path | None = None,
    json_file: str | Path | None = None,
    overwrite: bool = True,
) -> dict:
    """Dice and IoU of a predicted mask stack against a ground-truth stack (both 0/1 or 0/255).

    Parameters
    ----------
    pred_file, label_file : path
        (Z, Y, X) mask stacks of the same shape.
    slices : str
        Slice spec of the slices scored (``"all"``, ``"0:40:2"``, ...); scores pool their voxels.
    csv_file : path or None
        Write per-slice scores of every slice here.
    json_file : path or None
        Write the summary dict here.

    Returns
    -------
    dict
        ``dice``, ``iou`` (floats in [0, 1]), ``slices`` (how many were scored), ``pred``, ``truth``.
    """
    pred = read_mask(pred_file)
    truth = read_mask(label_file, shape=pred.shape)
    return evaluate_masks(pred, truth, slices, csv_file, json_file, overwrite, names=(pred_file, label_file))


def evaluate_masks(
    pred: np.ndarray,
    truth: np.ndarray,
    slices: str = "all",
    csv_file: str | Path | None = None,
    json_file: str | Path | None = None,
    overwrite: bool = True,
    names: tuple[str | Path, str | Path] = ("prediction", "ground truth"),
) -> dict:
    """``evaluate_files`` on (Z, Y, X) bool masks already in memory; ``names`` label them in the summary."""
    pred_file, label_file = names
    chosen = parse_slice_spec(slices, pred.shape[0])
    dice, iou = dice_iou(pred, truth, chosen)
    summary = {"dice": dice, "iou": iou, "slices": int(chosen.size), "pred": str(pred_file), "truth": str(label_file)}
    if csv_file:
        write_per_slice_csv(csv_file, pred, truth, overwrite=overwrite)
    if json_file:
        atomic_write(json_file, lambda tmp: tmp.write_text(json.dumps(summary, indent=2)), overwrite=overwrite)
    logger.info(
        "%s vs %s on %d slices: Dice %.2f%%, IoU %.2f%%", pred_file, label_file, chosen.size, 100 * dice, 100 * iou
    )
    return summary
