"""Resampling of (Z, Y, X) stacks shared by training and inference (and the intensity normalisation
of ``transforms.stacks``, re-exported)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from emseg_monai.transforms.stacks import intensity_range, normalize_stack

__all__ = ["intensity_range", "normalize_stack", "resize_slices", "resize_tensor", "scaled_size"]


def resize_slices(
    stack: np.ndarray,
    size: tuple[int, int],
    binary: bool = False,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Resize every slice of a (Z, Y, X) stack to ``size`` = (Y', X').

    Area averaging when shrinking and bilinear when enlarging; with ``binary`` the result is
    thresholded at 0.5 and returned as bool. Returns float32 (or bool); the input is not modified.
    ``prepare`` (a per-voxel map, e.g. intensity normalisation) is applied to 16 slices at a time
    before resizing, so no full-resolution float copy of the whole stack is made.
    """
    out = np.empty((stack.shape[0], *size), dtype=np.float32)
    for start in range(0, stack.shape[0], 16):
        chunk = np.asarray(stack[start : start + 16])
        chunk = np.asarray(prepare(chunk) if prepare is not None else chunk, dtype=np.float32)
        if tuple(stack.shape[1:]) == tuple(size):
            out[start : start + 16] = chunk
        else:
            out[start : start + 16] = resize_tensor(torch.from_numpy(chunk)[:, None], size)[:, 0].numpy()
    return out >= 0.5 if binary else out


def resize_tensor(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a (B, C, H, W) float tensor: area when shrinking, bilinear otherwise."""
    if tuple(batch.shape[-2:]) == tuple(size):
        return batch
    if size[0] <= batch.shape[-2] and size[1] <= batch.shape[-1]:
        return F.interpolate(batch, size=size, mode="area")
    return F.interpolate(batch, size=size, mode="bilinear", align_corners=False)


def scaled_size(shape: tuple[int, int], downsample: float) -> tuple[int, int]:
    """(Y, X) after dividing by ``downsample``, rounded, at least 1."""
    if not downsample >= 1:
        raise ValueError(f"downsample must be >= 1, got {downsample}")
    return max(1, round(shape[0] / downsample)), max(1, round(shape[1] / downsample))
