"""Whole-stack inference: stage 1, the SCM, and both in sequence."""

from emseg_monai.inference.backends import BACKENDS, to_backend
from emseg_monai.inference.pipeline import run_mpp, run_segment, run_stage1, scm, segment, stage1, to_mask
from emseg_monai.inference.predict import predict_stack

__all__ = [
    "BACKENDS",
    "to_backend",
    "predict_stack",
    "run_mpp",
    "run_segment",
    "run_stage1",
    "scm",
    "segment",
    "stage1",
    "to_mask",
]
