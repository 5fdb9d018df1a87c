"""Box conventions and the one place where they are converted.

Internally dataforge uses **absolute-pixel xyxy** boxes: ``[x_min, y_min, x_max, y_max]`` as
float64, with the image's ``(width, height)`` beside them. Every other convention is converted
here, at the boundary, and nowhere else:

* COCO ``bbox``: absolute-pixel ``[x, y, w, h]`` (top-left corner, continuous coordinates).
* YOLO: normalized ``[cx, cy, w, h]`` in ``[0, 1]``.
* TF Object Detection API: normalized ``xmin, ymin, xmax, ymax`` lists.
* Label Studio: percent ``x, y, width, height`` in ``[0, 100]``.
* FiftyOne: relative ``[x, y, w, h]`` in ``[0, 1]``.
* Pascal VOC devkit: 1-based pixel corners (``xmin = x + 1``).

All functions take and return ``numpy`` arrays of shape ``(N, 4)`` (or ``(4,)``), float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

#: A box may stick out of its image by this many pixels before it counts as "outside".
#: Real annotation tools round corners, and COCO's own files have boxes that end at 640.01.
OUT_OF_BOUNDS_TOLERANCE_PX = 0.5


def _as_boxes(boxes: ArrayLike) -> FloatArray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.shape[-1:] != (4,):
        raise ValueError(f"boxes must have shape (..., 4), got {arr.shape}")
    return arr


def xywh_to_xyxy(boxes_xywh: ArrayLike) -> FloatArray:
    """COCO ``[x, y, w, h]`` (absolute pixels) to ``[x1, y1, x2, y2]`` (absolute pixels)."""
    b = _as_boxes(boxes_xywh)
    out = b.copy()
    out[..., 2] = b[..., 0] + b[..., 2]
    out[..., 3] = b[..., 1] + b[..., 3]
    return out


def xywh_to_xyxy_floats(bbox_xywh: Sequence[float]) -> tuple[float, float, float, float]:
    """One COCO ``[x, y, w, h]`` to xyxy as plain floats: for per-annotation code, where an array
    per box would cost more than the box."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    return x, y, x + w, y + h


def xywh_to_xyxy_norm_floats(
    bbox_xywh: Sequence[float], size_wh: Sequence[float]
) -> tuple[float, float, float, float]:
    """One COCO ``[x, y, w, h]`` to xyxy normalized to the image size (TF OD API), as plain floats."""
    x, y, w, h = bbox_xywh
    iw, ih = size_wh
    return x / iw, y / ih, (x + w) / iw, (y + h) / ih


def xyxy_norm_to_xywh_floats(
    x0: float, y0: float, x1: float, y1: float, size_wh: Sequence[float]
) -> tuple[float, float, float, float]:
    """One normalized xyxy box (TF OD API) to COCO ``[x, y, w, h]`` in pixels, as plain floats."""
    iw, ih = size_wh
    return x0 * iw, y0 * ih, (x1 - x0) * iw, (y1 - y0) * ih


def xywh_to_cxcywh_norm_floats(
    bbox_xywh: Sequence[float], size_wh: Sequence[float]
) -> tuple[float, float, float, float]:
    """One COCO ``[x, y, w, h]`` to YOLO's centre and size normalized to the image, as plain floats."""
    x, y, w, h = bbox_xywh
    iw, ih = size_wh
    return (x + w / 2) / iw, (y + h / 2) / ih, w / iw, h / ih


def xyxy_to_xywh(boxes_xyxy: ArrayLike) -> FloatArray:
    """``[x1, y1, x2, y2]`` (absolute pixels) to COCO ``[x, y, w, h]`` (absolute pixels)."""
    b = _as_boxes(boxes_xyxy)
    out = b.copy()
    out[..., 2] = b[..., 2] - b[..., 0]
    out[..., 3] = b[..., 3] - b[..., 1]
    return out


def xyxy_to_cxcywh_norm(boxes_xyxy: ArrayLike, size_wh: Sequence[float]) -> FloatArray:
    """Absolute xyxy to YOLO's normalized ``[cx, cy, w, h]`` for an image of ``size_wh``."""
    b = _as_boxes(boxes_xyxy)
    w, h = float(size_wh[0]), float(size_wh[1])
    out = np.empty_like(b)
    out[..., 0] = (b[..., 0] + b[..., 2]) / 2.0 / w
    out[..., 1] = (b[..., 1] + b[..., 3]) / 2.0 / h
    out[..., 2] = (b[..., 2] - b[..., 0]) / w
    out[..., 3] = (b[..., 3] - b[..., 1]) / h
    return out


