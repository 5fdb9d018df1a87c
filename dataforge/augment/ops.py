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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataforge.augment.pipeline import BoxRules, Pipeline
from dataforge.boxes import FloatArray, box_area
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


Drawer = Callable[[Any, np.random.Generator, bool, int, int, str], list[Op]]
#: pipeline step type -> how it draws its parameters: (step, rng, fire, w, h, where) -> ops
DRAWERS: dict[str, Drawer] = {}


def draws(*step_types: str) -> Callable[[Drawer], Drawer]:
    """Register how a pipeline step draws its ops. A drawer makes every draw whether or not the step
    fires (so later steps' draws do not depend on it) and returns ``[]`` when it does not."""

    def register(fn: Drawer) -> Drawer:
        for t in step_types:
            DRAWERS[t] = fn
        return fn

    return register


@draws("hflip", "vflip")
def _draw_flip(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    return [{"op": step.type}] if fire else []


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
    x0, y0, x1, y1 = _rrc_window(rng, w, h, step.scale, step.ratio)
    if not fire:
        return []
    out_w, out_h = step.size or (w, h)
    return [{"op": "crop", "xyxy": [x0, y0, x1, y1]}, {"op": "resize", "size": [int(out_w), int(out_h)]}]


@draws("random_scale")
def _draw_scale(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    f = _uniform(rng, step.scale)
    return [{"op": "resize", "size": [max(1, round(w * f)), max(1, round(h * f))]}] if fire else []


@draws("resize")
def _draw_resize(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    return [{"op": "resize", "size": [step.width, step.height]}] if fire else []


@draws("rotate")
def _draw_rotate(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    angle = _uniform(rng, step.limit)
    return [{"op": "rotate", "angle": angle, "fill": step.fill}] if fire else []


@draws("color_jitter")
def _draw_color(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    b, c = _uniform(rng, step.brightness), _uniform(rng, step.contrast)
    s, hue = _uniform(rng, step.saturation), _uniform(rng, step.hue)
    return [{"op": "color", "brightness": b, "contrast": c, "saturation": s, "hue": hue}] if fire else []


@draws("gaussian_blur")
def _draw_blur(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    sigma = _uniform(rng, step.sigma)
    return [{"op": "blur", "sigma": sigma, "ksize": max(3, 2 * math.ceil(3 * sigma) + 1)}] if fire else []


@draws("normalize")
def _draw_normalize(step: Any, rng: np.random.Generator, fire: bool, w: int, h: int, where: str) -> list[Op]:
    return [{"op": "normalize", "mean": list(step.mean), "std": list(step.std)}] if fire else []


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
        drawn = DRAWERS[step.type](step, rng, fire, w, h, where)
        w, h = output_size(drawn, (w, h))
        ops.extend(drawn)
    return ops


def output_size(ops: list[Op], size_wh: tuple[int, int]) -> tuple[int, int]:
    w, h = size_wh
    for op in ops:
        w, h = OPS[op["op"]].size(op, w, h)
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


def transform_boxes(
    ops: list[Op], boxes_xyxy: FloatArray, size_wh: tuple[int, int]
) -> tuple[FloatArray, FloatArray, tuple[int, int]]:
    """Apply the ops' box maps. Returns ``(boxes, visibility, output size)``.

    ``visibility`` is the fraction of each box's area still inside the image (crops and rotations
    cut boxes; flips and resizes do not).
    """
    b: FloatArray = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4).copy()
    vis: FloatArray = np.ones(len(b), dtype=np.float64)
    w, h = size_wh
    for op in ops:
        kind = OPS[op["op"]]
        if kind.boxes is not None:
            b, vis = kind.boxes(op, b, vis, w, h)
        w, h = kind.size(op, w, h)
    return b, vis, (int(w), int(h))


# --- the ops: what each does to the canvas and to each label type ------------------------------------
#: the label types an op that moves pixels must map (masks and keypoints join here)
TARGETS = ("boxes",)

SizeMap = Callable[[Op, int, int], tuple[int, int]]
#: (op, boxes (N, 4) xyxy, visibility (N,), w, h of the input) -> (boxes, visibility)
BoxMap = Callable[[Op, FloatArray, FloatArray, int, int], tuple[FloatArray, FloatArray]]


def _same_size(op: Op, w: int, h: int) -> tuple[int, int]:
    return w, h


@dataclass(frozen=True, slots=True)
class OpKind:
    """One concrete op. ``moves_pixels=False`` ops (colour, blur, normalize) leave every label as it
    is, by declaration; the others map each of ``TARGETS`` (``boxes``) or the registry test fails.
    ``in_files``: whether an image file can hold its output (normalize makes floats)."""

    name: str
    moves_pixels: bool
    size: SizeMap = _same_size
    boxes: BoxMap | None = None
    in_files: bool = True


def _hflip_boxes(op: Op, b: FloatArray, vis: FloatArray, w: int, h: int) -> tuple[FloatArray, FloatArray]:
    b[:, [0, 2]] = w - b[:, [2, 0]]
    return b, vis


def _vflip_boxes(op: Op, b: FloatArray, vis: FloatArray, w: int, h: int) -> tuple[FloatArray, FloatArray]:
    b[:, [1, 3]] = h - b[:, [3, 1]]
    return b, vis


def _crop_size(op: Op, w: int, h: int) -> tuple[int, int]:
    x0, y0, x1, y1 = op["xyxy"]
    return x1 - x0, y1 - y0


def _crop_boxes(op: Op, b: FloatArray, vis: FloatArray, w: int, h: int) -> tuple[FloatArray, FloatArray]:
    x0, y0, x1, y1 = op["xyxy"]
    return clip_boxes(b - np.array([x0, y0, x0, y0], dtype=np.float64), vis, x1 - x0, y1 - y0)


def _resize_size(op: Op, w: int, h: int) -> tuple[int, int]:
    nw, nh = op["size"]
    return nw, nh


def _resize_boxes(op: Op, b: FloatArray, vis: FloatArray, w: int, h: int) -> tuple[FloatArray, FloatArray]:
    nw, nh = op["size"]
    return b * np.array([nw / w, nh / h, nw / w, nh / h]), vis


def _rotate_boxes(op: Op, b: FloatArray, vis: FloatArray, w: int, h: int) -> tuple[FloatArray, FloatArray]:
    """The rotated box's corners' bounding box, clipped to the (unchanged) canvas."""
    if not len(b):
        return b, vis
    m = rotation_matrix(op["angle"], (w, h))
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1)  # (N, 4, xy)
    moved = corners @ m[:, :2].T + m[:, 2]
    return clip_boxes(np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1), vis, w, h)


OPS: dict[str, OpKind] = {
    k.name: k
    for k in (
        OpKind("hflip", moves_pixels=True, boxes=_hflip_boxes),
        OpKind("vflip", moves_pixels=True, boxes=_vflip_boxes),
        OpKind("crop", moves_pixels=True, size=_crop_size, boxes=_crop_boxes),
        OpKind("resize", moves_pixels=True, size=_resize_size, boxes=_resize_boxes),
        OpKind("rotate", moves_pixels=True, boxes=_rotate_boxes),
        OpKind("color", moves_pixels=False),
        OpKind("blur", moves_pixels=False),
        OpKind("normalize", moves_pixels=False, in_files=False),
    )
}


class Kernels(dict[str, Callable[[Any, Op], Any]]):
    """One backend's kernels, op name -> ``(image, op) -> image``: ``@table.register("hflip")``
    adds one, ``table.run(image, ops)`` applies ops in order."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.backend = backend

    def register(self, name: str) -> Callable[[Callable[[Any, Op], Any]], Callable[[Any, Op], Any]]:
        def add(fn: Callable[[Any, Op], Any]) -> Callable[[Any, Op], Any]:
            self[name] = fn
            return fn

        return add

    def run(self, image: Any, ops: list[Op]) -> Any:
        for op in ops:
            fn = self.get(op["op"])
            if fn is None:
                raise ValueError(f"unknown op {op['op']!r} for the {self.backend} backend")
            image = fn(image, op)
        return image


@dataclass(frozen=True, slots=True)
class BoxOutcome:
    """Which boxes survive the box rules, and the counts the job summary reports."""

    keep: np.ndarray  # (N,) bool
    clipped: int  # kept but cut
    dropped: int


def apply_box_rules(boxes: FloatArray, vis: FloatArray, rules: BoxRules) -> BoxOutcome:
    cut = vis < 1 - 1e-9
    keep = (vis >= rules.min_visibility) & (vis > 0) & (box_area(boxes) >= rules.min_area)
    if rules.cut == "drop":
        keep &= ~cut
    return BoxOutcome(keep=keep, clipped=int((keep & cut).sum()), dropped=int((~keep).sum()))
