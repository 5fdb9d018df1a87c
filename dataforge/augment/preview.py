"""``dataforge augment --preview N``: a grid of originals next to augmented copies, boxes drawn."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dataforge.augment import cpu
from dataforge.augment.pipeline import Pipeline
from dataforge.augment.sample import augment_sample
from dataforge.jsonio import atomic_write_bytes
from dataforge.store.store import Store

THUMB_H = 200
PAIRS_PER_ROW = 2


def _draw(img: np.ndarray, boxes: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    import cv2

    img = img.copy()
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(img, (round(x0), round(y0)), (round(x1) - 1, round(y1) - 1), colour, 2)
    return img


def _thumb(img: np.ndarray) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    tw = max(1, round(w * THUMB_H / h))
    return cv2.resize(img, (tw, THUMB_H), interpolation=cv2.INTER_AREA)


def preview(
    store_path: str | Path,
    pipeline: Pipeline,
    out: str | Path,
    *,
    n: int = 16,
    where: str | None = None,
    split: str | None = None,
    copy: int = 0,
) -> Path:
    """Write a PNG grid: for each of the first ``n`` selected images, the original (green boxes)
    and copy ``copy`` as ``dataforge augment`` makes it (red boxes: kept, after the box rules)."""
    import cv2

    store = Store.open(store_path)
    selected = store.select(where, split=split)[: max(1, n)]
    tiles = []
    for img in selected:
        rec = store.record(img)
        src = cpu.decode(rec.path.read_bytes(), where=rec.file_name)
        aug = augment_sample(
            pipeline, src, rec.boxes_xyxy, rec.size_wh, key=rec.file_name, copy=copy, files_only=True
        )
        left = _thumb(_draw(src, rec.boxes_xyxy, (0, 200, 0)))
        right = _thumb(_draw(aug.image, aug.kept_boxes, (0, 0, 230)))
        gap = np.full((THUMB_H, 6, 3), 255, np.uint8)
        tiles.append(np.concatenate([left, gap, right], axis=1))
    cell_w = max(t.shape[1] for t in tiles) + 16
    rows = math.ceil(len(tiles) / PAIRS_PER_ROW)
    cols = min(PAIRS_PER_ROW, len(tiles))
    canvas = np.full((rows * (THUMB_H + 16), cols * cell_w, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, PAIRS_PER_ROW)
        y, x = r * (THUMB_H + 16) + 8, c * cell_w + 8
        canvas[y : y + THUMB_H, x : x + t.shape[1]] = t
    _ok, buf = cv2.imencode(".png", canvas, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_path, buf.tobytes(), fsync=False)
    return out_path
