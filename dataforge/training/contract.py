"""The trainer plugin contract.

A trainer is a class registered in the ``dataforge.trainers`` entry-point group::

    [project.entry-points."dataforge.trainers"]
    my-trainer = "my_package:MyTrainer"

It declares ``name``, ``task`` ("classification", "detection", "segmentation" (semantic) or
"regression" (the points of one instance per image)), ``config`` (a
:class:`~dataforge.training.config.TrainerConfig` subclass; ``schemas/`` gets a schema from it) and
``models`` (architecture names), and implements:

- ``fit(ctx, callbacks) -> FitResult``: train on ``ctx`` (store, config, run directory), calling the
  callbacks' hooks, writing ``best.pt`` and ``last.pt`` with :func:`save_checkpoint`;
- ``predict(checkpoint, images, *, device, batch_size) -> list[dict]``: predictions for store images,
  one dict per detection (COCO results: ``image_id``, ``category_id`` of the *checkpoint's*
  categories, ``bbox`` xywh, ``score``), per image for classification (``image_id``, ``scores``
  by category name), per class present in an image for semantic segmentation (COCO-Stuff
  results: ``image_id``, ``category_id``, ``segmentation`` RLE at the image's size), or per image
  for point regression (``image_id``, ``category_id``, ``keypoints`` ``[x, y, 1] * K`` in pixels,
  no ``score``).

Most trainers subclass :class:`dataforge.training.loop.TorchTrainer`, which implements ``fit`` (the
loop, optimizers, schedules, checkpoints, early stopping, TensorBoard, DDP) and ``predict`` around
three methods: ``build_model``, ``loss`` and ``infer``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from dataforge.errors import PluginError
from dataforge.plugins import TRAINERS, available, load
from dataforge.training.config import TrainerConfig

Task = Literal["classification", "detection", "segmentation", "regression"]
TASKS: tuple[str, ...] = ("classification", "detection", "segmentation", "regression")


class Callback:
    """No-op hooks; override what you need. ``logs`` holds the numbers of the moment."""

    def on_fit_start(self, ctx: FitContext) -> None: ...
    def on_epoch_start(self, epoch: int) -> None: ...
    def on_step_end(self, step: int, logs: dict[str, float]) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...
    def on_fit_end(self, result: FitResult) -> None: ...


@dataclass
class FitContext:
    """What a trainer trains on and where it writes."""

    store: Path
    run_dir: Path
    config: TrainerConfig
    categories: list[dict[str, Any]]  # [{"id", "name"}]: the store's, in model index order
    resume: dict[str, Any] | None = None  # a loaded last.pt to continue from


@dataclass
class FitResult:
    epochs: int
    steps: int
    best_metric: float | None
    metric_name: str
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    best: Path | None = None
    last: Path | None = None
    seconds: float = 0.0
    #: the torchrun rank that returned this (0 without torchrun; rank 0 alone validates and writes)
    rank: int = 0


class Trainer(ABC):
    name: ClassVar[str]
    task: ClassVar[Task]
    config: ClassVar[type[TrainerConfig]]
    models: ClassVar[tuple[str, ...]] = ()
    #: validation metric that picks the best checkpoint and drives early stopping
    metric: ClassVar[str] = "val_metric"
    #: whether a higher (``"max"``: accuracy, mAP, mIoU) or lower (``"min"``: an error) metric is better
    metric_mode: ClassVar[Literal["max", "min"]] = "max"

    @abstractmethod
    def fit(self, ctx: FitContext, callbacks: list[Callback]) -> FitResult: ...

    @abstractmethod
    def predict(
        self, checkpoint: dict[str, Any], images: list[Any], *, device: str = "auto", batch_size: int = 8
    ) -> list[dict[str, Any]]: ...


def trainer_names() -> list[str]:
    return list(available(TRAINERS))


def get_trainer(name: str) -> type[Trainer]:
    """Load and check a trainer plugin: a Trainer subclass whose ``name`` matches its entry point."""
    obj = load(TRAINERS, name)
    dist = available(TRAINERS)[name].distribution
    problems = []
    if not (isinstance(obj, type) and issubclass(obj, Trainer)):
        problems.append("it is not a dataforge.training.Trainer subclass")
    else:
        if getattr(obj, "name", None) != name:
            problems.append(f"its name is {getattr(obj, 'name', None)!r}, not the entry point's {name!r}")
        if getattr(obj, "task", None) not in TASKS:
            problems.append(
                f"task must be one of {', '.join(repr(t) for t in TASKS)}, not {getattr(obj, 'task', None)!r}"
            )
        if getattr(obj, "metric_mode", "max") not in ("max", "min"):
            problems.append(f"metric_mode must be 'max' or 'min', not {obj.metric_mode!r}")
        cfg = getattr(obj, "config", None)
        if not (isinstance(cfg, type) and issubclass(cfg, TrainerConfig)):
            problems.append("config must be a TrainerConfig subclass")
    if problems:
        raise PluginError(
            f"trainer plugin {name!r} from {dist} is broken: " + "; ".join(problems),
            hint=f"fix or uninstall {dist}",
        )
    return obj


def describe(name: str) -> dict[str, Any]:
    cls = get_trainer(name)
    info = available(TRAINERS)[name]
    return {
        "name": name,
        "task": cls.task,
        "distribution": info.distribution,
        "models": list(cls.models),
        "metric": cls.metric,
        "metric_mode": cls.metric_mode,
        "options": cls.config.model_json_schema().get("properties", {}),
    }
