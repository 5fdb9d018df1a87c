"""Running a pipeline's maths: draw its random choices into concrete ops, map boxes through them,
apply the box rules. What each step and op is lives in ``dataforge/augment/steps/`` (one module
each) and registers in :mod:`dataforge.augment.registry`.

A pipeline step with ``p`` and ranges is *drawn* (``draw_ops``) into a list of plain-dict ops with
every parameter fixed, e.g. ``{"op": "crop", "xyxy": [10, 4, 330, 244]}``. Ops are what lineage
records, what replay applies, and what both backends (CPU and torchvision) execute, so the two
backends agree on geometry by construction of the parameters and by test of the kernels.

Op kinds: ``hflip``, ``vflip``, ``crop`` (``xyxy`` ints, end exclusive), ``resize`` (``size``
``[w, h]``), ``rotate`` (``angle`` degrees counter-clockwise, ``fill``), ``color`` (``brightness``,
``contrast``, ``saturation`` factors, ``hue`` turns), ``blur`` (``sigma``, ``ksize``),
``normalize`` (``mean``, ``std``).

Boxes are ``(N, 4)`` float64 absolute-pixel xyxy in continuous coordinates: pixel ``(i, j)`` covers
``[i, i + 1) x [j, j + 1)``, so the image spans ``[0, W] x [0, H]``. Keypoints are ``(M, 3)``
``(x, y, v)`` in the same coordinates. Instance masks travel bit-packed: eight ``(H, W)`` masks per
uint8 channel of one ``(H, W, C)`` array (:func:`pack_masks`), so one nearest-neighbour warp moves
up to eight masks per channel at once and a mask's pixels never blend with another's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataforge.augment.pipeline import BoxRules, Pipeline
from dataforge.augment.registry import DRAWERS, OPS, TARGETS, Op, OpKind
from dataforge.boxes import FloatArray, box_area
from dataforge.masks import bbox_xyxy as mask_bbox

__all__ = [
    "DRAWERS",
    "OPS",
    "TARGETS",
    "BoxOutcome",
    "Op",
    "OpKind",
    "apply_box_rules",
    "draw_ops",
    "image_rng",
    "pack_masks",
    "transform_keypoints",
    "transform_masks",
    "transform_masks_boxed",
    "unpack_masks",
]


def image_rng(seed: int, source_key: str, copy: int) -> np.random.Generator:
    """The generator for one (pipeline seed, source image, copy index): a stable hash, never ``hash()``."""
    digest = hashlib.blake2b(f"{seed}\x00{source_key}\x00{copy}".encode(), digest_size=16).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "little")))


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


def pack_masks(masks: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
    """``(N, H, W)`` bool masks as ``(H, W, ceil(N / 8))`` uint8 bit planes (mask ``i`` is bit
    ``7 - i % 8`` of channel ``i // 8``). ``boxes``: ``(N, 4)`` int xyxy (end exclusive) that hold
    each mask's pixels, to read each mask within its box only."""
    n, h, w = masks.shape
    if boxes is None:
        boxes = np.tile(np.array([0, 0, w, h], np.int64), (n, 1))
    boxes = np.asarray(boxes, np.int64).reshape(-1, 4)
    if n and not masks.flags.c_contiguous and masks.transpose(0, 2, 1).flags.c_contiguous:
        # column-major masks (pycocotools decodes them so): pack them as they lie, then transpose
        # each channel (OpenCV's blocked transpose; numpy's strided one is several times slower)
        cv2 = _cv2()
        channels = [cv2.transpose(c) for c in _pack_rows(masks.transpose(0, 2, 1), boxes[:, [1, 0, 3, 2]])]
    else:
        channels = list(_pack_rows(masks, boxes))
    return channels[0][:, :, None] if len(channels) == 1 else _cv2().merge(channels)


def _pack_rows(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(C, H, W)``: the bit planes channel-major, each mask or'ed in within its box."""
    n, h, w = masks.shape
    planes = np.zeros((max(1, (n + 7) // 8), h, w), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        one = masks[i, y0:y1, x0:x1]
        one = one.view(np.uint8) if one.dtype == bool else (one != 0).view(np.uint8)
        planes[i // 8, y0:y1, x0:x1] |= one << np.uint8(7 - i % 8)
    return planes


def _columns(planes: np.ndarray) -> list[np.ndarray]:
    """Each channel of ``(H, W, C)`` planes transposed, ``(W, H)`` C-contiguous: a mask's pixels
    in column-major order, as pycocotools encodes them."""
    cv2 = _cv2()
    channels = [planes[:, :, 0]] if planes.shape[2] == 1 else cv2.split(planes)
    return [cv2.transpose(np.ascontiguousarray(c)) for c in channels]


def _cv2() -> Any:
    from dataforge.augment.cpu import opencv

    return opencv()


def unpack_masks(planes: np.ndarray, n: int) -> np.ndarray:
    """The inverse of :func:`pack_masks`: ``(n, H, W)`` bool, each mask column-major (what
    pycocotools encodes without a copy)."""
    h, w = planes.shape[:2]
    return _unpack_within(planes, np.tile(np.array([0, 0, w, h], np.int64), (n, 1)), tight=False)[0]


def transform_masks(ops: list[Op], masks: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """``(N, H, W)`` bool masks through the ops' mask maps (nearest neighbour): ``(N, H', W')``."""
    return unpack_masks(_warp_planes(ops, pack_masks(masks), size_wh), len(masks))


def transform_masks_boxed(
    ops: list[Op], masks: np.ndarray, size_wh: tuple[int, int], boxes: np.ndarray | None = None
) -> tuple[np.ndarray, list[tuple[float, float, float, float] | None]]:
    """:func:`transform_masks` for masks whose pixels lie in ``boxes`` (``(N, 4)`` int xyxy, end
    exclusive; None: the whole image), and each moved mask's tight box (None once it left the
    image). When every op's box
    map encloses its mask map (:attr:`OpKind.boxes_enclose_masks`), each mask is packed, unpacked
    and measured within its box alone: the same masks, without N passes over the whole image."""
    n = len(masks)
    moving = [OPS[o["op"]] for o in ops if OPS[o["op"]].masks is not None]
    if boxes is None:
        boxes = np.tile(np.array([0, 0, size_wh[0], size_wh[1]], np.int64), (n, 1))
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if not n or not all(k.boxes_enclose_masks for k in moving):
        out = transform_masks(ops, masks, size_wh)
        return out, [mask_bbox(m) for m in out]
    if len(boxes) != n:
        raise ValueError(f"{len(boxes)} boxes for {n} masks")
    planes = _warp_planes(ops, pack_masks(masks, boxes), size_wh)
    h, w = planes.shape[:2]
    # each op's box map, and a pixel of margin after each for the rounding of its nearest-neighbour
    # mask map (a later upscale would scale a margin added only at the end past it)
    moved: np.ndarray = boxes.astype(np.float64)
    bw, bh = size_wh
    for op in ops:
        kind = OPS[op["op"]]
        if kind.boxes is not None:
            moved, _vis = kind.boxes(op, moved, np.ones(n), bw, bh)
        bw, bh = kind.size(op, bw, bh)
        if kind.masks is not None:
            moved = np.concatenate([np.floor(moved[:, :2]) - 1, np.ceil(moved[:, 2:]) + 1], axis=1)
            moved = np.clip(moved, 0, [bw, bh, bw, bh])
    lo = np.clip(moved[:, :2], 0, [w, h]).astype(np.int64)
    hi = np.clip(moved[:, 2:], 0, [w, h]).astype(np.int64)
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    hi[empty] = lo[empty]
    return _unpack_within(planes, np.concatenate([lo, hi], axis=1))


def _warp_planes(ops: list[Op], planes: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    w, h = size_wh
    for op in ops:
        kind = OPS[op["op"]]
        if kind.masks is not None:
            c = planes.shape[2]
            planes = kind.masks(op, planes, w, h)
            if planes.ndim == 2:  # OpenCV drops a single channel's axis
                planes = planes[:, :, None]
            if planes.shape[2] != c:
                raise AssertionError(f"op {op['op']!r}: its mask map changed the channel count")
        w, h = kind.size(op, w, h)
    if planes.shape[:2] != (h, w):
        raise AssertionError(f"mask planes are {planes.shape[1]}x{planes.shape[0]}, the image {w}x{h}")
    return planes


def _unpack_within(
    planes: np.ndarray, regions: np.ndarray, *, tight: bool = True
) -> tuple[np.ndarray, list[tuple[float, float, float, float] | None]]:
    """Masks ``i`` of ``planes`` unpacked within ``regions[i]`` (xyxy; zero outside it), each
    column-major, and (``tight``) their tight boxes."""
    h, w, _c = planes.shape
    columns = _columns(planes)
    out = np.zeros((len(regions), w, h), bool)  # mask i's transpose, C-ordered
    boxes: list[tuple[float, float, float, float] | None] = []
    for i, (x0, y0, x1, y1) in enumerate(regions.tolist()):
        if x1 <= x0 or y1 <= y0:
            boxes.append(None)
            continue
        part = out[i, x0:x1, y0:y1]
        np.not_equal(columns[i // 8][x0:x1, y0:y1] & np.uint8(1 << (7 - i % 8)), 0, out=part)
        if tight:
            box = mask_bbox(part.T)
            boxes.append(None if box is None else (box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0))
    return out.transpose(0, 2, 1), boxes


def transform_keypoints(
    ops: list[Op], keypoints: FloatArray, size_wh: tuple[int, int], flip_perm: np.ndarray | None = None
) -> FloatArray:
    """``(M, 3)`` ``(x, y, v)`` keypoints through the ops' point maps. A point that leaves the canvas
    becomes ``(0, 0, 0)`` (COCO's unlabelled point); ``v = 0`` points stay ``(0, 0, 0)``. A mirror op
    reorders the points by ``flip_perm`` (point ``i`` becomes the old point ``flip_perm[i]``: left
    and right swap), the identity when not given."""
    k = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3).copy()
    off = k[:, 2] <= 0
    k[off] = 0
    w, h = size_wh
    for op in ops:
        kind = OPS[op["op"]]
        if kind.keypoints is not None and len(k):
            k[:, :2] = kind.keypoints(op, k[:, :2], w, h)
            if kind.mirrors and flip_perm is not None:
                k = k[flip_perm]
        w, h = kind.size(op, w, h)
        outside = (k[:, 0] < 0) | (k[:, 0] > w) | (k[:, 1] < 0) | (k[:, 1] > h) | (k[:, 2] <= 0)
        k[outside] = 0
    return k


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
