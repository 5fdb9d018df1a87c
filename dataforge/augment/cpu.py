"""The CPU backend ("opencv"): OpenCV kernels on ``(H, W, 3)`` uint8 BGR arrays, and the codecs.

The kernels live with their steps (``dataforge/augment/steps/``) and register in
:data:`dataforge.augment.registry.CPU_KERNELS`. The geometric ones are the OpenCV calls
albumentations' functional API makes (a test checks them pixel for pixel against
``albumentations.augmentations.*.functional``), called directly: ``import albumentations`` also
imports torch, which costs every worker process about 2 s. Colour jitter is one fused colour
matrix in a single ``cv2.transform`` pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataforge.augment.registry import CPU_KERNELS, Op
from dataforge.errors import ImageError


def opencv() -> Any:
    """The cv2 module, imported on first use."""
    import cv2

    return cv2


def decode(data: bytes, *, where: str) -> np.ndarray:
    """Decode to ``(H, W, 3)`` uint8 BGR, ignoring EXIF orientation (the store's sizes are the file's)."""
    cv2 = opencv()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise ImageError(
            f"{where}: cannot decode the image (corrupt or not an image)",
            source=where,
            reason="corrupt-image",
        )
    return img


def encode(img: np.ndarray, fmt: str, *, quality: int = 90, png_compression: int = 1) -> bytes:
    cv2 = opencv()
    if fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression)])
    if not ok:  # pragma: no cover - cv2 fails only on invalid arrays
        raise ImageError(f"cannot encode the image as {fmt}")
    return buf.tobytes()


#: op name -> the opencv kernel: ``(H, W, 3)`` uint8 BGR image and the op -> the new image
KERNELS = CPU_KERNELS


def apply_ops(img: np.ndarray, ops: list[Op]) -> np.ndarray:
    """Run ops on an ``(H, W, 3)`` uint8 image. ``normalize`` (last) returns float32 CHW-ready HWC."""
    return np.ascontiguousarray(KERNELS.run(img, ops))
