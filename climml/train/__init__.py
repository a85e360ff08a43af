"""Training: losses, optimizers, pure jitted steps, the fit loop, checkpoints, data parallelism."""

from climml.train.checkpoint import Checkpointer
from climml.train.loop import FitResult, TrainingInterrupted, fit, load_best
from climml.train.losses import LOSSES, make_loss
from climml.train.optimizer import build_optimizer
from climml.train.steps import TrainState

__all__ = [
    "LOSSES",
    "Checkpointer",
    "FitResult",
    "TrainState",
    "TrainingInterrupted",
    "build_optimizer",
    "fit",
    "load_best",
    "make_loss",
]
