"""Run a 2D network over every slice (or slice window) of a (Z, Y, X) stack."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from emseg_monai.data.normalize import resize_slices, resize_tensor, scaled_size
from emseg_monai.transforms.windows import SMOOTHING_TRUNCATE, check_window, smoothing_sigmas, window_indices

logger = logging.getLogger(__name__)


def predict_stack(
    network: torch.nn.Module,
    stack: np.ndarray,
    window: int = 1,
    downsample: float = 1.0,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    flips: bool = False,
    desc: str = "predict",
    progress: bool = True,
    centers: np.ndarray | None = None,
    tile: int = 1024,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    smoothing: float = 0.0,
    smoothing_z: float | None = None,
) -> np.ndarray:
    """Probabilities of a one-output-channel 2D network for every slice of a stack (or ``centers``).

    The stack is first resized by 1 / ``downsample`` in Y and X; the network sees, for each slice
    z, the N = ``window`` slices z - N//2 .. z + N//2 (stack ends repeat the end slice); its
    sigmoid output is resized back to the full (Y, X).

    Parameters
    ----------
    network : torch.nn.Module
        Maps (B, N, y, x) float32 to (B, 1, y, x) logits.
    stack : numpy.ndarray
        (Z, Y, X) float32 input in [0, 1] (normalised image, or stage-1 outputs for the SCM), or
        any array that ``prepare`` maps to that.
    window : int
        N, odd.
    downsample : float
        Resolution factor (>= 1) at which the network runs.
    batch_size : int
        Slices per forward pass.
    device : str or torch.device
        Where the network runs.
    flips : bool
        Average the 4 flips (none, Y, X, both) at test time.
    desc : str
        Progress bar label.
    centers : numpy.ndarray or None
        Only these slice indices (their windows still read the neighbours); None: every slice.
    tile : int
        Slices larger than ``tile`` x ``tile`` at the network's resolution are predicted in
        overlapping tiles of that size, blended with Gaussian weights (MONAI sliding-window
        inference), which bounds the network's memory; 0: never tile.
    prepare : callable or None
        Per-voxel map (Z, Y, X) -> float32 applied 16 slices at a time before resizing (e.g.
        intensity normalisation of a raw uint8 stack), so no float copy of the full stack is made.
    smoothing : float
        > 0: a 3D Gaussian of this standard deviation (in slices and in network pixels) on the
        output probabilities at the network's resolution, before they are resized back (a float32
        copy of the outputs at that resolution is then held). It reads the outputs of all
        ``centers`` (the stack's ends mirrored), so callers widen ``centers`` by ``smoothing_reach``.
    smoothing_z : float or None
        The Gaussian's standard deviation along Z alone (``smoothing`` then acts in Y and X); None:
        ``smoothing`` along Z too. The reach of this one is what callers widen ``centers`` by.

    Returns
    -------
    numpy.ndarray
        (Z, Y, X) uint8 probabilities scaled to 0..255 (the stage files' format; divide by 255);
        (len(centers), Y, X) with ``centers``.
    """
    window = check_window(window)
    if stack.ndim != 3:
        raise ValueError(f"predict_stack expects a (Z, Y, X) stack, got shape {stack.shape}")
    n, full = stack.shape[0], tuple(stack.shape[1:])
    small = scaled_size(full, downsample)
    device = torch.device(device)
    reduced = resize_slices(stack, small, prepare=prepare)
    wanted = np.arange(n) if centers is None else np.asarray(centers, dtype=np.int64)
    out = np.empty((wanted.size, *full), dtype=np.uint8)
    network.eval()
    batches = range(0, wanted.size, batch_size)
    sigma = smoothing_sigmas(smoothing, smoothing_z)
    low = np.empty((wanted.size, *small), np.float32) if max(sigma) > 0 else None
    with torch.inference_mode():
        for start in tqdm(batches, desc=desc, unit="batch", disable=None if progress else True, leave=False):
            batch_centers = wanted[start : start + batch_size]
            batch = torch.from_numpy(reduced[window_indices(batch_centers, n, window)]).to(device)
            prob = _forward_tiled(network, batch, flips, tile)
            if low is not None:  # resized after the smoothing, below
                low[start : start + batch_centers.size] = prob[:, 0].float().cpu().numpy()
                continue
            out[start : start + batch_centers.size] = _to_full(prob, full)
        if low is not None:
            from scipy.ndimage import gaussian_filter

            gaussian_filter(low, sigma, output=low, mode="reflect", truncate=SMOOTHING_TRUNCATE)
            for start in batches:
                stop = min(start + batch_size, wanted.size)
                out[start:stop] = _to_full(torch.from_numpy(low[start:stop, None]).to(device), full)
    return out


def _to_full(prob: torch.Tensor, full: tuple[int, int]) -> np.ndarray:
    """(B, 1, y, x) probabilities -> (B, Y, X) uint8 0..255 at the full slice size."""
    prob = resize_tensor(prob, full).clamp_(0, 1)
    return torch.round(prob[:, 0] * 255).to(torch.uint8).cpu().numpy()


MIN_SIZE = 32  # a 4-level U-Net needs >= 2 px at its bottleneck for instance norm


def _forward_tiled(network: torch.nn.Module, batch: torch.Tensor, flips: bool, tile: int) -> torch.Tensor:
    """``_forward``, over overlapping ``tile`` x ``tile`` tiles when a slice is larger than that."""
    if tile <= 0 or (batch.shape[-2] <= tile and batch.shape[-1] <= tile):
        return _forward(network, batch, flips)
    from monai.inferers import sliding_window_inference

    tile = max(int(tile), MIN_SIZE)
    return sliding_window_inference(
        batch,
        roi_size=(min(tile, batch.shape[-2]), min(tile, batch.shape[-1])),
        sw_batch_size=1,
        predictor=lambda x: _forward(network, x, flips),
        overlap=0.25,
        mode="gaussian",
    )


def _forward(network: torch.nn.Module, batch: torch.Tensor, flips: bool) -> torch.Tensor:
    height, width = batch.shape[-2:]
    if height < MIN_SIZE or width < MIN_SIZE:  # tiny slices: replicate-pad, predict, crop back
        pad = (0, max(0, MIN_SIZE - width), 0, max(0, MIN_SIZE - height))
        return _forward(network, F.pad(batch, pad, mode="replicate"), flips)[..., :height, :width]
    if not flips:
        return torch.sigmoid(network(batch))
    total = torch.zeros((batch.shape[0], 1, *batch.shape[2:]), device=batch.device)
    for dims in ((), (2,), (3,), (2, 3)):
        flipped = batch.flip(dims) if dims else batch
        pred = torch.sigmoid(network(flipped))
        total += pred.flip(dims) if dims else pred
    return total / 4
