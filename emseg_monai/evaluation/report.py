"""Evaluate mask files against ground truth: pooled scores, per-slice CSV, JSON summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from emseg_monai.data.slices import parse_slice_spec
from emseg_monai.errors import InputError
from emseg_monai.evaluation.figures import save_dice_along_z, save_overlay
from emseg_monai.evaluation.metrics import dice_iou, write_per_slice_csv
from emseg_monai.io.stacks import atomic_write, check_output_path, read_stack
from emseg_monai.io.volumes import read_whole
from emseg_monai.options import as_bool, optional_path

logger = logging.getLogger(__name__)


def evaluate_files(
    pred_file: str | Path,
    label_file: str | Path,
    slices: str = "all",
    csv_file: str | Path | None = None,
    json_file: str | Path | None = None,
    overwrite: bool = True,
    image_file: str | Path | None = None,
    overlay_file: str | Path | None = None,
    overlay_slice: int | None = None,
    dice_plot_file: str | Path | None = None,
) -> dict:
    """Dice and IoU of a predicted mask stack against a ground-truth stack (both 0/1 or 0/255).

    Every output is checked before anything is computed; unset (None or empty) outputs are skipped.

    Parameters
    ----------
    pred_file, label_file : path
        (Z, Y, X) mask stacks of the same shape.
    slices : str
        Slice spec of the slices scored (``"all"``, ``"0:40:2"``, ...); scores pool their voxels.
    csv_file : path or None
        Write per-slice scores of the scored slices here.
    json_file : path or None
        Write the summary dict here.
    image_file, overlay_file, overlay_slice : path, path, int
        Draw slice ``overlay_slice`` (default: the middle one) of the image with the errors
        (true positives green, false negatives red, false positives blue) as a PNG.
    dice_plot_file : path or None
        Plot Dice along Z of the scored slices as a PNG.

    Returns
    -------
    dict
        ``dice``, ``iou`` (floats in [0, 1]), ``slices`` (how many were scored), ``pred``, ``truth``,
        ``written`` (the files written).
    """
    overwrite = as_bool(overwrite, "overwrite")
    csv_file, json_file, image_file, overlay_file, dice_plot_file = (
        optional_path(p) for p in (csv_file, json_file, image_file, overlay_file, dice_plot_file)
    )
    for extra in (csv_file, json_file, overlay_file, dice_plot_file):
        if extra:
            check_output_path(extra, overwrite=overwrite)
    if overlay_file and not image_file:
        raise InputError("--overlay needs --image (image_file), the image stack to draw on")
    pred = read_whole(pred_file, mask=True)
    truth = read_whole(label_file, mask=True, shape=pred.shape)
    summary = evaluate_masks(pred, truth, slices, csv_file, json_file, overwrite, names=(pred_file, label_file))
    written = [str(p) for p in (csv_file, json_file) if p]
    if dice_plot_file:
        chosen = parse_slice_spec(slices, pred.shape[0])
        plot = save_dice_along_z(
            dice_plot_file, {Path(str(pred_file)).name: pred[chosen]}, truth[chosen], None, overwrite, chosen
        )
        written.append(str(plot))
    if overlay_file:
        image = read_stack(image_file)
        if image.shape != pred.shape:
            raise InputError(f"image {image_file} has shape {image.shape}, the masks {pred.shape}")
        z = pred.shape[0] // 2 if overlay_slice is None else int(overlay_slice)
        if not 0 <= z < pred.shape[0]:
            raise InputError(f"overlay slice {z} is outside the stack of {pred.shape[0]} slices")
        written.append(str(save_overlay(overlay_file, image[z], pred[z], truth[z], overwrite, z, Path(pred_file).name)))
    return {**summary, "written": written}


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
        write_per_slice_csv(csv_file, pred[chosen], truth[chosen], overwrite=overwrite, slices=chosen)
    if json_file:
        atomic_write(json_file, lambda tmp: tmp.write_text(json.dumps(summary, indent=2)), overwrite=overwrite)
    logger.info(
        "%s vs %s on %d slices: Dice %.2f%%, IoU %.2f%%", pred_file, label_file, chosen.size, 100 * dice, 100 * iou
    )
    return summary
