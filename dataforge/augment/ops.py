"""Concrete operations and their box maths: what a pipeline becomes once its random numbers are drawn.

A pipeline step with ``p`` and ranges is *drawn* (``draw_ops``) into a list of plain-dict ops with
every parameter fixed, e.g. ``{"op": "crop", "xyxy": [10, 4, 330, 244]}``. Ops are what lineage
records, what replay applies, and what both backends (CPU and torchvision) execute, so the two
backends agree on geometry by construction of the parameters and by test of the kernels.

Op kinds: ``hflip``, ``vflip``, ``crop`` (``xyxy`` ints, end exclusive), ``resize`` (``size``
``[w, h]``), ``rotate`` (``angle`` degrees counter-clockwise, ``fill``), ``color`` (``brightness``,
``contrast``, ``saturation`` factors, ``hue`` turns), ``blur`` (``sigma``, ``ksize``),
``normalize`` (``mean``, ``std``).

Boxes are ``(N, 4)`` float64 absolute-pixel xyxy in continuous coordinates: pixel ``(i, j)`` covers
``[i, i + 1) x [j, j + 1)``, so the image spans ``[0, W] x [0, H]``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataforge.augment.pipeline import BoxRules, Pipeline
from dataforge.boxes import FloatArray
from dataforge.errors import DataError

Op = dict[str, Any]


def image_rng(seed: int, source_key: str, copy: int) -> np.random.Generator:
    """The generator for one (pipeline seed, source image, copy index): a stable hash, never ``hash()``."""
    digest = hashlib.blake2b(f"{seed}\x00{source_key}\x00{copy}".encode(), digest_size=16).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "little")))


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(lo + (hi - lo) * rng.random())


def _rrc_window(
    rng: np.random.Generator, w: int, h: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop window search: 10 tries, then a centred fallback."""
    area = w * h
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * _uniform(rng, scale)
        aspect = math.exp(_uniform(rng, (log_lo, log_hi)))
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


def draw_ops(
    pipeline: Pipeline, rng: np.random.Generator, size_wh: tuple[int, int], *, where: str = "image"
) -> list[Op]:
    """Draw every random choice of ``pipeline`` for an image of ``size_wh``; returns the ops to apply.

    One ``rng.random()`` decides each step's ``p`` whatever its value, so a step's draws do not
    depend on whether earlier steps fired.
    """
    w, h = size_wh
    ops: list[Op] = []
    for step in pipeline.steps:
        fire = rng.random() < step.p
        t = step.type
        if t in ("hflip", "vflip"):
            if fire:
                ops.append({"op": t})
        elif t == "crop":
            x0, y0 = min(step.x_min, w), min(step.y_min, h)  # type: ignore[union-attr]
            x1, y1 = min(step.x_max, w), min(step.y_max, h)  # type: ignore[union-attr]
            if fire:
                if x1 <= x0 or y1 <= y0:
                    raise DataError(
                        f"{where}: the crop [{step.x_min}, {step.y_min}, {step.x_max}, {step.y_max}] "  # type: ignore[union-attr]
                        f"lies outside the {w}x{h} image",
                        hint="fix the crop step or select images with --where 'width >= ...'",
                    )
                ops.append({"op": "crop", "xyxy": [x0, y0, x1, y1]})
                w, h = x1 - x0, y1 - y0
        elif t in ("center_crop", "random_crop"):
            cw, ch = min(step.width, w), min(step.height, h)  # type: ignore[union-attr]
            if t == "center_crop":
                x0, y0 = (w - cw) // 2, (h - ch) // 2
            else:
                x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            if fire:
                ops.append({"op": "crop", "xyxy": [x0, y0, x0 + cw, y0 + ch]})
                w, h = cw, ch
        elif t == "random_resized_crop":
            x0, y0, x1, y1 = _rrc_window(rng, w, h, step.scale, step.ratio)  # type: ignore[union-attr]
            if fire:
                out_w, out_h = step.size or (w, h)  # type: ignore[union-attr]
                ops.append({"op": "crop", "xyxy": [x0, y0, x1, y1]})
                ops.append({"op": "resize", "size": [int(out_w), int(out_h)]})
                w, h = int(out_w), int(out_h)
        elif t == "random_scale":
            f = _uniform(rng, step.scale)  # type: ignore[union-attr]
            if fire:
                w, h = max(1, round(w * f)), max(1, round(h * f))
                ops.append({"op": "resize", "size": [w, h]})
        elif t == "resize":
            if fire:
                w, h = step.width, step.height  # type: ignore[union-attr]
                ops.append({"op": "resize", "size": [w, h]})
        elif t == "rotate":
            angle = _uniform(rng, step.limit)  # type: ignore[union-attr]
            if fire:
                ops.append({"op": "rotate", "angle": angle, "fill": step.fill})  # type: ignore[union-attr]
        elif t == "color_jitter":
            b = _uniform(rng, step.brightness)  # type: ignore[union-attr]
            c = _uniform(rng, step.contrast)  # type: ignore[union-attr]
            s = _uniform(rng, step.saturation)  # type: ignore[union-attr]
            hue = _uniform(rng, step.hue)  # type: ignore[union-attr]
            if fire:
                ops.append({"op": "color", "brightness": b, "contrast": c, "saturation": s, "hue": hue})
        elif t == "gaussian_blur":
            sigma = _uniform(rng, step.sigma)  # type: ignore[union-attr]
            if fire:
                ops.append({"op": "blur", "sigma": sigma, "ksize": max(3, 2 * math.ceil(3 * sigma) + 1)})
        elif t == "normalize":
            if fire:
                ops.append({"op": "normalize", "mean": list(step.mean), "std": list(step.std)})  # type: ignore[union-attr]
        else:  # pragma: no cover - the discriminated union admits nothing else
            raise AssertionError(t)
    return ops


