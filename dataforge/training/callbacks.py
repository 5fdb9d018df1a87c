"""The callbacks :class:`~dataforge.training.loop.TorchTrainer` trains with: the best metric and early
stopping, checkpoints, TensorBoard. They run before a user's callbacks at each hook, so at
``on_epoch_end`` a user's callback sees the epoch's checkpoints already written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataforge.jsonio import write_json
from dataforge.training.checkpoint import save_checkpoint
from dataforge.training.contract import Callback, FitContext, FitResult

if TYPE_CHECKING:
    from dataforge.training.loop import TorchTrainer


@dataclass
class FitProgress:
    """Where a run is and how it has gone: shared by the loop and its callbacks (and resumed)."""

    step: int = 0
    best: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    #: epochs since the best one (its first occurrence: only a strictly better metric counts)
    stale: int = 0
    #: whether the epoch that just ended set a new best
    improved: bool = False
    #: set by a callback to end training after this epoch
    stop: bool = False

    @classmethod
    def resumed(cls, checkpoint: dict[str, Any] | None, metric: str) -> FitProgress:
        if checkpoint is None:
            return cls()
        history = list(checkpoint.get("history", []))
        best = checkpoint.get("best")
        vals = [h.get(f"val_{metric}") for h in history]  # early stopping carries on across --resume
        stale = len(vals) - 1 - vals.index(best) if best in vals else 0
        return cls(step=int(checkpoint["step"]), best=best, history=history, stale=stale)


class BestMetric(Callback):
    """Tracks the best value of ``val_<metric>`` (the highest, or with ``lower_is_better`` the
    lowest); with ``patience`` (early stopping) and validation data, asks the loop to stop after
    ``patience`` epochs without a better one."""

    def __init__(
        self,
        progress: FitProgress,
        metric: str,
        *,
        patience: int | None,
        validates: bool,
        lower_is_better: bool = False,
    ) -> None:
        self.progress, self.key, self.patience, self.validates = (
            progress,
            f"val_{metric}",
            patience,
            validates,
        )
        self.sign = -1.0 if lower_is_better else 1.0

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        p = self.progress
        value = logs.get(self.key)
        p.improved = value is not None and (p.best is None or self.sign * value > self.sign * p.best)
        if p.improved:
            p.best, p.stale = value, 0
        else:
            p.stale += 1
        if self.patience and self.validates and p.stale >= self.patience:
            p.stop = True


class Checkpoints(Callback):
    """``last.pt`` (with the optimizer, for ``--resume``) after every epoch; ``best.pt`` when the
    epoch set a new best (every epoch without validation data); ``history.json``."""

    def __init__(
        self,
        trainer: TorchTrainer,
        ctx: FitContext,
        model: Any,
        optimizer: Any,
        progress: FitProgress,
        *,
        validates: bool,
    ) -> None:
        self.trainer, self.ctx, self.model, self.optimizer = trainer, ctx, model, optimizer
        self.progress, self.validates = progress, validates

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        p, run_dir = self.progress, self.ctx.run_dir
        payload = {
            "trainer": self.trainer.name,
            "task": self.trainer.task,
            "config": self.ctx.config.model_dump(mode="json"),
            "categories": self.ctx.categories,
            "model": self.model.state_dict(),
            "epoch": epoch,
            "step": p.step,
            "metrics": logs,
            "best": p.best,
            "metric_name": self.trainer.metric,
            "history": p.history,
        }
        save_checkpoint(run_dir / "last.pt", {**payload, "optimizer": self.optimizer.state_dict()})
        if p.improved or not self.validates:
            save_checkpoint(run_dir / "best.pt", payload)
        write_json(run_dir / "history.json", p.history)


class TensorBoard(Callback):
    """Per step ``train/<name>`` scalars; per epoch ``val/<name>`` scalars and, for detection,
    ``log_images`` validation images with the boxes predicted (score >= 0.3)."""

    @staticmethod
    def available() -> bool:
        import importlib.util

        return importlib.util.find_spec("tensorboard") is not None

    def __init__(self, run_dir: Path, draw: Any) -> None:
        self.run_dir = run_dir
        self.draw = draw  # draw(writer, epoch): the trainer's image logging
        self.writer: Any = None

    def on_fit_start(self, ctx: FitContext) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def on_step_end(self, step: int, logs: dict[str, float]) -> None:
        for name, value in logs.items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        for name, value in logs.items():
            if name.startswith("val_"):
                self.writer.add_scalar(f"val/{name[4:]}", value, epoch + 1)
        self.draw(self.writer, epoch + 1)

    def on_fit_end(self, result: FitResult) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
