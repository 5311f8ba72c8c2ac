"""Data: synthetic stacks, labeled-slice specs, normalisation and training datasets."""

from emseg_monai.data.datasets import StackSliceDataset
from emseg_monai.data.normalize import normalize_stack, resize_slices, scaled_size
from emseg_monai.data.slices import complement, evenly_spaced, parse_slice_spec
from emseg_monai.data.synthetic import SyntheticConfig, make_synthetic_stack
from emseg_monai.data.training import TrainingStack, load_scm_stack, load_stage1_stack

__all__ = [
    "StackSliceDataset",
    "SyntheticConfig",
    "TrainingStack",
    "complement",
    "evenly_spaced",
    "load_scm_stack",
    "load_stage1_stack",
    "make_synthetic_stack",
    "normalize_stack",
    "parse_slice_spec",
    "resize_slices",
    "scaled_size",
]
