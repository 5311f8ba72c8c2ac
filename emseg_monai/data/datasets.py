"""Datasets of 2D training samples drawn from (Z, Y, X) stacks held in memory."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from emseg_monai.transforms.windows import extract_windows


class StackSliceDataset(torch.utils.data.Dataset):
    """Samples ``{"image": (N, Y, X) float32, "label": (1, Y, X) float32, "slice": z}``.

    ``image`` is the window of N slices centred on z (N = 1 for stage 1, the SCM window for
    stage 2; stack ends repeat the end slice), ``label`` the target of slice z.

    Parameters
    ----------
    image : numpy.ndarray
        (Z, Y, X) float32 inputs (normalised image for stage 1, stage-1 outputs for the SCM).
    label : numpy.ndarray or None
        (Z, Y, X) bool or {0, 1} targets; None gives samples without ``label``.
    indices : sequence of int
        The slices z to draw from.
    window : int
        N, odd.
    length : int or None
        Dataset length; indices are cycled, so a few slices can fill a long epoch. Without indices
        the dataset is empty (a disabled validation still builds its evaluator).
    transform : callable or None
        Applied to each sample dict (MONAI dictionary transforms).
    """

    def __init__(
        self,
        image: np.ndarray,
        label: np.ndarray | None,
        indices: Sequence[int],
        window: int = 1,
        length: int | None = None,
        transform: Callable | None = None,
    ) -> None:
        self.image = image
        self.label = label
        self.indices = np.asarray(indices, dtype=np.int64)
        self.window = window
        self.length = (int(length) if length else len(self.indices)) if self.indices.size else 0
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        if not -self.length <= i < self.length:
            raise IndexError(f"sample {i} is outside the dataset of {self.length} samples")
        z = int(self.indices[i % len(self.indices)])
        sample = {"image": extract_windows(self.image, z, self.window).astype(np.float32), "slice": z}
        if self.label is not None:
            sample["label"] = np.asarray(self.label[z : z + 1], dtype=np.float32)
        if self.transform is None:
            return sample
        with warnings.catch_warnings():
            # a slice without mitochondria is a fine sample; MONAI's positive/negative crop warns on each
            warnings.filterwarnings("ignore", message="Num foregrounds 0", category=UserWarning)
            return self.transform(sample)
