"""Loading and checking prediction files against their ground truth.

Detection: COCO results JSON, a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
(absolute pixels); instance segmentation adds ``segmentation`` (an RLE of the image's size, or
polygons; ``bbox`` may then be left out and is the mask's), keypoint detection adds ``keypoints``
``[x, y, score] * K`` in the category's point order (``bbox`` optional). Semantic segmentation: a
list of ``{"image_id", "category_id", "segmentation"}`` without ``score`` (COCO-Stuff's results
format), one region per class present in an image. Classification: a list of ``{"image_id", "category_id", "score"?}`` (the predicted
class) or ``{"image_id", "scores": {category name or id: score, ...}}`` (every class's score;
the top one is the prediction, and top-k accuracy can be computed).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dataforge.errors import DataError
from dataforge.jsonio import load_json


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def category_of(key: Any, by_name: dict[str, int]) -> int | None:
    """The category a classification ``scores`` key names: a category name, or an id written as a
    number (JSON object keys are strings); None for neither."""
    return by_name.get(key, int(key) if str(key).lstrip("-").isdigit() else None)


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
    return bool(preds) and all(
        isinstance(p, dict) and not ({"bbox", "segmentation", "keypoints"} & p.keys()) for p in preds
    )


def _clean(
    preds: list[Any],
    image_ids: set[int],
    cat_ids: set[int],
    sizes: dict[Any, tuple[Any, Any]],
    points: dict[Any, Any],
) -> bool:
    """One vectorized pass: True when every prediction is well-formed (the usual case): known image
    and category, a finite score >= 0, a box of 4 finite numbers with w, h >= 0 (optional with a
    mask or keypoints), masks as RLE strings of the image's size whose runs cover it, keypoint
    lists of 3 finite numbers per point of the category."""
    try:
        images = {p["image_id"] for p in preds}
        cats = {p["category_id"] for p in preds}
        boxes = [p["bbox"] for p in preds if "bbox" in p or not ("segmentation" in p or "keypoints" in p)]
        scores = [p["score"] for p in preds]
        kps = [(p["keypoints"], p["category_id"]) for p in preds if "keypoints" in p]
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
    if not (np.isfinite(arr).all() and np.isfinite(sc).all() and (arr[:, 2:] >= 0).all() and (sc >= 0).all()):
        return False
    if kps:
        if any(
            type(k) is not list or type(points.get(c)) is not list or len(k) != 3 * len(points[c])
            for k, c in kps
        ):
            return False
        if {type(v) for k, _ in kps for v in k} - {int, float}:
            return False
        if not np.isfinite(np.fromiter((v for k, _ in kps for v in k), dtype=np.float64)).all():
            return False
    return _rles_fine(preds, sizes)


def is_semantic(preds: list[Any]) -> bool:
    """COCO-Stuff results: regions with a ``segmentation`` and no ``score`` (nor box)."""
    return bool(preds) and all(
        isinstance(p, dict) and "segmentation" in p and "score" not in p and "bbox" not in p for p in preds
    )


def check_detections(
    preds: list[dict[str, Any]], gt: dict[str, Any], source: str, known_ids: set[int] | None = None
) -> list[dict[str, Any]]:
    """Validate COCO results against ``gt``; every problem is a one-line error naming the entry.

    ``known_ids``: every image id of the store when ``gt`` is a selection of it (a split):
    predictions for those are valid and are left out of the result; ids outside it are errors.
    Masks must be the image's size and decode; keypoint lists need 3 finite numbers per point of
    the category. A prediction with a mask or keypoints may leave out its box (COCOeval then
    reads a mask's area off the mask, and a box's off the box: entries are kept as given).
    """
    selected = {img["id"] for img in gt["images"]}
    image_ids = known_ids if known_ids is not None else selected
    cat_ids = {c["id"] for c in gt["categories"]}
    sizes = {img["id"]: (img.get("width"), img.get("height")) for img in gt["images"]}
    points = {c["id"]: c.get("keypoints") for c in gt["categories"]}
    if _clean(preds, image_ids, cat_ids, sizes, points):
        return preds if image_ids is selected else [p for p in preds if p["image_id"] in selected]
    if preds and image_ids and not any(isinstance(p, dict) and p.get("image_id") in image_ids for p in preds):
        raise DataError(
            f"{source}: none of the {len(preds)} predictions refers to an image of this ground truth "
            f"(image ids {min(image_ids)}..{max(image_ids)}); is it a predictions file for another store?",
            source=source,
        )
    fine = _rles_fine(preds, sizes)
    out = []
    for i, p in enumerate(preds):
        where = f"{source}: prediction {i}"
        if _known(p, where, source, image_ids, cat_ids) not in selected:
            continue  # another split's: set aside
        score = p.get("score")
        if not _num(score) or score < 0:  # type: ignore[operator]
            raise DataError(f"{where}: score must be a number >= 0, found {score!r}", source=source)
        entry: dict[str, Any] = {"image_id": p["image_id"], "category_id": p["category_id"]}
        if "segmentation" in p:
            seg = p["segmentation"]
            entry["segmentation"] = (
                seg if fine else _checked_mask(seg, sizes.get(p["image_id"]), where, source)
            )
        if "keypoints" in p:
            entry["keypoints"] = _checked_points(p["keypoints"], points.get(p["category_id"]), where, source)
        bbox = p.get("bbox")
        if bbox is not None or not ("keypoints" in entry or "segmentation" in entry):
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_num(v) for v in bbox)):
                raise DataError(
                    f"{where}: bbox must be [x, y, width, height] numbers, found {bbox!r}", source=source
                )
            if bbox[2] < 0 or bbox[3] < 0:
                raise DataError(f"{where}: bbox {bbox} has a negative width or height", source=source)
            entry["bbox"] = [float(v) for v in bbox]
        entry["score"] = float(score)  # type: ignore[arg-type]
        out.append(entry)
    return out


def _rles_fine(preds: list[Any], sizes: dict[Any, tuple[Any, Any]]) -> bool:
    """One vectorized pass: True when every prediction with a mask has a compressed RLE of its
    image's size whose runs cover the image (the usual case; otherwise each is checked alone)."""
    from dataforge.masks import rle_totals

    try:
        # images outside the selection (another split) are set aside unchecked
        segs = [
            (p["segmentation"], sizes[p["image_id"]])
            for p in preds
            if "segmentation" in p and p["image_id"] in sizes
        ]
        if not segs:
            return True
        if not all(
            type(seg) is dict and type(seg.get("counts")) is str and seg.get("size") == [h, w]
            for seg, (w, h) in segs
        ):
            return False
        totals = rle_totals([seg["counts"] for seg, _ in segs])
    except (KeyError, TypeError, ValueError):
        return False
    areas = np.fromiter((w * h for _, (w, h) in segs), dtype=np.int64, count=len(segs))
    return bool((totals == areas).all())


