"""Crops: ``crop`` (fixed window), ``center_crop``, ``random_crop`` and ``random_resized_crop``
(which draws a ``crop`` and then a ``resize`` op). The concrete ``crop`` op: ``xyxy`` ints, end
exclusive."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from dataforge.augment import gpu
from dataforge.augment.geometry import clip_boxes, rrc_window
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
from dataforge.errors import DataError


@step
class Crop(StepBase):
    """A fixed crop (pixels, xyxy, end exclusive); clamped to the image."""

    type: Literal["crop"]
    x_min: int = Field(ge=0)
    y_min: int = Field(ge=0)
    x_max: int = Field(gt=0)
    y_max: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Crop:
        if self.x_max <= self.x_min or self.y_max <= self.y_min:
            raise ValueError("x_max/y_max must be greater than x_min/y_min")
        return self


@step
class CenterCrop(StepBase):
    """Crop ``width`` x ``height`` from the centre (the whole side when the image is smaller)."""

    type: Literal["center_crop"]
    width: int = Field(gt=0)
    height: int = Field(gt=0)


@step
class RandomCrop(StepBase):
    """Crop ``width`` x ``height`` at a uniformly random position (the whole side when smaller)."""

    type: Literal["random_crop"]
    width: int = Field(gt=0)
    height: int = Field(gt=0)


@step
class RandomResizedCrop(StepBase):
    """Crop a random area fraction ``scale`` with aspect ratio in ``ratio``, resize to ``size``.

    ``size`` is ``[width, height]``; left out, the crop is resized back to the input's size.
    """

    type: Literal["random_resized_crop"]
    size: tuple[int, int] | None = None
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    @field_validator("size")
    @classmethod
    def _positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) <= 0:
            raise ValueError("size must be two positive integers [width, height]")
        return v

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= 1 or not 0 < v[1] <= 1:
            raise ValueError("scale is an area fraction: both ends in (0, 1]")
        return check_range(v, "scale")

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] <= 0:
            raise ValueError("ratio must be positive")
        return check_range(v, "ratio")


@draws("crop")
def _draw_crop(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    x0, y0, x1, y1 = min(step.x_min, w), min(step.y_min, h), min(step.x_max, w), min(step.y_max, h)
    if not fire:
        return []
    if x1 <= x0 or y1 <= y0:
        raise DataError(
            f"{where}: the crop [{step.x_min}, {step.y_min}, {step.x_max}, {step.y_max}] "
            f"lies outside the {w}x{h} image",
            hint="fix the crop step or select images with --where 'width >= ...'",
        )
    return [{"op": "crop", "xyxy": [x0, y0, x1, y1]}]


@draws("center_crop", "random_crop")
def _draw_fixed_size_crop(
    step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str
) -> list[Op]:
    cw, ch = min(step.width, w), min(step.height, h)
    if step.type == "center_crop":
        x0, y0 = (w - cw) // 2, (h - ch) // 2
    else:
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return [{"op": "crop", "xyxy": [x0, y0, x0 + cw, y0 + ch]}] if fire else []


@draws("random_resized_crop")
def _draw_rrc(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    x0, y0, x1, y1 = rrc_window(rng, w, h, step.scale, step.ratio)
    if not fire:
        return []
    out_w, out_h = step.size or (w, h)
    return [{"op": "crop", "xyxy": [x0, y0, x1, y1]}, {"op": "resize", "size": [int(out_w), int(out_h)]}]


def _crop_size(op: Op, w: int, h: int) -> tuple[int, int]:
    x0, y0, x1, y1 = op["xyxy"]
    return x1 - x0, y1 - y0


def _crop_boxes(op: Op, b: FloatArray, vis: FloatArray, w: int, h: int) -> tuple[FloatArray, FloatArray]:
    x0, y0, x1, y1 = op["xyxy"]
    return clip_boxes(b - np.array([x0, y0, x0, y0], dtype=np.float64), vis, x1 - x0, y1 - y0)


def _crop_masks(op: Op, planes: np.ndarray, w: int, h: int) -> np.ndarray:
    x0, y0, x1, y1 = op["xyxy"]
    return planes[y0:y1, x0:x1]


def _crop_points(op: Op, p: FloatArray, w: int, h: int) -> FloatArray:
    x0, y0, _, _ = op["xyxy"]
    return p - np.array([x0, y0], dtype=np.float64)


op_kind(
    OpKind(
        "crop",
        moves_pixels=True,
        size=_crop_size,
        boxes=_crop_boxes,
        masks=_crop_masks,
        boxes_enclose_masks=True,
        keypoints=_crop_points,
    )
)


@cpu_kernel("crop")
def _crop_cpu(img: np.ndarray, op: Op) -> np.ndarray:
    x0, y0, x1, y1 = op["xyxy"]
    return img[y0:y1, x0:x1]


@gpu_kernel("crop")
def _crop_gpu(img: Any, op: Op) -> Any:
    x0, y0, x1, y1 = op["xyxy"]
    return gpu.functional().crop(img, y0, x0, y1 - y0, x1 - x0)


@albumentations("crop")
def _crop_albu(A: Any, s: Any) -> Any:
    return A.Crop(x_min=s.x_min, y_min=s.y_min, x_max=s.x_max, y_max=s.y_max, p=s.p)


@albumentations("center_crop")
def _center_crop_albu(A: Any, s: Any) -> Any:
    return A.CenterCrop(height=s.height, width=s.width, pad_if_needed=False, p=s.p)


@albumentations("random_crop")
def _random_crop_albu(A: Any, s: Any) -> Any:
    return A.RandomCrop(height=s.height, width=s.width, pad_if_needed=False, p=s.p)


@albumentations("random_resized_crop")
def _rrc_albu(A: Any, s: Any) -> Any:
    if s.size is None:
        raise ValueError("albumentations needs a fixed size for random_resized_crop; set size: [w, h]")
    w, h = s.size
    return A.RandomResizedCrop(size=(h, w), scale=s.scale, ratio=s.ratio, p=s.p)