def output_size(ops: list[Op], size_wh: tuple[int, int]) -> tuple[int, int]:
    w, h = size_wh
    for op in ops:
        if op["op"] == "crop":
            x0, y0, x1, y1 = op["xyxy"]
            w, h = x1 - x0, y1 - y0
        elif op["op"] == "resize":
            w, h = op["size"]
    return int(w), int(h)


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


def _area(b: FloatArray) -> FloatArray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def clip_boxes(boxes: FloatArray, vis: FloatArray, w: int, h: int) -> tuple[FloatArray, FloatArray]:
    """Clip boxes to ``[0, w] x [0, h]``; multiply ``vis`` by the fraction of each box's area kept."""
    before = _area(boxes)
    out = boxes.copy()
    np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
    after = _area(out)
    # zero-area boxes (a line) count as visible while any of them is inside
    inside = (out[:, 2] >= out[:, 0]) & (out[:, 3] >= out[:, 1]) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    inside &= (boxes[:, 0] < w) & (boxes[:, 1] < h)
    ratio = np.where(before > 0, after / np.where(before > 0, before, 1), inside.astype(np.float64))
    return out, vis * ratio


def transform_boxes(
    ops: list[Op], boxes_xyxy: FloatArray, size_wh: tuple[int, int]
) -> tuple[FloatArray, FloatArray, tuple[int, int]]:
    """Apply the geometric ops to boxes. Returns ``(boxes, visibility, output size)``.

    ``visibility`` is the fraction of each box's area still inside the image (crops and rotations
    cut boxes; flips and resizes do not).
    """
    b: FloatArray = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4).copy()
    vis: FloatArray = np.ones(len(b), dtype=np.float64)
    w, h = size_wh
    for op in ops:
        kind = op["op"]
        if kind == "hflip":
            b[:, [0, 2]] = w - b[:, [2, 0]]
        elif kind == "vflip":
            b[:, [1, 3]] = h - b[:, [3, 1]]
        elif kind == "crop":
            x0, y0, x1, y1 = op["xyxy"]
            b -= np.array([x0, y0, x0, y0], dtype=np.float64)
            w, h = x1 - x0, y1 - y0
            b, vis = clip_boxes(b, vis, w, h)
        elif kind == "resize":
            nw, nh = op["size"]
            b *= np.array([nw / w, nh / h, nw / w, nh / h])
            w, h = nw, nh
        elif kind == "rotate":
            m = rotation_matrix(op["angle"], (w, h))
            corners = np.stack(
                [b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1
            )  # (N, 4 corners, xy)
            moved = corners @ m[:, :2].T + m[:, 2]
            b = np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1) if len(b) else b
            b, vis = clip_boxes(b, vis, w, h)
    return b, vis, (int(w), int(h))


@dataclass(frozen=True, slots=True)
class BoxOutcome:
    """Which boxes survive the box rules, and the counts the job summary reports."""

    keep: np.ndarray  # (N,) bool
    clipped: int  # kept but cut
    dropped: int


def apply_box_rules(boxes: FloatArray, vis: FloatArray, rules: BoxRules) -> BoxOutcome:
    cut = vis < 1 - 1e-9
    keep = (vis >= rules.min_visibility) & (vis > 0) & (_area(boxes) >= rules.min_area)
    if rules.cut == "drop":
        keep &= ~cut
    return BoxOutcome(keep=keep, clipped=int((keep & cut).sum()), dropped=int((~keep).sum()))
