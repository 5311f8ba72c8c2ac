"""Training: the SCM's targets (stage-1 inference of the training stack, MPP), the whole pipeline
of ``emseg train``, and the bundle folder a training run leaves."""

from emseg_monai.training.targets import run_mpp, run_stage1

__all__ = ["run_mpp", "run_stage1"]
