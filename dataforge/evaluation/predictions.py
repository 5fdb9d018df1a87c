"""Loading and checking prediction files against their ground truth.

Detection: COCO results JSON, a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
(absolute pixels). Classification: a list of ``{"image_id", "category_id", "score"?}`` (the predicted
class) or ``{"image_id", "scores": {category name or id: score, ...}}`` (every class's score;
the top one is the prediction, and top-k accuracy can be computed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dataforge.errors import DataError
from dataforge.jsonio import load_json


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_predictions(path: Path) -> list[dict[str, Any]]:
    data = load_json(path, what="predictions file")
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]  # a COCO-shaped file holding results
    if not isinstance(data, list):
        raise DataError(
            f"{path.name}: expected a list of predictions, found a {type(data).__name__}",
            source=str(path),
            hint="COCO results are a JSON list of {image_id, category_id, bbox, score}",
        )
    return data


def is_classification(preds: list[dict[str, Any]]) -> bool:
    return bool(preds) and all(isinstance(p, dict) and "bbox" not in p for p in preds)


def _clean(preds: list[Any], image_ids: set[int], cat_ids: set[int]) -> bool:
    """One vectorized pass: True when every prediction is well-formed (the usual case)."""
    try:
        images = {p["image_id"] for p in preds}
        cats = {p["category_id"] for p in preds}
        boxes = [p["bbox"] for p in preds]
        scores = [p["score"] for p in preds]
    except (KeyError, TypeError):
        return False
    if not (images <= image_ids and cats <= cat_ids):
        return False
    if any(type(b) is not list or len(b) != 4 for b in boxes):
        return False
    if ({type(v) for b in boxes for v in b} | {type(v) for v in scores}) - {int, float}:
        return False
    arr = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    sc = np.array(scores, dtype=np.float64)
    return bool(
        np.isfinite(arr).all() and np.isfinite(sc).all() and (arr[:, 2:] >= 0).all() and (sc >= 0).all()
    )


def check_detections(
    preds: list[dict[str, Any]], gt: dict[str, Any], source: str, known_ids: set[int] | None = None
) -> list[dict[str, Any]]:
    """Validate COCO results against ``gt``; every problem is a one-line error naming the entry.

    ``known_ids``: every image id of the store when ``gt`` is a selection of it (a split):
    predictions for those are valid and are left out of the result; ids outside it are errors.
    """
    selected = {img["id"] for img in gt["images"]}
    image_ids = known_ids if known_ids is not None else selected
    cat_ids = {c["id"] for c in gt["categories"]}
    if _clean(preds, image_ids, cat_ids):
        return preds if image_ids is selected else [p for p in preds if p["image_id"] in selected]
    if preds and image_ids and not any(isinstance(p, dict) and p.get("image_id") in image_ids for p in preds):
        raise DataError(
            f"{source}: none of the {len(preds)} predictions refers to an image of this ground truth "
            f"(image ids {min(image_ids)}..{max(image_ids)}); is it a predictions file for another store?",
            source=source,
        )
    out = []
    for i, p in enumerate(preds):
        where = f"{source}: prediction {i}"
        if not isinstance(p, dict):
            raise DataError(f"{where} is not an object", source=source)
        if p.get("image_id") not in image_ids:
            raise DataError(
                f"{where}: image_id {p.get('image_id')!r} is not in the ground truth",
                source=source,
                hint="predictions must use the store's image ids (see `dataforge info`)",
            )
        if p.get("category_id") not in cat_ids:
            raise DataError(
                f"{where}: category_id {p.get('category_id')!r} is not in the ground truth "
                f"(ids {sorted(cat_ids)})",
                source=source,
            )
        bbox = p.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_num(v) for v in bbox)):
            raise DataError(
                f"{where}: bbox must be [x, y, width, height] numbers, found {bbox!r}", source=source
            )
        if bbox[2] < 0 or bbox[3] < 0:
            raise DataError(f"{where}: bbox {bbox} has a negative width or height", source=source)
        score = p.get("score")
        if not _num(score) or score < 0:  # type: ignore[operator]
            raise DataError(f"{where}: score must be a number >= 0, found {score!r}", source=source)
        out.append(
            {
                "image_id": p["image_id"],
                "category_id": p["category_id"],
                "bbox": [float(v) for v in bbox],
                "score": float(score),  # type: ignore[arg-type]
            }
        )
    return out if image_ids is selected else [p for p in out if p["image_id"] in selected]
