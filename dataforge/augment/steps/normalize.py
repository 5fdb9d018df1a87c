"""``normalize``: subtract ``mean`` and divide by ``std`` per channel (0-1 scale), for training;
its output (floats) cannot be an image file, so ``dataforge augment`` refuses it."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from dataforge.augment import gpu
from dataforge.augment.registry import (
    Op,
    OpKind,
    albumentations,
    cpu_kernel,
    draws,
    gpu_kernel,
    op_kind,
    step,
)
from dataforge.augment.steps.base import StepBase


@step
class Normalize(StepBase):
    """Subtract ``mean`` and divide by ``std`` (per channel, 0-1 scale). Training time only:
    ``dataforge augment`` writes image files and refuses it."""

    type: Literal["normalize"]
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@draws("normalize")
def _draw(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    return [{"op": "normalize", "mean": list(step.mean), "std": list(step.std)}] if fire else []


op_kind(OpKind("normalize", moves_pixels=False, in_files=False))


@cpu_kernel("normalize")
def _normalize_cpu(img: np.ndarray, op: Op) -> np.ndarray:
    rgb = img[..., ::-1].astype(np.float32) / 255.0
    return (rgb - np.asarray(op["mean"], np.float32)) / np.asarray(op["std"], np.float32)


@gpu_kernel("normalize")
def _normalize_gpu(img: Any, op: Op) -> Any:
    return gpu.functional().normalize(img.float() / 255.0, list(op["mean"]), list(op["std"]))


@albumentations("normalize")
def _albu(A: Any, s: Any) -> Any:
    return A.Normalize(mean=s.mean, std=s.std, p=s.p)
