"""Whole-stack transforms of inference: intensities to [0, 1], probabilities to masks.

Both work on (Z, Y, X) arrays or channel-first (C, Z, Y, X) MONAI arrays, numpy or torch, and
never modify their input.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from emseg_monai.errors import InputError
from emseg_monai.options import as_float


def intensity_range(stack: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> tuple[float, float]:
    """Percentiles of a subsample of ``stack`` used to map intensities to [0, 1].

    Every ``Z // 32``-th slice (all slices of stacks under 64; 32 to 63 slices of larger ones) and every
    4th pixel in Y and X are read, so this is cheap on large stacks.
    """
    step_z = max(1, stack.shape[0] // 32)
    sample = np.asarray(stack[::step_z, ::4, ::4], dtype=np.float32)
    lo, hi = np.percentile(sample, (lower, upper))
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def normalize_stack(stack: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Map a (Z, Y, X) stack of any numeric dtype to float32, percentiles 0.5..99.5 -> 0..1, clipped.

    Returns a new float32 array of the same shape; the input is not modified.
    """
    lo, hi = intensity_range(stack) if value_range is None else value_range
    out = np.asarray(stack, dtype=np.float32) - lo
    out *= 1.0 / (hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def to_mask(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """uint8 0/255 mask (same shape) from probabilities: uint8 0..255 (x 255) or float 0..1, >= ``threshold``."""
    prob = np.asarray(prob)
    scale = 255 if prob.dtype == np.uint8 else 1
    return (prob >= np.float32(threshold) * scale).astype(np.uint8) * np.uint8(255)


def _numpy(data: Any) -> np.ndarray:
    return data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)


def _like(result: np.ndarray, data: Any) -> Any:
    """``result`` as the type of ``data``: a tensor (MetaTensor keeps its metadata) or numpy."""
    if isinstance(data, torch.Tensor):
        out = torch.from_numpy(result)
        if hasattr(data, "copy_meta_from"):
            from monai.data import MetaTensor

            out = MetaTensor(out)
            out.copy_meta_from(data, copy_attr=False)
        return out
    return result


class NormalizeStack(Transform):
    """Map a stack's intensities to float32 [0, 1]: its 0.5 and 99.5 percentiles to 0 and 1, clipped.

    The percentiles come from a subsample of the whole stack (every Z // 32-th slice, every 4th pixel:
    ``intensity_range``), the same range block-wise inference uses, so both give the same masks.

    Examples
    --------
    >>> stack = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8)
    >>> out = NormalizeStack()(stack)
    >>> out.dtype, float(out.min()), float(out.max())
    (dtype('float32'), 0.0, 1.0)
    """

    def __call__(self, stack: Any) -> Any:  # type: ignore[override]
        array = _numpy(stack)
        if array.ndim == 4 and array.shape[0] == 1:
            volume = array[0]
        elif array.ndim == 3:
            volume = array
        else:
            raise InputError(f"NormalizeStack expects a (Z, Y, X) or (1, Z, Y, X) stack, got shape {array.shape}")
        return _like(normalize_stack(array, intensity_range(volume)), stack)


class NormalizeStackd(MapTransform):
    """Dictionary form of ``NormalizeStack``."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalize = NormalizeStack()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalize(d[key])
        return d


class ProbToMask(Transform):
    """uint8 0/255 masks from probabilities: uint8 0..255 (x 255) or float 0..1, >= ``threshold``.

    Examples
    --------
    >>> ProbToMask(0.5)(np.array([[[0, 127, 128, 255]]], np.uint8)).tolist()
    [[[0, 0, 255, 255]]]
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = as_float(threshold, "threshold", 0.0, 1.0)

    def __call__(self, prob: Any) -> Any:  # type: ignore[override]
        return _like(to_mask(_numpy(prob), self.threshold), prob)


class ProbToMaskd(MapTransform):
    """Dictionary form of ``ProbToMask``."""

    def __init__(self, keys: KeysCollection, threshold: float = 0.5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.to_mask = ProbToMask(threshold)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.to_mask(d[key])
        return d
