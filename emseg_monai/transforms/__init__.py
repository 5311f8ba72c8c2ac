"""MONAI transforms of emseg_monai, usable in any MONAI pipeline.

- ``RandPiecewiseAffine`` / ``RandPiecewiseAffined``: random piecewise affine warp (stage-1 augmentation).
- ``MPP`` / ``MPPd``: morphological post-processing of a (Z, Y, X) mask stack.
- ``SliceWindow`` / ``SliceWindowd``: the N-slice window around a slice (SCM input).
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
from emseg_monai.transforms.windows import SliceWindow, SliceWindowd, check_window, extract_windows, window_indices

__all__ = [
    "MPP",
    "MPPd",
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
    "spread_labels",
    "window_indices",
    "z_majority",
]