def cxcywh_norm_to_xyxy(boxes_cxcywh: ArrayLike, size_wh: Sequence[float]) -> FloatArray:
    """YOLO's normalized ``[cx, cy, w, h]`` to absolute xyxy for an image of ``size_wh``."""
    b = _as_boxes(boxes_cxcywh)
    w, h = float(size_wh[0]), float(size_wh[1])
    out = np.empty_like(b)
    out[..., 0] = (b[..., 0] - b[..., 2] / 2.0) * w
    out[..., 1] = (b[..., 1] - b[..., 3] / 2.0) * h
    out[..., 2] = (b[..., 0] + b[..., 2] / 2.0) * w
    out[..., 3] = (b[..., 1] + b[..., 3] / 2.0) * h
    return out


def xyxy_to_xyxy_norm(boxes_xyxy: ArrayLike, size_wh: Sequence[float]) -> FloatArray:
    """Absolute xyxy to normalized xyxy (TF Object Detection API)."""
    b = _as_boxes(boxes_xyxy)
    scale = np.array([size_wh[0], size_wh[1], size_wh[0], size_wh[1]], dtype=np.float64)
    return b / scale


def xyxy_norm_to_xyxy(boxes_xyxy_norm: ArrayLike, size_wh: Sequence[float]) -> FloatArray:
    """Normalized xyxy (TF Object Detection API) to absolute xyxy."""
    b = _as_boxes(boxes_xyxy_norm)
    scale = np.array([size_wh[0], size_wh[1], size_wh[0], size_wh[1]], dtype=np.float64)
    return b * scale


def xyxy_to_xywh_percent(boxes_xyxy: ArrayLike, size_wh: Sequence[float]) -> FloatArray:
    """Absolute xyxy to Label Studio's percent ``[x, y, width, height]`` (0..100)."""
    return xyxy_to_xywh(xyxy_to_xyxy_norm(boxes_xyxy, size_wh)) * 100.0


def xywh_percent_to_xyxy(boxes_pct: ArrayLike, size_wh: Sequence[float]) -> FloatArray:
    """Label Studio's percent ``[x, y, width, height]`` to absolute xyxy."""
    return xyxy_norm_to_xyxy(xywh_to_xyxy(_as_boxes(boxes_pct) / 100.0), size_wh)


def xyxy_to_xywh_rel(boxes_xyxy: ArrayLike, size_wh: Sequence[float]) -> FloatArray:
    """Absolute xyxy to FiftyOne's relative ``[x, y, w, h]`` (0..1)."""
    return xyxy_to_xywh(xyxy_to_xyxy_norm(boxes_xyxy, size_wh))


def xywh_rel_to_xyxy(boxes_rel: ArrayLike, size_wh: Sequence[float]) -> FloatArray:
    """FiftyOne's relative ``[x, y, w, h]`` to absolute xyxy."""
    return xyxy_norm_to_xyxy(xywh_to_xyxy(boxes_rel), size_wh)


def xyxy_to_voc_devkit(boxes_xyxy: ArrayLike) -> FloatArray:
    """Absolute continuous xyxy to the VOC devkit's 1-based pixel corners."""
    return _as_boxes(boxes_xyxy) + np.array([1.0, 1.0, 0.0, 0.0])


def voc_devkit_to_xyxy(boxes_voc: ArrayLike) -> FloatArray:
    """The VOC devkit's 1-based pixel corners to absolute continuous xyxy."""
    return _as_boxes(boxes_voc) - np.array([1.0, 1.0, 0.0, 0.0])


def box_area(boxes_xyxy: ArrayLike) -> FloatArray:
    """Area of each xyxy box (0 for degenerate boxes), shape ``(N,)``."""
    b = _as_boxes(boxes_xyxy)
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def out_of_bounds(
    boxes_xyxy: ArrayLike, size_wh: ArrayLike, tolerance: float = OUT_OF_BOUNDS_TOLERANCE_PX
) -> NDArray[np.bool_]:
    """True for each xyxy box that extends more than ``tolerance`` pixels beyond its image.
    ``size_wh`` is one ``(w, h)`` for all boxes or an ``(N, 2)`` array, one per box."""
    b = _as_boxes(boxes_xyxy)
    s = np.asarray(size_wh, dtype=np.float64)
    w, h = s[..., 0], s[..., 1]
    return (
        (b[..., 0] < -tolerance)
        | (b[..., 1] < -tolerance)
        | (b[..., 2] > w + tolerance)
        | (b[..., 3] > h + tolerance)
    )


def xywh_inside_image(
    x: float, y: float, w: float, h: float, image_w: float, image_h: float,
    tolerance: float = OUT_OF_BOUNDS_TOLERANCE_PX,
) -> bool:  # fmt: skip
    """One xywh box, as plain floats (the per-annotation checks of the importers): within the image
    give or take ``tolerance`` pixels. A NaN anywhere is not inside."""
    return (
        x >= -tolerance and y >= -tolerance and x + w <= image_w + tolerance and y + h <= image_h + tolerance
    )
