"""One Z block of a lazily read volume: its stage-1 probabilities, its mask, and its done-markers.

Block-wise segmentation cuts the volume into blocks of slices along Z and runs two passes:
stage 1 on each block (``block_probs``, written to a scratch array), then the SCM on each block
read with N//2 slices of halo on each side, plus the reach of the smoothing (``block_mask``), so
every N-slice window and every smoothing kernel is whole.
Intensities are normalised with the whole volume's range, so the masks equal whole-volume ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emseg_monai.errors import InputError
from emseg_monai.inference.settings import InferenceSettings
from emseg_monai.inference.stages import scm, stage1, to_mask
from emseg_monai.io.stacks import atomic_write
from emseg_monai.io.volumes import read_slices


@dataclass(frozen=True)
class BlockPlan:
    """What is left of one block-wise run, for a driver to do.

    Attributes
    ----------
    done_dir : Path
        ``<output>.blocks``: the done-markers and the scratch stage-1 array.
    stage1_todo, todo : list of (z0, z1)
        Blocks of pass 1 (stage 1) and pass 2 (the masks) not yet marked done.
    value_range : (float, float)
        The whole volume's intensity range, mapped to [0, 1] in every block.
    """

    done_dir: Path
    stage1_todo: list[tuple[int, int]]
    todo: list[tuple[int, int]]
    value_range: tuple[float, float]


def block_ranges(n_slices: int, block: int) -> list[tuple[int, int]]:
    """[(z0, z1), ...] covering 0..n_slices in steps of ``block`` (the last may be shorter)."""
    if block < 1:
        raise InputError(f"block size must be at least 1 slice, got {block}")
    return [(z0, min(z0 + block, n_slices)) for z0 in range(0, n_slices, block)]


def block_probs(
    volume: Any,
    z0: int,
    z1: int,
    value_range: tuple[float, float],
    network: torch.nn.Module,
    settings: InferenceSettings,
    scm_follows: bool = True,
) -> np.ndarray:
    """Pass 1: stage-1 probabilities, uint8 0..255 (z1 - z0, Y, X), of slices [z0, z1) of a lazy volume.

    ``scm_follows`` (pass 1: the SCM reads them) turns ``settings.flips`` off, as ``stages.stage1``
    (``settings.stage1_flips`` still averages stage 1's flips).
    """
    return stage1(network, read_slices(volume, z0, z1), settings, value_range, progress=False, scm_follows=scm_follows)


def block_mask(
    volume: Any,
    probs: Any,
    z0: int,
    z1: int,
    value_range: tuple[float, float],
    networks: tuple[torch.nn.Module, torch.nn.Module | None],
    settings: InferenceSettings,
) -> np.ndarray:
    """Pass 2: the uint8 0/255 mask (z1 - z0, Y, X) of slices [z0, z1).

    With an SCM, from the whole (Z, Y, X) stage-1 probability volume ``probs`` (lazily indexed,
    Zarr or numpy; only [z0 - h, z1 + h) is read, h = N//2 plus the smoothing's reach); without one,
    the stage-1 mask of the block.
    """
    stage1_network, scm_network = networks
    if scm_network is None:
        final = block_probs(volume, z0, z1, value_range, stage1_network, settings, scm_follows=False)
        return to_mask(final, settings.threshold)
    halo = settings.scm_halo
    lo, hi = max(z0 - halo, 0), min(z1 + halo, probs.shape[0])
    inner = np.arange(z0 - lo, z1 - lo)
    final = scm(scm_network, np.asarray(probs[lo:hi]), settings, centers=inner, progress=False)
    return to_mask(final, settings.threshold)


def marker(done_dir: Path, step: str, z0: int, z1: int) -> Path:
    """The file that says pass ``step`` (``stage1`` or ``scm``) of block [z0, z1) is written."""
    return done_dir / f"{step}-{z0}-{z1}.json"


def mark(path: Path) -> None:
    """Write a done-marker (atomically: a marker never exists for a half-written block)."""
    atomic_write(path, lambda tmp: tmp.write_text("{}"), overwrite=True)
