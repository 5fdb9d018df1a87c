"""EXIF orientation (phone photos): the 8 values of tag 0x0112 as maps of pixels and labels.

A camera that stores its pixels sideways writes orientation 6 or 8 and lets viewers turn them.
``dataforge import --exif rotate`` turns the pixels as a viewer would (Pillow's
``ImageOps.exif_transpose``) and every label with them, so boxes are in the displayed orientation;
the default keeps the file's pixels and its labels as they are (the frame COCO tools use).

Maps for an image stored ``w`` x ``h`` (continuous coordinates; ``x'``, ``y'`` in the turned image):

====  ===================  =================  ============
 tag   what a viewer does   (x, y) ->          turned size
====  ===================  =================  ============
 2     mirror left-right    (w - x, y)         w x h
 3     rotate 180           (w - x, h - y)     w x h
 4     mirror top-bottom    (x, h - y)         w x h
 5     transpose            (y, x)             h x w
 6     rotate 90 clockwise  (h - y, x)         h x w
 7     transverse           (h - y, w - x)     h x w
 8     rotate 90 counter    (y, w - x)         h x w
====  ===================  =================  ============
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def turned_size(orientation: int, w: int, h: int) -> tuple[int, int]:
    return (h, w) if orientation >= 5 else (w, h)


def map_points(
    orientation: int, xs: np.ndarray, ys: np.ndarray, w: int, h: int
) -> tuple[np.ndarray, np.ndarray]:
    """Continuous points of a ``w`` x ``h`` stored image into the turned image."""
    return {
        1: lambda: (xs, ys),
        2: lambda: (w - xs, ys),
        3: lambda: (w - xs, h - ys),
        4: lambda: (xs, h - ys),
        5: lambda: (ys, xs),
        6: lambda: (h - ys, xs),
        7: lambda: (h - ys, w - xs),
        8: lambda: (ys, w - xs),
    }[orientation]()


def map_mask(orientation: int, m: np.ndarray) -> np.ndarray:
    """An ``(h, w)`` pixel mask turned as the image is."""
    return {
        1: lambda: m,
        2: lambda: m[:, ::-1],
        3: lambda: m[::-1, ::-1],
        4: lambda: m[::-1, :],
        5: lambda: m.T,
        6: lambda: m.T[:, ::-1],
        7: lambda: m.T[::-1, ::-1],
        8: lambda: m.T[::-1, :],
    }[orientation]()


def turn_image(data: bytes, fmt: str) -> bytes:
    """The image turned upright as a viewer shows it, re-encoded without the orientation tag
    (JPEG at quality 95: the pixels change once; other formats losslessly as PNG)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        upright = ImageOps.exif_transpose(img)
        assert upright is not None
        exif = upright.getexif()
        exif.pop(0x0112, None)
        buf = io.BytesIO()
        if fmt == "jpeg":
            upright.convert("RGB").save(buf, format="JPEG", quality=95, exif=exif)
        else:
            upright.save(buf, format="PNG")
    return buf.getvalue()


def turn_annotation(a: dict[str, Any], orientation: int, w: int, h: int) -> None:
    """Turn an annotation of a ``w`` x ``h`` stored image (box, polygons or RLE mask, keypoints),
    in place."""
    from dataforge.masks import decode, encode, is_rle

    x, y, bw, bh = a["bbox"]
    xs, ys = map_points(orientation, np.array([x, x + bw]), np.array([y, y + bh]), w, h)
    a["bbox"] = [float(xs.min()), float(ys.min()), float(abs(xs[1] - xs[0])), float(abs(ys[1] - ys[0]))]
    seg = a.get("segmentation")
    if isinstance(seg, list) and seg:
        out = []
        for poly in seg:
            p = np.asarray(poly, dtype=np.float64)
            px, py = map_points(orientation, p[0::2], p[1::2], w, h)
            out.append([round(float(v), 4) for pair in zip(px, py, strict=True) for v in pair])
        a["segmentation"] = out
    elif is_rle(seg):
        a["segmentation"] = encode(np.ascontiguousarray(map_mask(orientation, decode(seg, h, w))))
    kps = a.get("keypoints")
    if kps:
        k = np.asarray(kps, dtype=np.float64).reshape(-1, 3)
        px, py = map_points(orientation, k[:, 0], k[:, 1], w, h)
        labelled = k[:, 2] > 0
        a["keypoints"] = [
            v
            for (nx, ny, vis), lab in zip(zip(px, py, k[:, 2], strict=True), labelled, strict=True)
            for v in ((round(float(nx), 4), round(float(ny), 4), int(vis)) if lab else (0, 0, 0))
        ]
