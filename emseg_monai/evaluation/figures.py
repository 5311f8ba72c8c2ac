"""Pictures of a segmentation: error overlay of a slice and Dice along Z."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from emseg_monai.evaluation.metrics import per_slice_scores
from emseg_monai.io.stacks import atomic_write

TP_COLOR = (0, 200, 0)  # green: mitochondrion found
FN_COLOR = (230, 0, 0)  # red: mitochondrion missed
FP_COLOR = (0, 90, 255)  # blue: background called mitochondrion


def overlay_rgb(image: np.ndarray, pred: np.ndarray, truth: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Colour the errors of one (Y, X) slice over its grey image, as in the paper's figure.

    Parameters
    ----------
    image : numpy.ndarray
        (Y, X) grey slice of any numeric dtype (scaled by its 0.5 and 99.5 percentiles).
    pred, truth : numpy.ndarray
        (Y, X) masks (bool, {0, 1} or {0, 255}).
    alpha : float
        Opacity of the colours.

    Returns
    -------
    numpy.ndarray
        (Y, X, 3) uint8 RGB: true positives green, false negatives red, false positives blue.
    """
    pred, truth = np.asarray(pred) > 0, np.asarray(truth) > 0
    if not image.shape == pred.shape == truth.shape or image.ndim != 2:
        raise ValueError(f"overlay needs (Y, X) arrays of one shape, got {image.shape}, {pred.shape}, {truth.shape}")
    lo, hi = np.percentile(image, (0.5, 99.5))
    grey = np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for where, color in ((pred & truth, TP_COLOR), (~pred & truth, FN_COLOR), (pred & ~truth, FP_COLOR)):
        rgb[where] = (1 - alpha) * rgb[where] + alpha * np.asarray(color, dtype=np.float32)
    return rgb.round().astype(np.uint8)


def save_overlay(
    path: str | Path, image: np.ndarray, pred: np.ndarray, truth: np.ndarray, overwrite: bool = True
) -> Path:
    """Write ``overlay_rgb`` of one slice as a PNG file, atomically."""
    from PIL import Image

    rgb = overlay_rgb(image, pred, truth)
    return atomic_write(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="PNG"), overwrite=overwrite)


def save_dice_along_z(
    path: str | Path,
    runs: Mapping[str, np.ndarray],
    truth: np.ndarray,
    labeled: np.ndarray | None = None,
    overwrite: bool = True,
    slices: np.ndarray | None = None,
) -> Path:
    """Plot per-slice Dice along Z of one or more (Z, Y, X) predictions against ``truth`` (PNG).

    ``slices`` gives the slice numbers (x positions) when the stacks hold a selection of slices.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    for name, pred in runs.items():
        dice = per_slice_scores(pred, truth)["dice"] * 100
        z = np.arange(len(dice)) if slices is None else np.asarray(slices)
        ax.plot(z, dice, label=name, lw=1.2, marker="o" if len(dice) < 40 else None, ms=3)
    if labeled is not None and len(labeled):
        ax.vlines(labeled, *ax.get_ylim(), colors="0.8", lw=0.6, label="labeled slices", zorder=0)
    ax.set_xlabel("slice z")
    ax.set_ylabel("Dice (%)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), overwrite=overwrite)
    finally:
        plt.close(fig)


def save_training_curves(path: str | Path, histories: Mapping[str, str | Path], overwrite: bool = True) -> Path:
    """Plot training loss and validation Dice per epoch of one or more runs (PNG).

    ``histories`` maps a name ("stage 1", "SCM") to a history CSV written during training
    (``TrainingHistory``: epoch, loss, val_dice, ...). Left panel: mean training loss per epoch;
    right panel: validation Dice (%) where the run validated.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emseg_monai.handlers.history import read_history

    fig, (loss_ax, dice_ax) = plt.subplots(1, 2, figsize=(9, 3.2))
    any_dice = False
    for name, csv_file in histories.items():
        rows = read_history(csv_file)
        epochs = [int(r["epoch"]) for r in rows if r["loss"]]
        loss_ax.plot(epochs, [float(r["loss"]) for r in rows if r["loss"]], label=name, lw=1.2)
        val = [(int(r["epoch"]), 100 * float(r["val_dice"])) for r in rows if r["val_dice"]]
        if val:
            any_dice = True
            dice_ax.plot(*zip(*val), marker="o", ms=3, label=name, lw=1.2)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss (Dice + BCE)")
    loss_ax.legend(fontsize=8)
    dice_ax.set_xlabel("epoch")
    dice_ax.set_ylabel("validation Dice (%)")
    if any_dice:
        dice_ax.legend(fontsize=8)
    else:
        dice_ax.text(0.5, 0.5, "no validation", ha="center", va="center", transform=dice_ax.transAxes)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), overwrite=overwrite)
    finally:
        plt.close(fig)


def save_run_curves(run: str | Path, output: str | Path | None = None, overwrite: bool = False) -> Path:
    """``save_training_curves`` of a training run folder's ``stage1_history.csv`` / ``scm_history.csv``.

    Writes ``output`` (default ``RUN/training_curves.png``); InputError when the run has no history.
    """
    from emseg_monai.errors import InputError
    from emseg_monai.io.stacks import check_output_path

    run = Path(run)
    if not run.is_dir():
        raise InputError(f"training run folder does not exist: {run}")
    histories = {
        name: run / f"{stem}_history.csv"
        for name, stem in (("stage 1", "stage1"), ("SCM", "scm"))
        if (run / f"{stem}_history.csv").is_file()
    }
    if not histories:
        raise InputError(f"no stage1_history.csv or scm_history.csv in {run} (written by emseg train)")
    path = check_output_path(Path(output) if output else run / "training_curves.png", overwrite=overwrite)
    return save_training_curves(path, histories, overwrite=overwrite)
