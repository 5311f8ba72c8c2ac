"""The two stages on arrays: stage 1 per slice, the SCM per N-slice window, masks from probabilities.

Arrays are (Z, Y, X). Probabilities are uint8 0..255 (probability x 255, rounded), the format of
the stage files; masks are uint8 0/255. Every function here takes the networks ready to run (see
``backends.to_backend``) and one ``InferenceSettings``.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from emseg_monai.errors import InputError
from emseg_monai.inference.predict import predict_stack
from emseg_monai.inference.settings import InferenceSettings
from emseg_monai.transforms.stacks import intensity_range, normalize_stack, to_mask
from emseg_monai.transforms.windows import scm_inputs, smoothing_reach

__all__ = ["scm", "segment", "stage1", "to_mask"]


def stage1(
    network: torch.nn.Module,
    image: np.ndarray,
    settings: InferenceSettings,
    value_range: tuple[float, float] | None = None,
    progress: bool = True,
    scm_follows: bool = False,
) -> np.ndarray:
    """Stage-1 probabilities (Z, Y, X) uint8 0..255 of an image stack.

    ``image`` is either raw (any dtype) with ``value_range``, the intensities mapped to [0, 1]
    (normalised 16 slices at a time, so no float copy of the stack is made), or already
    normalised float32 in [0, 1] when ``value_range`` is None.

    ``settings.flips`` applies to the final stage only: with ``scm_follows`` (the SCM reads these
    probabilities) stage 1 runs without flips, since the SCM was trained on single-pass stage-1
    probabilities and flip-averaged ones cost up to 0.9 Dice on EPFL's unseen slices
    (docs/results.md). ``settings.stage1_flips`` averages stage 1's flips in every case: on thick
    sections, where the SCM's window is short, the SCM gains from them.
    """
    prepare = None if value_range is None else partial(normalize_stack, value_range=value_range)
    return predict_stack(
        network,
        image,
        1,
        settings.stage1_downsample,
        settings.batch_size,
        settings.device,
        (settings.flips and not scm_follows) or settings.stage1_flips,
        "stage 1",
        progress,
        tile=settings.tile,
        prepare=prepare,
    )


def scm(
    network: torch.nn.Module,
    prob: np.ndarray,
    settings: InferenceSettings,
    centers: np.ndarray | None = None,
    progress: bool = True,
) -> np.ndarray:
    """SCM probabilities (Z, Y, X) uint8 0..255 from stage-1 probabilities (Z, Y, X) uint8 0..255.

    The SCM's output is smoothed by ``settings.smoothing`` and ``settings.smoothing_z`` (a 3D
    Gaussian at the network's resolution, see ``predict_stack``). With ``centers`` (consecutive
    slice indices), only those slices ((len(centers), Y, X)); their windows still read the
    neighbours in ``prob``, the stack's ends repeating the end slice, and the smoothing reads the
    SCM's output ``smoothing_reach`` (of its Z sigma) slices beyond them, so they equal a
    whole-stack run's.
    """
    n_slices = prob.shape[0]
    wanted = np.arange(n_slices) if centers is None else np.asarray(centers, dtype=np.int64)
    if wanted.size == 0:
        return np.empty((0, *prob.shape[1:]), np.uint8)
    if np.any(np.diff(wanted) != 1):
        raise InputError(f"SCM centers must be consecutive slice indices, got {wanted.tolist()}")
    reach = smoothing_reach(settings.z_smoothing)
    lo, hi = max(int(wanted[0]) - reach, 0), min(int(wanted[-1]) + 1 + reach, n_slices)
    prepare = partial(scm_inputs, input_kind=settings.input_kind, threshold=settings.threshold)
    out = predict_stack(
        network,
        prob,
        settings.window,
        settings.scm_downsample,
        settings.batch_size,
        settings.device,
        settings.flips,
        "SCM",
        progress,
        centers=None if centers is None and reach == 0 else np.arange(lo, hi),
        tile=settings.tile,
        prepare=prepare,
        smoothing=settings.smoothing,
        smoothing_z=settings.smoothing_z,
    )
    return out if centers is None and reach == 0 else out[wanted - lo]


def segment(
    image: np.ndarray,
    stage1_network: torch.nn.Module,
    scm_network: torch.nn.Module | None,
    settings: InferenceSettings | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Segment a raw (Z, Y, X) stack of any dtype: stage 1, then the SCM (none: stage 1 is final).

    The intensities are normalised by the stack's own percentiles (``intensity_range``).

    Returns
    -------
    dict
        ``stage1_prob`` and ``final_prob`` (uint8 0..255), ``final_mask`` (uint8 0/255), all
        (Z, Y, X) with the image's shape.
    """
    settings = settings or InferenceSettings()
    with_scm = scm_network is not None and settings.use_scm
    prob1 = stage1(stage1_network, image, settings, intensity_range(image), progress, scm_follows=with_scm)
    final = prob1
    if with_scm:
        final = scm(scm_network, prob1, settings, progress=progress)
    return {"stage1_prob": prob1, "final_prob": final, "final_mask": to_mask(final, settings.threshold)}
