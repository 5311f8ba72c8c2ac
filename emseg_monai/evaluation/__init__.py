"""Evaluation: Dice and IoU pooled over the stack and per slice, reports."""

from emseg_monai.evaluation.figures import overlay_rgb, save_dice_along_z, save_overlay
from emseg_monai.evaluation.metrics import (
    counts,
    dice_iou,
    markdown_table,
    per_slice_scores,
    write_per_slice_csv,
)
from emseg_monai.evaluation.report import evaluate_files, evaluate_masks

__all__ = [
    "evaluate_files",
    "evaluate_masks",
    "overlay_rgb",
    "save_dice_along_z",
    "save_overlay",
    "counts",
    "dice_iou",
    "markdown_table",
    "per_slice_scores",
    "write_per_slice_csv",
]
