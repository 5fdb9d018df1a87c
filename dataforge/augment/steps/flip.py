"""``hflip`` and ``vflip``: mirror left-right or top-bottom (keypoints swap left and right)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from dataforge.augment import cpu, gpu
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
from dataforge.augment.steps.base import Probability, StepBase


@step
class HFlip(StepBase):
    """Mirror left-right."""

    type: Literal["hflip"]
    p: Probability = 0.5


@step
class VFlip(StepBase):
    """Mirror top-bottom."""

    type: Literal["vflip"]
    p: Probability = 0.5


@draws("hflip", "vflip")
def _draw(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    return [{"op": step.type}] if fire else []


def _hflip_boxes(op: Op, b: FloatArray, vis: FloatArray, w: int, h: int) -> tuple[FloatArray, FloatArray]:
    b[:, [0, 2]] = w - b[:, [2, 0]]
    return b, vis


def _vflip_boxes(op: Op, b: FloatArray, vis: FloatArray, w: int, h: int) -> tuple[FloatArray, FloatArray]:
    b[:, [1, 3]] = h - b[:, [3, 1]]
    return b, vis


def _hflip_masks(op: Op, planes: np.ndarray, w: int, h: int) -> np.ndarray:
    return planes[:, ::-1]


def _vflip_masks(op: Op, planes: np.ndarray, w: int, h: int) -> np.ndarray:
    return planes[::-1]


def _hflip_points(op: Op, p: FloatArray, w: int, h: int) -> FloatArray:
    return np.stack([w - p[:, 0], p[:, 1]], axis=1)


def _vflip_points(op: Op, p: FloatArray, w: int, h: int) -> FloatArray:
    return np.stack([p[:, 0], h - p[:, 1]], axis=1)


# a mirror swaps left and right keypoints, up-down as left-right: a reflection reverses handedness
op_kind(
    OpKind(
        "hflip",
        moves_pixels=True,
        boxes=_hflip_boxes,
        masks=_hflip_masks,
        boxes_enclose_masks=True,
        keypoints=_hflip_points,
        mirrors=True,
    )
)
op_kind(
    OpKind(
        "vflip",
        moves_pixels=True,
        boxes=_vflip_boxes,
        masks=_vflip_masks,
        boxes_enclose_masks=True,
        keypoints=_vflip_points,
        mirrors=True,
    )
)


@cpu_kernel("hflip")
def _hflip_cpu(img: np.ndarray, op: Op) -> np.ndarray:
    return cpu.opencv().flip(img, 1)


@cpu_kernel("vflip")
def _vflip_cpu(img: np.ndarray, op: Op) -> np.ndarray:
    return cpu.opencv().flip(img, 0)


@gpu_kernel("hflip")
def _hflip_gpu(img: Any, op: Op) -> Any:
    return gpu.functional().horizontal_flip(img)


@gpu_kernel("vflip")
def _vflip_gpu(img: Any, op: Op) -> Any:
    return gpu.functional().vertical_flip(img)


@albumentations("hflip")
def _hflip_albu(A: Any, s: Any) -> Any:
    return A.HorizontalFlip(p=s.p)


@albumentations("vflip")
def _vflip_albu(A: Any, s: Any) -> Any:
    return A.VerticalFlip(p=s.p)
