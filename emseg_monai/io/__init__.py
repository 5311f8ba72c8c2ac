"""Reading and writing stacks: validated readers, atomic writers, and their MONAI reader and writer."""

from emseg_monai.io.monai_io import LoadStackd, SaveStackd, StackReader, recorded_voxel_size, stack_voxel_size
from emseg_monai.io.stacks import (
    atomic_write,
    binarize_labels,
    check_input_file,
    check_output_path,
    read_mask,
    read_stack,
    write_stack,
)
from emseg_monai.io.tiff_reader import TiffStackReader, read_tiff_array

__all__ = [
    "LoadStackd",
    "SaveStackd",
    "StackReader",
    "TiffStackReader",
    "atomic_write",
    "binarize_labels",
    "check_input_file",
    "check_output_path",
    "read_mask",
    "read_stack",
    "read_tiff_array",
    "recorded_voxel_size",
    "stack_voxel_size",
    "write_stack",
]