def _known(p: Any, where: str, source: str, image_ids: set[int], cat_ids: set[int]) -> Any:
    """A prediction's image id, once it is an object of a known image and category (else a
    one-line error naming it)."""
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
    return p["image_id"]


def _checked_mask(seg: Any, size: tuple[Any, Any] | None, where: str, source: str) -> dict[str, Any]:
    """A prediction's mask as a compressed RLE (``counts`` a str), or a one-line error."""
    from dataforge.masks import has_mask, segmentation_problem, to_rle

    w, h = size if size is not None else (None, None)
    if not (isinstance(w, int) and isinstance(h, int)):
        raise DataError(
            f"{where}: its image has no width and height to check the mask against", source=source
        )
    if not has_mask(seg):
        raise DataError(f"{where}: segmentation must be an RLE or polygons, found {seg!r:.60}", source=source)
    problem = segmentation_problem(seg, w, h)
    if problem is not None:
        raise DataError(f"{where}: {problem}", source=source)
    rle = to_rle(seg, h, w)
    counts = rle["counts"]
    return {"size": [h, w], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _checked_points(kps: Any, names: Any, where: str, source: str) -> list[float]:
    if not isinstance(names, list) or not names:
        raise DataError(
            f"{where}: keypoints given, but its category names no points (categories[].keypoints)",
            source=source,
        )
    if not (isinstance(kps, list) and all(_num(v) for v in kps)):
        raise DataError(f"{where}: keypoints must be finite numbers [x, y, score, ...]", source=source)
    if len(kps) != 3 * len(names):
        raise DataError(
            f"{where}: {len(kps)} keypoint numbers, but the category has {len(names)} points "
            f"({3 * len(names)} numbers)",
            source=source,
        )
    return [float(v) for v in kps]


def one_per_image_and_class(
    preds: list[Any], gt: dict[str, Any], source: str, known_ids: set[int] | None, second: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, prediction)`` for each prediction of the selected images, once it names a known
    image and category and is the first of its (image, category); a second is a one-line error
    (``second`` says what it is: "a second region of category 3 on image 7; ..." ). Predictions for
    other images of ``known_ids`` (another split) are set aside."""
    selected = {img["id"] for img in gt["images"]}
    image_ids = known_ids if known_ids is not None else selected
    cat_ids = {c["id"] for c in gt["categories"]}
    seen: set[tuple[int, int]] = set()
    for i, p in enumerate(preds):
        where = f"{source}: prediction {i}"
        if _known(p, where, source, image_ids, cat_ids) not in selected:
            continue
        key = (p["image_id"], p["category_id"])
        if key in seen:
            raise DataError(
                f"{where}: a second {second.format(category=key[1], image=key[0])}", source=source
            )
        seen.add(key)
        yield where, p


def check_semantic(
    preds: list[dict[str, Any]], gt: dict[str, Any], source: str, known_ids: set[int] | None = None
) -> list[dict[str, Any]]:
    """Validate COCO-Stuff results (one region per class present in an image) against ``gt``:
    known image and category, a mask of the image's size that decodes, one region per class and
    image. Returns the regions of the selected images, masks as compressed RLE."""
    sizes = {img["id"]: (img.get("width"), img.get("height")) for img in gt["images"]}
    out = []
    second = (
        "region of category {category} on image {image}; semantic results have one region per class and image"
    )
    for where, p in one_per_image_and_class(preds, gt, source, known_ids, second):
        seg = _checked_mask(p.get("segmentation"), sizes.get(p["image_id"]), where, source)
        out.append({"image_id": p["image_id"], "category_id": p["category_id"], "segmentation": seg})
    return out
