"""Ignite handlers the training configs attach: resumable checkpoints and a per-epoch history."""

from emseg_monai.handlers.checkpoint import TrainingCheckpoint, TrainingInterrupted, raise_if_interrupted, training_done
from emseg_monai.handlers.history import TrainingHistory

__all__ = ["TrainingCheckpoint", "TrainingHistory", "TrainingInterrupted", "raise_if_interrupted", "training_done"]
