"""Networks: both stages use MONAI's 2D ``BasicUNet`` (the SCM with N input channels)."""

from emseg_monai.networks.devices import default_device, process_device
from emseg_monai.networks.precision import PRECISIONS, Bfloat16, native_bf16, resolve_precision, with_precision
from emseg_monai.networks.weights import initial_weights, load_weights

__all__ = [
    "PRECISIONS",
    "Bfloat16",
    "initial_weights",
    "load_weights",
    "default_device",
    "native_bf16",
    "process_device",
    "resolve_precision",
    "with_precision",
]
