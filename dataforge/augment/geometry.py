"""The maths the augment steps share: uniform draws, torchvision's crop window search, rotation and
colour matrices, clipping boxes to the canvas.

Boxes are ``(N, 4)`` float64 absolute-pixel xyxy in continuous coordinates: pixel ``(i, j)`` covers
``[i, i + 1) x [j, j + 1)``, so the image spans ``[0, W] x [0, H]``.
"""

from __future__ import annotations

import math

import numpy as np

from dataforge.boxes import FloatArray, box_area


def uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(lo + (hi - lo) * rng.random())


def rrc_window(
    rng: np.random.Generator, w: int, h: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop window search: 10 tries, then a centred fallback."""
    area = w * h
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * uniform(rng, scale)
        aspect = math.exp(uniform(rng, (log_lo, log_hi)))
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            x0 = int(rng.integers(0, w - cw + 1))
            y0 = int(rng.integers(0, h - ch + 1))
            return x0, y0, x0 + cw, y0 + ch
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    cw, ch = max(1, min(cw, w)), max(1, min(ch, h))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return x0, y0, x0 + cw, y0 + ch


def rotation_matrix(angle: float, size_wh: tuple[int, int]) -> FloatArray:
    """2x3 affine matrix of a counter-clockwise rotation about the image centre, continuous coords."""
    w, h = size_wh
    a = math.radians(angle)
    cos, sin = math.cos(a), math.sin(a)
    cx, cy = w / 2, h / 2
    return np.array(
        [[cos, sin, (1 - cos) * cx - sin * cy], [-sin, cos, sin * cx + (1 - cos) * cy]], dtype=np.float64
    )


#: luma weights (ITU-R 601), RGB order: the grey that contrast and saturation blend towards
GRAY_RGB = np.array([0.299, 0.587, 0.114])
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def color_matrix(brightness: float, contrast: float, saturation: float, hue: float) -> FloatArray:
    """Colour jitter as one linear map on RGB: ``out = M @ rgb + (1 - contrast) * grey_mean``.

    In order: brightness scales; contrast blends with the image's mean grey (torchvision's
    definitions of both); saturation blends with each pixel's grey; hue rotates by ``hue`` turns
    about the grey axis in YIQ space (NVIDIA DALI's ColorTwist does the same; torchvision shifts H
    in HSV instead, which costs a colour-space round trip per pixel). Every step keeps greys grey,
    which is why the bias is a scalar. Clipping happens once, at the end. ``M`` is ``(3, 3)`` float64.
    """
    sat = saturation * np.eye(3) + (1 - saturation) * np.outer(np.ones(3), GRAY_RGB)
    theta = 2 * math.pi * hue
    rot = np.array([[1, 0, 0], [0, math.cos(theta), -math.sin(theta)], [0, math.sin(theta), math.cos(theta)]])
    hue_m = _YIQ_TO_RGB @ rot @ _RGB_TO_YIQ
    return np.asarray(contrast * brightness * (hue_m @ sat), dtype=np.float64)


def clip_boxes(boxes: FloatArray, vis: FloatArray, w: int, h: int) -> tuple[FloatArray, FloatArray]:
    """Clip boxes to ``[0, w] x [0, h]``; multiply ``vis`` by the fraction of each box's area kept."""
    before = box_area(boxes)
    out = boxes.copy()
    np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
    after = box_area(out)
    # zero-area boxes (a line) count as visible while any of them is inside
    inside = (out[:, 2] >= out[:, 0]) & (out[:, 3] >= out[:, 1]) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    inside &= (boxes[:, 0] < w) & (boxes[:, 1] < h)
    ratio = np.where(before > 0, after / np.where(before > 0, before, 1), inside.astype(np.float64))
    return out, vis * ratio
