"""``gaussian_blur``: sigma drawn from a range, kernel size 2*ceil(3*sigma)+1; the concrete ``blur``
op moves no pixel."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import field_validator

from dataforge.augment import cpu, gpu
from dataforge.augment.geometry import uniform
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
from dataforge.augment.steps.base import Probability, RangeOrNumber, StepBase, check_range


@step
class GaussianBlur(StepBase):
    """Gaussian blur with sigma drawn from ``sigma`` (pixels); kernel size = 2*ceil(3*sigma)+1."""

    type: Literal["gaussian_blur"]
    sigma: RangeOrNumber = (0.1, 2.0)
    p: Probability = 0.5

    @field_validator("sigma", mode="before")
    @classmethod
    def _sigma(cls, v: Any) -> Any:
        return [v, v] if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("sigma")
    @classmethod
    def _positive(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] <= 0:
            raise ValueError("sigma must be positive")
        return check_range(v, "sigma")


@draws("gaussian_blur")
def _draw(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    sigma = uniform(rng, step.sigma)
    return [{"op": "blur", "sigma": sigma, "ksize": max(3, 2 * math.ceil(3 * sigma) + 1)}] if fire else []


op_kind(OpKind("blur", moves_pixels=False))


@cpu_kernel("blur")
def _blur_cpu(img: np.ndarray, op: Op) -> np.ndarray:
    k = int(op["ksize"])
    return cpu.opencv().GaussianBlur(img, (k, k), op["sigma"])


@gpu_kernel("blur")
def _blur_gpu(img: Any, op: Op) -> Any:
    k = int(op["ksize"])
    return gpu.functional().gaussian_blur(img, [k, k], [op["sigma"], op["sigma"]])


@albumentations("gaussian_blur")
def _albu(A: Any, s: Any) -> Any:
    return A.GaussianBlur(sigma_limit=s.sigma, blur_limit=0, p=s.p)
