"""MONAI transforms of emseg_monai, usable in any MONAI pipeline.

- ``RandPiecewiseAffine`` / ``RandPiecewiseAffined``: random piecewise affine warp (stage-1 augmentation).
- ``MPP`` / ``MPPd``: morphological post-processing of a (Z, Y, X) mask stack.
- ``SliceWindow`` / ``SliceWindowd``: the N-slice window around a slice (SCM input).
- ``NormalizeStack`` / ``NormalizeStackd``: intensities to [0, 1] (inference preprocessing).
- ``ProbToMask`` / ``ProbToMaskd``: probabilities to uint8 0/255 masks (inference postprocessing).
"""

from emseg_monai.transforms.mpp import (
    MPP,
    MPPd,
    bracket_majority,
    mpp,
    remove_small_objects_2d,
    spread_labels,
    z_majority,
)
from emseg_monai.transforms.piecewise_affine import RandPiecewiseAffine, RandPiecewiseAffined, piecewise_affine_warp
from emseg_monai.transforms.stacks import NormalizeStack, NormalizeStackd, ProbToMask, ProbToMaskd
from emseg_monai.transforms.windows import (
    SliceWindow,
    SliceWindowd,
    check_window,
    extract_windows,
    scm_inputs,
    window_indices,
)

__all__ = [
    "MPP",
    "MPPd",
    "NormalizeStack",
    "NormalizeStackd",
    "ProbToMask",
    "ProbToMaskd",
    "RandPiecewiseAffine",
    "RandPiecewiseAffined",
    "SliceWindow",
    "SliceWindowd",
    "bracket_majority",
    "check_window",
    "extract_windows",
    "mpp",
    "piecewise_affine_warp",
    "remove_small_objects_2d",
    "scm_inputs",
    "spread_labels",
    "window_indices",
    "z_majority",
]
