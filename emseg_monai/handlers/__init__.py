"""Ignite handlers the training configs attach: resumable checkpoints, a per-epoch history, a progress bar."""

from emseg_monai.handlers.checkpoint import (
    TrainingCheckpoint,
    TrainingInterrupted,
    raise_if_interrupted,
    training_done,
    worker_init,
)
from emseg_monai.handlers.history import TrainingHistory
from emseg_monai.handlers.progress import LossProgressBar, iteration_loss

__all__ = [
    "LossProgressBar",
    "TrainingCheckpoint",
    "TrainingHistory",
    "TrainingInterrupted",
    "iteration_loss",
    "raise_if_interrupted",
    "training_done",
    "worker_init",
]
