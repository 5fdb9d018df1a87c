"""The evaluator's extra metrics: one module each in ``dataforge/evaluation/metrics/`` (the package
imports every module in it), registered with ``@metric``. Each takes the evaluation's inputs, with
the matching already done (one definition of a match for every number), and returns a JSON value
that the report keeps under ``detection.metrics.<name>`` or ``classification.metrics.<name>``;
``{"value": number, ...}`` is also printed by ``dataforge evaluate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Task = Literal["detection", "classification"]


@dataclass(frozen=True)
class DetectionInputs:
    """Ground truth (a COCO dict) and the checked predictions (COCO results), matched at
    ``iou_threshold`` the VOC way (per image and class, greedy by score)."""

    gt: dict[str, Any]
    predictions: list[dict[str, Any]]
    iou_threshold: float
    #: (P,) bool: prediction i matched a ground-truth object
    true_positive: np.ndarray
    #: (P,) bool: prediction i counts (False: it missed but lies on a crowd region of its class)
    scored: np.ndarray
    #: (P,) float: each prediction's score
    scores: np.ndarray
    #: ground-truth objects that can be found (crowd regions excluded)
    positives: int


@dataclass(frozen=True)
class ClassificationInputs:
    #: image id -> true category id
    truth: dict[int, int]
    #: the checked predictions (``image_id``, ``category_id``, optional ``scores``)
    predictions: list[dict[str, Any]]
    #: category id -> name
    names: dict[int, str]


@dataclass(frozen=True)
class Metric:
    name: str
    task: Task
    description: str
    fn: Callable[[Any], Any]


METRICS: dict[tuple[str, str], Metric] = {}  # by (task, name)


def metric(
    name: str, *, task: Task, description: str
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register ``fn(inputs) -> JSON value`` as the report's ``<task>.metrics.<name>``."""

    def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        METRICS[(task, name)] = Metric(name, task, description, fn)
        return fn

    return register


def compute(task: Task, inputs: DetectionInputs | ClassificationInputs) -> dict[str, Any]:
    """Every registered metric of ``task``, by name."""
    import dataforge.evaluation.metrics  # noqa: F401 - each module registers its metrics

    return {m.name: m.fn(inputs) for m in METRICS.values() if m.task == task}
