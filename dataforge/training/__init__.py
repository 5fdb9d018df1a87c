"""Training: the trainer plugin contract, the shared torch loop, checkpoints, train/predict.

Importing this package does not import torch; the loop does, when a run starts.
"""

from __future__ import annotations

from dataforge.training.config import TrainerConfig
from dataforge.training.contract import Callback, FitContext, FitResult, Trainer, get_trainer, trainer_names

__all__ = ["Callback", "FitContext", "FitResult", "Trainer", "TrainerConfig", "get_trainer", "trainer_names"]
