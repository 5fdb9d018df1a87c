"""``dataforge augment --preview N``: a grid of originals next to augmented copies, with their boxes,
masks (tinted) and keypoints (dots, joined by the category's skeleton) drawn."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dataforge.augment import cpu
from dataforge.augment.pipeline import Pipeline
from dataforge.augment.sample import augment_sample, label_args
from dataforge.jsonio import atomic_write_bytes
from dataforge.keypoints import flip_perms
from dataforge.store.store import Store

THUMB_H = 200
PAIRS_PER_ROW = 2


#: BGR colours the masks cycle through
MASK_COLOURS = np.array([[40, 180, 250], [250, 120, 40], [90, 220, 90], [200, 80, 220], [60, 60, 240]])


def _draw(
    img: np.ndarray,
    boxes: np.ndarray,
    colour: tuple[int, int, int],
    masks: np.ndarray | None = None,
    keypoints: Sequence[tuple[np.ndarray, list[list[int]]]] = (),
) -> np.ndarray:
    """Masks tinted at 45 %, then boxes, then each instance's keypoints (``v > 0``; hollow when
    ``v = 1``, hidden) with its skeleton's lines."""
    import cv2

    img = img.copy()
    if masks is not None:
        for i, m in enumerate(masks):
            tint = MASK_COLOURS[i % len(MASK_COLOURS)]
            img[m] = (0.55 * img[m] + 0.45 * tint).astype(np.uint8)
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(img, (round(x0), round(y0)), (round(x1) - 1, round(y1) - 1), colour, 2)
    for points, skeleton in keypoints:
        for a, b in skeleton:
            pa, pb = points[a - 1], points[b - 1]
            if pa[2] > 0 and pb[2] > 0:
                cv2.line(img, (round(pa[0]), round(pa[1])), (round(pb[0]), round(pb[1])), (255, 255, 255), 1)
        for n, (x, y, v) in enumerate(points):
            if v > 0:
                dot = (0, 255, 255) if n == 0 else (255, 0, 255)
                cv2.circle(img, (round(x), round(y)), 3, dot, -1 if v == 2 else 1)
    return img


def _instances(
    kps: np.ndarray | None, spans: list[tuple[int, int]], skeletons: list[list[list[int]]], which: np.ndarray
) -> list[tuple[np.ndarray, list[list[int]]]]:
    if kps is None:
        return []
    return [(kps[spans[k][0] : spans[k][1]], skeletons[k]) for k in which if spans[k][1] > spans[k][0]]


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
    perms = flip_perms(store.data["categories"], pipeline.keypoints.flip_idx)
    skeleton_of = {c["id"]: c.get("skeleton") or [] for c in store.data["categories"]}
    tiles = []
    for img in selected:
        rec = store.record(img)
        anns = store.index.anns_by_image[img["id"]]
        labels, spans = label_args(anns, rec.size_wh, perms)
        skeletons = [skeleton_of.get(a["category_id"], []) for a in anns]
        src = cpu.decode(rec.path.read_bytes(), where=rec.file_name)
        aug = augment_sample(
            pipeline,
            src,
            rec.boxes_xyxy,
            rec.size_wh,
            key=rec.file_name,
            copy=copy,
            files_only=True,
            **labels,
        )
        everyone = np.arange(len(anns))
        left = _thumb(
            _draw(
                src,
                rec.boxes_xyxy,
                (0, 200, 0),
                labels.get("masks"),
                _instances(labels.get("keypoints"), spans, skeletons, everyone),
            )
        )
        kept = np.flatnonzero(aug.keep)
        right = _thumb(
            _draw(
                aug.image,
                aug.kept_boxes,
                (0, 0, 230),
                None if aug.masks is None else aug.masks[kept],
                _instances(aug.keypoints, spans, skeletons, kept),
            )
        )
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
