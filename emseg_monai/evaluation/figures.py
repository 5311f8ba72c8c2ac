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


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, overwrite: bool) -> Path:
    plt = pyplot()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), overwrite=overwrite)
    finally:
        plt.close(fig)


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    pred: np.ndarray,
    truth: np.ndarray,
    overwrite: bool = True,
    z: int | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG of ``overlay_rgb`` of one (Y, X) slice with a legend, the slice number and its Dice.

    The picture is at least 6 inches (660 px) wide whatever the slice size, pixels drawn without
    smoothing. ``z`` is the slice's index in its stack; ``title`` names the segmentation shown.
    """
    from matplotlib.patches import Patch

    plt = pyplot()
    rgb = overlay_rgb(image, pred, truth)
    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    total = int(p.sum() + t.sum())
    dice = 2 * int((p & t).sum()) / total if total else 1.0
    width = 6.0
    fig, ax = plt.subplots(figsize=(width, width * rgb.shape[0] / rgb.shape[1] + 0.9))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    where = f"slice {z}" if z is not None else "slice"
    ax.set_title(f"{title + ': ' if title else ''}{where}, Dice {100 * dice:.2f}%", fontsize=10)
    handles = [
        Patch(color=np.asarray(TP_COLOR) / 255, label="found (true positive)"),
        Patch(color=np.asarray(FN_COLOR) / 255, label="missed (false negative)"),
        Patch(color=np.asarray(FP_COLOR) / 255, label="extra (false positive)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save_figure(fig, path, overwrite)


def save_dice_along_z(
    path: str | Path,
    runs: Mapping[str, np.ndarray],
    truth: np.ndarray,
    labeled: np.ndarray | None = None,
    overwrite: bool = True,
    slices: np.ndarray | None = None,
) -> Path:
    """Plot per-slice Dice along Z of one or more (Z, Y, X) predictions against ``truth`` (PNG).

    Each run's pooled Dice is a dashed line; ``labeled`` slices (whose labels trained the model) are
    marked; ``slices`` gives the slice numbers (x positions) when the stacks hold a selection.
    """
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for name, pred in runs.items():
        scores = per_slice_scores(pred, truth)
        dice = scores["dice"] * 100
        z = np.arange(len(dice)) if slices is None else np.asarray(slices)
        (line,) = ax.plot(z, dice, label=name, lw=1.2, marker="o" if len(dice) < 40 else None, ms=3)
        tp, fp, fn = (scores[k].sum() for k in ("tp", "fp", "fn"))
        pooled = 200 * tp / max(2 * tp + fp + fn, 1)
        ax.axhline(pooled, color=line.get_color(), ls="--", lw=0.8, label=f"{name}: all slices {pooled:.2f}%")
    if labeled is not None and len(labeled):
        ax.vlines(
            labeled, 0, 1, transform=ax.get_xaxis_transform(), colors="0.8", lw=0.6, zorder=0, label="labeled slices"
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("slice z")
    ax.set_ylabel("Dice (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path, overwrite)


def save_training_curves(path: str | Path, histories: Mapping[str, str | Path], overwrite: bool = True) -> Path:
    """Plot training loss and validation Dice per epoch of one or more runs (PNG).

    ``histories`` maps a name ("stage 1", "SCM") to a history CSV written during training
    (``TrainingHistory``: epoch, loss, val_dice, ...). Left panel: mean training loss per epoch;
    right panel: validation Dice (%) where the run validated.
    """
    from matplotlib.ticker import MaxNLocator

    from emseg_monai.handlers.history import read_history

    plt = pyplot()
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
    for axis in (loss_ax, dice_ax):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
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
    return save_figure(fig, path, overwrite)


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
