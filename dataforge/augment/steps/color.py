"""``color_jitter``: brightness, contrast, saturation and hue (torchvision's definitions, in that
order), fused into one colour matrix (:func:`dataforge.augment.geometry.color_matrix`) that both
backends apply in one pass; the concrete ``color`` op moves no pixel."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import field_validator

from dataforge.augment import cpu
from dataforge.augment.geometry import GRAY_RGB, color_matrix, uniform
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
from dataforge.augment.steps.base import RangeOrNumber, StepBase, check_range, pair


@step
class ColorJitter(StepBase):
    """Brightness/contrast/saturation factors from ``[1 - x, 1 + x]`` (or a pair), hue shift from
    ``[-h, h]`` turns (h <= 0.5). torchvision's definitions; applied in that order."""

    type: Literal["color_jitter"]
    brightness: RangeOrNumber = (1.0, 1.0)
    contrast: RangeOrNumber = (1.0, 1.0)
    saturation: RangeOrNumber = (1.0, 1.0)
    hue: RangeOrNumber = (0.0, 0.0)

    @field_validator("brightness", "contrast", "saturation", mode="before")
    @classmethod
    def _factor(cls, v: Any) -> Any:
        return pair(v, around=1.0, low=0.0)

    @field_validator("hue", mode="before")
    @classmethod
    def _hue(cls, v: Any) -> Any:
        return pair(v, around=0.0)

    @field_validator("brightness", "contrast", "saturation")
    @classmethod
    def _factor_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] < 0:
            raise ValueError("factors must be non-negative")
        return check_range(v, "factor")

    @field_validator("hue")
    @classmethod
    def _hue_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not -0.5 <= v[0] <= 0.5 or not -0.5 <= v[1] <= 0.5:
            raise ValueError("hue shifts are in turns: both ends within [-0.5, 0.5]")
        return check_range(v, "hue")


@draws("color_jitter")
def _draw(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    b, c = uniform(rng, step.brightness), uniform(rng, step.contrast)
    s, hue = uniform(rng, step.saturation), uniform(rng, step.hue)
    return [{"op": "color", "brightness": b, "contrast": c, "saturation": s, "hue": hue}] if fire else []


op_kind(OpKind("color", moves_pixels=False))


def color_cpu(
    img: np.ndarray, brightness: float, contrast: float, saturation: float, hue: float
) -> np.ndarray:
    """Colour jitter in one ``cv2.transform`` pass of the colour matrix on BGR pixels."""
    cv2 = cpu.opencv()
    m_rgb = color_matrix(brightness, contrast, saturation, hue)
    bias = 0.0
    if contrast != 1.0:
        # the contrast pivot: mean grey after brightness (rows subsampled: the mean of a quarter
        # of the rows differs from the full mean by far less than one grey level)
        sample = img[::4] if img.shape[0] >= 64 else img
        b_mean, g_mean, r_mean = cv2.mean(sample)[:3]
        grey = float(GRAY_RGB @ np.array([r_mean, g_mean, b_mean]))
        bias = (1 - contrast) * min(255.0, brightness * grey)
    m_bgr = m_rgb[::-1, ::-1]
    affine = np.hstack([m_bgr, np.full((3, 1), bias)]).astype(np.float32)
    return cv2.transform(img, affine)


def color_gpu(img: Any, brightness: float, contrast: float, saturation: float, hue: float) -> Any:
    """The same colour matrix on a ``(3, H, W)`` uint8 RGB tensor, so both backends jitter colours
    the same way (torchvision's own ``adjust_hue`` goes through HSV)."""
    import torch

    m = torch.as_tensor(
        color_matrix(brightness, contrast, saturation, hue), dtype=torch.float32, device=img.device
    )
    x = img.to(torch.float32)
    bias = 0.0
    if contrast != 1.0:
        grey = (torch.as_tensor(GRAY_RGB, dtype=torch.float32, device=img.device) @ x.mean(dim=(1, 2))).item()
        bias = (1 - contrast) * min(255.0, brightness * grey)
    out = torch.einsum("ij,jhw->ihw", m, x) + bias
    return out.round_().clamp_(0, 255).to(torch.uint8)


@cpu_kernel("color")
def _color_cpu(img: np.ndarray, op: Op) -> np.ndarray:
    return color_cpu(img, op["brightness"], op["contrast"], op["saturation"], op["hue"])


@gpu_kernel("color")
def _color_gpu(img: Any, op: Op) -> Any:
    return color_gpu(img, op["brightness"], op["contrast"], op["saturation"], op["hue"])


@albumentations("color_jitter")
def _albu(A: Any, s: Any) -> Any:
    return A.ColorJitter(
        brightness=s.brightness, contrast=s.contrast, saturation=s.saturation, hue=s.hue, p=s.p
    )
