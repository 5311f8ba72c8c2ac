"""Stacks prepared for training: inputs and targets in memory at the training resolution."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emseg_monai.data.normalize import normalize_stack, resize_slices, scaled_size
from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.errors import InputError
from emseg_monai.io.stacks import read_mask, read_stack
from emseg_monai.transforms.windows import scm_inputs

logger = logging.getLogger(__name__)


@dataclass
class TrainingStack:
    """What a training config needs from a stack, all (Z, y, x) at the training resolution.

    Attributes
    ----------
    image : numpy.ndarray
        float32 network input: the normalised image (stage 1) or stage-1 outputs (SCM).
    target : numpy.ndarray
        bool training targets: ground truth (stage 1), MPP masks (SCM); read on ``train_slices``.
    truth : numpy.ndarray or None
        bool ground truth for validation; read on ``val_slices``.
    train_slices, val_slices : numpy.ndarray
        int64 slice indices.
    """

    image: np.ndarray
    target: np.ndarray
    truth: np.ndarray | None
    train_slices: np.ndarray
    val_slices: np.ndarray


def select_val_slices(
    spec: str, labeled: np.ndarray, truth: np.ndarray | None, n_slices: int, max_slices: int
) -> np.ndarray:
    """Validation slices: ``"rest"`` (every slice not labeled), ``"none"`` or a slice spec.

    At most ``max_slices`` evenly spread slices are kept. Validation is dropped with a warning when
    the ground truth of every chosen slice is empty (a label stack annotated on labeled slices only).
    """
    if truth is None or str(spec).strip().lower() == "none":
        return np.zeros(0, dtype=np.int64)
    val = complement(labeled, n_slices) if str(spec).strip().lower() == "rest" else parse_slice_spec(spec, n_slices)
    if val.size > max_slices > 0:
        val = val[np.unique(np.round(np.linspace(0, val.size - 1, max_slices)).astype(int))]
    if val.size and not truth[val].any():
        logger.warning("validation slices have no foreground in the label stack; training without validation")
        return np.zeros(0, dtype=np.int64)
    return val


def require_labeled(spec: str | list[int], n_slices: int) -> np.ndarray:
    """``parse_slice_spec`` that refuses a spec selecting no slice (training needs at least one)."""
    labeled = parse_slice_spec(spec, n_slices)
    if labeled.size == 0:
        raise InputError(f"labeled slices {spec!r} select no slice of the {n_slices}; training needs at least one")
    return labeled


MIN_SIDE = 32  # a 4-level U-Net needs >= 2 px at its bottleneck for instance norm


def training_size(shape: tuple[int, ...], downsample: float) -> tuple[int, int]:
    """(y, x) of the slices at the training resolution; InputError when below ``MIN_SIDE``."""
    size = scaled_size(tuple(shape[-2:]), downsample)
    if min(size) < MIN_SIDE:
        raise InputError(
            f"slices of {shape[-2]} x {shape[-1]} px are {size[0]} x {size[1]} at downsample {downsample:g}, "
            f"smaller than the {MIN_SIDE} x {MIN_SIDE} the U-Net needs: use a smaller downsample (e.g. 1)"
        )
    return size


def load_stage1_stack(
    image_file: str | Path,
    label_file: str | Path,
    labeled_slices: str | list[int],
    val_slices: str = "rest",
    val_max_slices: int = 32,
    downsample: float = 1.0,
) -> TrainingStack:
    """Read an image stack and its label stack for stage-1 training.

    ``image`` is the normalised image; ``target`` and ``truth`` are the label stack (used on the
    labeled and validation slices respectively). Both are resized by 1 / ``downsample``.
    """
    image = read_stack(image_file)
    labels = read_mask(label_file, shape=image.shape)
    labeled = require_labeled(labeled_slices, image.shape[0])
    size = scaled_size(image.shape[1:], downsample)
    label_small = resize_slices(labels, size, binary=True)
    val = select_val_slices(val_slices, labeled, labels, image.shape[0], val_max_slices)
    logger.info("stage 1: %d labeled slices, %d validation slices, %s at %s", labeled.size, val.size, image.shape, size)
    return TrainingStack(resize_slices(normalize_stack(image), size), label_small, label_small, labeled, val)


def load_scm_stack(
    prob_file: str | Path,
    target_file: str | Path,
    label_file: str | Path | None,
    labeled_slices: str | list[int],
    train_slices: str = "all",
    input_kind: str = "prob",
    threshold: float = 0.5,
    val_slices: str = "rest",
    val_max_slices: int = 32,
    downsample: float = 1.0,
) -> TrainingStack:
    """Read stage-1 probabilities and MPP targets for SCM training.

    ``image`` holds the SCM inputs (see ``scm_inputs``), ``target`` the MPP masks (which equal the
    ground truth on the labeled slices), ``truth`` the label stack for validation (None without one).
    """
    prob = read_stack(prob_file)
    target = read_mask(target_file, shape=prob.shape)
    truth = read_mask(label_file, shape=prob.shape) if label_file else None
    labeled = require_labeled(labeled_slices, prob.shape[0])
    size = scaled_size(prob.shape[1:], downsample)
    train = parse_slice_spec(train_slices, prob.shape[0])
    val = select_val_slices(val_slices, labeled, truth, prob.shape[0], val_max_slices)
    logger.info(
        "SCM: %d training slices, %d validation slices, inputs %r at %s", train.size, val.size, input_kind, size
    )
    return TrainingStack(
        resize_slices(scm_inputs(prob, input_kind, threshold), size),
        resize_slices(target, size, binary=True),
        None if truth is None else resize_slices(truth, size, binary=True),
        train,
        val,
    )
