"""Networks: both stages use MONAI's 2D ``BasicUNet`` (the SCM with N input channels)."""

from emseg_monai.networks.weights import load_weights

__all__ = ["load_weights"]
