"""``resize`` (to a fixed size) and ``random_scale`` (by a random factor); the concrete ``resize``
op (``size`` ``[w, h]``, bilinear)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from dataforge.augment import cpu, gpu
from dataforge.augment.geometry import uniform
from dataforge.augment.registry import (
    FloatArray,
    Op,
    OpKind,
    albumentations,
    cpu_kernel,
    draws,
    gpu_kernel,
    op_kind,
    step,
)
from dataforge.augment.steps.base import StepBase, check_range


@step
class RandomScale(StepBase):
    """Resize by a factor drawn uniformly from ``scale`` (both sides by the same factor)."""

    type: Literal["random_scale"]
    scale: tuple[float, float] = (0.5, 1.5)

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] <= 0:
            raise ValueError("scale factors must be positive")
        return check_range(v, "scale")


@step
class Resize(StepBase):
    """Resize to exactly ``width`` x ``height`` (bilinear)."""

    type: Literal["resize"]
    width: int = Field(gt=0)
    height: int = Field(gt=0)


@draws("random_scale")
def _draw_scale(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    f = uniform(rng, step.scale)
    return [{"op": "resize", "size": [max(1, round(w * f)), max(1, round(h * f))]}] if fire else []


@draws("resize")
def _draw_resize(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    return [{"op": "resize", "size": [step.width, step.height]}] if fire else []


def _resize_size(op: Op, w: int, h: int) -> tuple[int, int]:
    nw, nh = op["size"]
    return nw, nh


def _resize_boxes(op: Op, b: FloatArray, vis: FloatArray, w: int, h: int) -> tuple[FloatArray, FloatArray]:
    nw, nh = op["size"]
    return b * np.array([nw / w, nh / h, nw / w, nh / h]), vis


def _resize_masks(op: Op, planes: np.ndarray, w: int, h: int) -> np.ndarray:
    """Nearest neighbour at pixel centres (OpenCV's ``INTER_NEAREST_EXACT``, PIL's and
    torchvision's ``NEAREST_EXACT``): output pixel ``i`` takes input ``floor((i + 0.5) * w / nw)``."""
    cv2 = cpu.opencv()
    nw, nh = op["size"]
    if (nw, nh) == (w, h):
        return planes
    return cv2.resize(planes, (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT)


def _resize_points(op: Op, p: FloatArray, w: int, h: int) -> FloatArray:
    nw, nh = op["size"]
    return p * np.array([nw / w, nh / h])


op_kind(
    OpKind(
        "resize",
        moves_pixels=True,
        size=_resize_size,
        boxes=_resize_boxes,
        masks=_resize_masks,
        boxes_enclose_masks=True,
        keypoints=_resize_points,
    )
)


@cpu_kernel("resize")
def _resize_cpu(img: np.ndarray, op: Op) -> np.ndarray:
    cv2 = cpu.opencv()
    w, h = op["size"]
    if (img.shape[1], img.shape[0]) == (w, h):
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


@gpu_kernel("resize")
def _resize_gpu(img: Any, op: Op) -> Any:
    from torchvision.transforms import InterpolationMode

    nw, nh = op["size"]
    if (nw, nh) == (int(img.shape[-1]), int(img.shape[-2])):
        return img
    return gpu.functional().resize(img, [nh, nw], interpolation=InterpolationMode.BILINEAR, antialias=True)


@albumentations("random_scale")
def _random_scale_albu(A: Any, s: Any) -> Any:
    return A.RandomScale(scale_limit=(s.scale[0] - 1, s.scale[1] - 1), p=s.p)


@albumentations("resize")
def _resize_albu(A: Any, s: Any) -> Any:
    return A.Resize(height=s.height, width=s.width, p=s.p)
