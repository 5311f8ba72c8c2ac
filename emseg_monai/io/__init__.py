"""Reading and writing stacks: a MONAI TIFF reader, validated readers and atomic writers."""

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
    "TiffStackReader",
    "atomic_write",
    "binarize_labels",
    "check_input_file",
    "check_output_path",
    "read_mask",
    "read_stack",
    "read_tiff_array",
    "write_stack",
]
