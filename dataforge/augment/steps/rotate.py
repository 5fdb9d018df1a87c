"""``rotate``: about the centre by an angle drawn from ``limit`` (degrees, counter-clockwise), the
canvas keeping its size; the concrete ``rotate`` op (``angle``, ``fill``)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from dataforge.augment import cpu, gpu
from dataforge.augment.geometry import clip_boxes, rotation_matrix, uniform
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
from dataforge.augment.steps.base import Probability, RangeOrNumber, StepBase, check_range, pair


@step
class Rotate(StepBase):
    """Rotate about the centre by an angle (degrees, counter-clockwise) drawn from ``limit``.

    The canvas keeps its size; corners are filled with ``fill``. A box becomes the box enclosing
    its rotated corners (clipped to the canvas).
    """

    type: Literal["rotate"]
    limit: RangeOrNumber = (-15.0, 15.0)
    fill: int = Field(0, ge=0, le=255)
    p: Probability = 0.5

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, v: Any) -> Any:
        return pair(v, around=0.0)

    @field_validator("limit")
    @classmethod
    def _order(cls, v: tuple[float, float]) -> tuple[float, float]:
        return check_range(v, "limit")


@draws("rotate")
def _draw(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    angle = uniform(rng, step.limit)
    return [{"op": "rotate", "angle": angle, "fill": step.fill}] if fire else []


def _rotate_boxes(op: Op, b: FloatArray, vis: FloatArray, w: int, h: int) -> tuple[FloatArray, FloatArray]:
    """The rotated box's corners' bounding box, clipped to the (unchanged) canvas."""
    if not len(b):
        return b, vis
    m = rotation_matrix(op["angle"], (w, h))
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1)  # (N, 4, xy)
    moved = corners @ m[:, :2].T + m[:, 2]
    return clip_boxes(np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1), vis, w, h)


def _pixel_matrix(angle: float, w: int, h: int) -> FloatArray:
    """The rotation for OpenCV, which indexes pixel centres (continuous ``x - 0.5``)."""
    m = rotation_matrix(angle, (w, h))
    m[:, 2] += m[:, :2].sum(axis=1) * 0.5 - 0.5
    return m


def _rotate_masks(op: Op, planes: np.ndarray, w: int, h: int) -> np.ndarray:
    cv2 = cpu.opencv()
    m = _pixel_matrix(op["angle"], w, h)
    return cv2.warpAffine(
        planes, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def _rotate_points(op: Op, p: FloatArray, w: int, h: int) -> FloatArray:
    m = rotation_matrix(op["angle"], (w, h))
    return p @ m[:, :2].T + m[:, 2]


op_kind(
    OpKind(
        "rotate",
        moves_pixels=True,
        boxes=_rotate_boxes,
        masks=_rotate_masks,
        boxes_enclose_masks=True,
        keypoints=_rotate_points,
    )
)


@cpu_kernel("rotate")
def _rotate_cpu(img: np.ndarray, op: Op) -> np.ndarray:
    cv2 = cpu.opencv()
    h, w = img.shape[:2]
    m = _pixel_matrix(op["angle"], w, h)
    fill = int(op.get("fill", 0))
    return cv2.warpAffine(
        img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(fill,) * 3
    )


@gpu_kernel("rotate")
def _rotate_gpu(img: Any, op: Op) -> Any:
    from torchvision.transforms import InterpolationMode

    fill = [float(op.get("fill", 0))] * 3
    return gpu.functional().rotate(img, op["angle"], interpolation=InterpolationMode.BILINEAR, fill=fill)


@albumentations("rotate")
def _albu(A: Any, s: Any) -> Any:
    import cv2

    return A.Rotate(limit=s.limit, border_mode=cv2.BORDER_CONSTANT, fill=s.fill, p=s.p)
