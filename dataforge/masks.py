"""Instance and semantic masks as COCO stores them, through pycocotools' mask API.

A COCO ``segmentation`` is polygons (``[[x0, y0, x1, y1, ...], ...]``, several parts for one
object), an uncompressed RLE (``{"size": [h, w], "counts": [ints]}``, column-major runs starting
with background; COCO writes these for crowds) or a compressed RLE (``counts`` a string). Holes
exist only in RLE. Semantic masks are per-category RLE annotations with ``"semantic": true``.

Every conversion here goes through ``pycocotools.mask`` (the reference rasterizer the COCO metrics
use), so a mask decoded here is the mask COCOeval scores. Masks are ``(H, W)`` (or ``(N, H, W)``)
bool arrays; RLEs this module writes are compressed, ``counts`` a str (JSON-ready).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: the reasons :func:`segmentation_problem` returns (import reports and ``dataforge validate`` use them)
BAD_SEGMENTATION = "bad segmentation"


def _mask_api() -> Any:
    from pycocotools import mask as mask_api

    return mask_api


def is_rle(segmentation: Any) -> bool:
    return isinstance(segmentation, dict) and "counts" in segmentation


def has_mask(segmentation: Any) -> bool:
    """Whether a COCO ``segmentation`` holds a mask (non-empty polygons or an RLE)."""
    return bool(segmentation) and (is_rle(segmentation) or isinstance(segmentation, list))


def segmentation_problem(segmentation: Any, width: int, height: int) -> str | None:
    """What is wrong with a COCO ``segmentation`` for a ``width`` x ``height`` image, or None.

    Polygons: each a flat list of at least 3 finite (x, y) points with a non-zero area, inside the
    image (0.5 px of slack, as boxes). RLE: ``size`` is ``[height, width]`` and the runs cover
    exactly ``height * width`` pixels.
    """
    if segmentation in (None, [], {}):
        return None
    if is_rle(segmentation):
        size = segmentation.get("size")
        if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int for v in size)):
            return f"RLE size must be [height, width], found {size!r}"
        if size != [height, width]:
            return f"RLE size {size} is not the image's [height, width] [{height}, {width}]"
        counts = segmentation["counts"]
        if isinstance(counts, list):
            if not all(type(c) is int and c >= 0 for c in counts):
                return "RLE counts must be non-negative integers"
            total = sum(counts)
        elif isinstance(counts, (str, bytes)):
            try:
                total = _rle_total(counts)
            except ValueError as exc:
                return f"RLE counts cannot be decoded: {exc}"
        else:
            return f"RLE counts must be a list of ints or a string, found {type(counts).__name__}"
        if total != height * width:
            return f"RLE runs cover {total} pixels, not height * width = {height * width}"
        return None
    if not isinstance(segmentation, list):
        return f"segmentation must be polygons or an RLE, found {type(segmentation).__name__}"
    for k, poly in enumerate(segmentation):
        if not isinstance(poly, list) or not all(type(v) in (int, float) for v in poly):
            return f"polygon {k} must be a flat list of numbers"
        if not all(math.isfinite(v) for v in poly):
            return f"polygon {k} has a NaN or infinite coordinate"
        if len(poly) % 2 or len(poly) < 6:
            return f"polygon {k} has {len(poly) / 2:g} points; a polygon needs at least 3 (x, y) pairs"
        xs, ys = np.asarray(poly[0::2], dtype=np.float64), np.asarray(poly[1::2], dtype=np.float64)
        if abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))) < 1e-9:
            return f"polygon {k} has zero area"
        if xs.min() < -0.5 or ys.min() < -0.5 or xs.max() > width + 0.5 or ys.max() > height + 0.5:
            return (
                f"polygon {k} spans x {xs.min():g}..{xs.max():g}, y {ys.min():g}..{ys.max():g}, "
                f"outside the {width}x{height} image"
            )
    return None


def _rle_total(counts: str | bytes) -> int:
    """The pixel count a compressed RLE string's runs add up to (ValueError when it does not
    decode). pycocotools' decoder writes runs without a bounds check (counts longer than the image
    overrun its buffer), so they are summed here first."""
    return int(rle_totals([counts])[0])


def rle_totals(strings: Sequence[str | bytes]) -> np.ndarray:
    """:func:`_rle_total` of many compressed RLE strings in one vectorized pass (evaluation checks
    every predicted mask). COCO's string format: 5 bits per char (offset 48), 0x20 continues a
    run, 0x10 of a run's last char is its sign, and runs after the second are stored as the
    difference to the run two back. ValueError when any string does not decode."""
    raw = [x.encode() if isinstance(x, str) else bytes(x) for x in strings]
    # in pieces of ~32k chars: the temporaries stay in cache and in the heap (big ones would be
    # fresh pages, which cost more than the arithmetic)
    out, piece, size = [], [], 0
    for x in raw:
        piece.append(x)
        size += len(x)
        if size >= 1 << 15:
            out.append(_rle_totals(piece))
            piece, size = [], 0
    out.append(_rle_totals(piece))
    return np.concatenate(out)


def _rle_totals(raw: list[bytes]) -> np.ndarray:
    c = np.frombuffer(b"".join(raw), dtype=np.uint8).astype(np.int64) - 48
    lens = np.fromiter((len(x) for x in raw), dtype=np.int64, count=len(raw))
    if not len(c):
        return np.zeros(len(raw), dtype=np.int64)
    if c.min() < 0 or c.max() > 63:
        raise ValueError("not an RLE string")
    more = (c & 0x20) != 0
    string_end = np.cumsum(lens)[lens > 0] - 1
    if more[string_end].any():
        raise ValueError("truncated RLE string")
    ends = np.flatnonzero(~more)  # each run's last char; no run crosses two strings
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 12:  # 60 bits: no writer makes such a run, and int64 would overflow
        raise ValueError("an RLE run is too long")
    pos = np.arange(len(c))
    is_start = np.concatenate([[True], ~more[:-1]])
    shift = 5 * (pos - np.maximum.accumulate(np.where(is_start, pos, 0)))  # 5 x the char's place in its run
    x = np.add.reduceat((c & 0x1F) << shift, starts)
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * lengths[negative])
    later = np.cumsum(lens)[:-1]  # where strings 1, 2, ... begin
    owner = np.cumsum(np.bincount(later[later < len(c)], minlength=len(c)))[ends]  # the string of each run
    first = np.searchsorted(owner, np.arange(len(raw)))
    local = np.arange(len(x)) - first[owner]  # the run's index in its string
    # run i = x[i] + run i-2 for i > 2: a running sum per string over its odd runs and over its
    # even runs from the third on (runs 0 and 2 stand alone); runs lie in string order already
    runs = x.copy()
    for sel in (np.flatnonzero(local % 2 == 1), np.flatnonzero((local % 2 == 0) & (local >= 2))):
        if not len(sel):
            continue
        sums = np.cumsum(x[sel])
        o = owner[sel]
        head = np.flatnonzero(np.concatenate([[True], o[1:] != o[:-1]]))
        before = np.concatenate([[0], sums[head[1:] - 1]])  # the running sum before each string's part
        runs[sel] = sums - np.repeat(before, np.diff(np.concatenate([head, [len(sel)]])))
    if (runs < 0).any():
        raise ValueError("negative run")
    if runs.max() > 1 << 40:  # larger than any image; and the sums below stay exact
        raise ValueError("an RLE run is larger than any image")
    cs = np.concatenate([[0], np.cumsum(runs)])
    last = np.searchsorted(owner, np.arange(len(raw)), side="right")  # one past each string's runs
    return cs[last] - cs[first]


def to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """One compressed RLE (pycocotools' form: ``counts`` bytes) for any COCO segmentation;
    the parts of a multi-part polygon merge into one mask."""
    m = _mask_api()
    if is_rle(segmentation):
        if isinstance(segmentation["counts"], list):
            return m.frPyObjects(segmentation, height, width)
        counts = segmentation["counts"]
        return {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
    parts = m.frPyObjects([list(map(float, p)) for p in segmentation], height, width)
    return m.merge(parts) if len(parts) > 1 else parts[0]


def decode(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation as an ``(H, W)`` bool mask (an empty one for none)."""
    if not has_mask(segmentation):
        return np.zeros((height, width), dtype=bool)
    return _mask_api().decode(to_rle(segmentation, height, width)).astype(bool)


def decode_all(segmentations: Sequence[Any], height: int, width: int) -> np.ndarray:
    """``(N, H, W)`` bool masks, one per segmentation."""
    return decode_all_boxed(segmentations, height, width)[0]


def decode_all_boxed(segmentations: Sequence[Any], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`decode_all`, and the ``(N, 4)`` int xyxy (end exclusive) box of each mask's pixels
    (``0, 0, 0, 0`` for an empty one), read off the RLEs rather than the pixels."""
    which = [i for i, seg in enumerate(segmentations) if has_mask(seg)]
    boxes = np.zeros((len(segmentations), 4), np.int64)
    if not which:
        return np.zeros((len(segmentations), height, width), dtype=bool), boxes
    # one pycocotools call: (H, W, n) Fortran-ordered, i.e. n contiguous column-major masks
    api = _mask_api()
    rles = [to_rle(segmentations[i], height, width) for i in which]
    xywh = np.rint(api.toBbox(rles)).astype(np.int64).reshape(-1, 4)
    boxes[which] = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    decoded = api.decode(rles).transpose(2, 0, 1).view(bool)
    if len(which) == len(segmentations):
        return decoded, boxes  # (N, H, W), each mask column-major: no copy
    out = np.zeros((len(segmentations), height, width), dtype=bool)
    out[which] = decoded
    return out, boxes


def encode(mask: np.ndarray) -> dict[str, Any]:
    """An ``(H, W)`` mask as a JSON-ready compressed RLE (``counts`` a str)."""
    rle = _mask_api().encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def encode_all(masks: np.ndarray) -> tuple[list[dict[str, Any]], list[int]]:
    """``(N, H, W)`` masks as JSON-ready RLEs in one pycocotools call, and their pixel counts."""
    if not len(masks):
        return [], []
    m = _mask_api()
    rles = m.encode(np.asfortranarray(masks.transpose(1, 2, 0), dtype=np.uint8))
    areas = [int(a) for a in m.area(rles)]
    return [
        {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")} for r in rles
    ], areas


def bbox_xyxy(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The tight box of an ``(H, W)`` mask in continuous pixel coordinates (pixel ``(i, j)`` covers
    ``[i, i + 1)``), or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))  # only the rows it occupies
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(H, W)`` masks (1.0 for two empty masks)."""
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def polygons(mask: np.ndarray) -> list[list[float]]:
    """The outer contours of an ``(H, W)`` mask as COCO polygons that pycocotools rasterizes back
    to exactly the mask's pixels (holes aside).

    OpenCV traces the mask upsampled 2x, so each vertex sits a quarter pixel inside the pixel
    boundary: every mask pixel's centre is inside the polygon and every other pixel's outside.
    Polygons cannot hold holes: a mask with holes gains them back filled (:func:`has_holes`), and
    exporters that write polygons count those as approximated.
    """
    import cv2

    up = np.kron(np.ascontiguousarray(mask, dtype=np.uint8), np.ones((2, 2), np.uint8)).astype(np.uint8)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        pts = (c.reshape(-1, 2).astype(np.float64) + 0.5) / 2
        if len(pts) < 3:  # cannot happen for a 2x-upsampled pixel, which has 4 corners
            continue
        out.append([float(v) for v in pts.reshape(-1)])
    return out


def has_holes(mask: np.ndarray) -> bool:
    """Whether filling the outer contours of ``mask`` would add pixels (it has holes)."""
    import cv2

    m = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(m)
    cv2.drawContours(filled, contours, -1, 1, thickness=-1)
    return bool((filled > m).any())


# -- label maps: one PNG per image whose pixel values are class values ------------------------------

#: the value label maps use for "not labelled" (VOC's boundary/void; most segmentation sets)
VOID = 255


def read_label_map(path: Any, colors: dict[tuple[int, int, int], int] | None = None) -> np.ndarray:
    """A label-map PNG as an ``(H, W)`` int array of class values.

    Palette PNGs give their palette indices (VOC, Datumaro), grayscale 8- and 16-bit PNGs their
    values. An RGB(A) PNG needs ``colors`` (``(r, g, b) -> value``, CamVid-style tables); a colour
    that is not in it reads as -1, which callers report as outside the class table. Raises
    ``ValueError`` for an image that cannot be read.
    """
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"):
            arr = np.asarray(im)
            return arr.astype(np.int64) if arr.dtype != np.int64 else arr
        if mode in ("RGB", "RGBA", "LA"):
            rgb = np.asarray(im.convert("RGB")).astype(np.int64)
        else:
            raise ValueError(f"unsupported PNG mode {mode}")
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    if colors is None:
        grey = rgb[..., 0] == rgb[..., 1]
        if bool((grey & (rgb[..., 1] == rgb[..., 2])).all()):  # an RGB file that holds grey values
            return rgb[..., 0]
        raise ValueError("an RGB label map needs a class table with r, g, b colours")
    keys = np.array([(r << 16) | (g << 8) | b for r, g, b in colors], dtype=np.int64)
    vals = np.array(list(colors.values()), dtype=np.int64)
    order = np.argsort(keys)
    keys, vals = keys[order], vals[order]
    pos = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
    return np.where(keys[pos] == packed, vals[pos], -1)


def voc_palette(n: int = 256) -> list[int]:
    """The Pascal VOC colour map (class ``i``'s colour from the bits of ``i``), as a flat RGB list."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += [r, g, b]
    return out


def write_label_map(path: Any, label_map: np.ndarray, palette: list[int] | None = None) -> None:
    """Write an ``(H, W)`` label map: a palette PNG (VOC colours unless ``palette``) when every value
    fits in 8 bits, else a 16-bit grayscale PNG."""
    from PIL import Image

    if int(label_map.max(initial=0)) <= 255:
        im = Image.fromarray(label_map.astype(np.uint8), mode="P")
        im.putpalette(palette or voc_palette())
    else:
        im = Image.fromarray(label_map.astype(np.uint16))
    im.save(path, format="PNG")


def label_map_regions(label_map: np.ndarray, values: Sequence[int]) -> list[tuple[int, dict[str, Any], int]]:
    """For each of ``values`` (values present in ``label_map``): ``(value, RLE of its pixels, pixel
    count)``, in one pycocotools batch encode."""
    if not len(values):
        return []
    rles, areas = encode_all(np.stack([label_map == v for v in values]))
    return list(zip([int(v) for v in values], rles, areas, strict=True))


def present_values(label_map: np.ndarray) -> list[int]:
    """The values a label map holds, ascending."""
    return [int(v) for v in np.unique(label_map)]


def instance_map_regions(instance_map: np.ndarray, void: int = VOID) -> list[tuple[int, dict[str, Any], int]]:
    """Instance-id PNG (VOC ``SegmentationObject``: 0 background, ``void`` boundary, k = object k):
    ``(k, RLE, pixel count)`` for every instance present, k ascending."""
    return label_map_regions(instance_map, [v for v in present_values(instance_map) if v not in (0, void)])


def paint_label_map(
    regions: Sequence[tuple[Any, int]], height: int, width: int, fill: int
) -> tuple[np.ndarray, int]:
    """Paint ``(segmentation, value)`` pairs into an ``(H, W)`` label map, in order (later on top),
    over ``fill``. Returns the map and how many pixels a later region took from an earlier one."""
    out = np.full((height, width), fill, dtype=np.int64)
    painted = np.zeros((height, width), dtype=bool)
    overlap = 0
    if not regions:
        return out, 0
    masks = decode_all([seg for seg, _ in regions], height, width)
    for mask, (_, value) in zip(masks, regions, strict=True):
        overlap += int((mask & painted).sum())
        out[mask] = value
        painted |= mask
    return out, overlap


def area(segmentation: Any, height: int, width: int) -> int:
    """The pixel count of a COCO segmentation (pycocotools' ``area``; parts of a polygon merged)."""
    return int(_mask_api().area(to_rle(segmentation, height, width)))


def rle_bbox(rle: dict[str, Any]) -> list[float]:
    """The xywh box of an RLE's pixels (pycocotools' ``toBbox``)."""
    h, w = rle["size"]
    return [float(v) for v in _mask_api().toBbox(to_rle(rle, h, w))]
