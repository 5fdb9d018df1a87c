"""Point regression ("where's my nose?"): how far each predicted point is from the true one.

Predictions are COCO keypoint results without a score, one per image and category
(``{"image_id", "category_id", "keypoints": [x, y, v] * K}``, pixels; the third number is not
used). The truth is the image's one annotation of that category with keypoints; only its labelled
points (``v > 0``) count. A labelled point of an image with no prediction counts as missed in PCK
(and is counted), never silently left out.

Numbers: the mean and median Euclidean error in pixels, the mean error as a fraction of the
image's longer side, PCK (the share of labelled points within ``alpha`` times the image's longer
side) at each of :data:`PCK_ALPHAS`, the same per point name, and the worst images by mean error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataforge.errors import DataError

#: PCK thresholds, as fractions of the image's longer side; the report's headline is 0.05
PCK_ALPHAS = (0.02, 0.05, 0.1)
HEADLINE_ALPHA = 0.05


def is_regression(preds: list[Any]) -> bool:
    """Keypoint results without scores (nor boxes or masks): one point set per image."""
    return bool(preds) and all(
        isinstance(p, dict) and "keypoints" in p and not ({"score", "bbox", "segmentation"} & p.keys())
        for p in preds
    )


def check_regression(
    preds: list[dict[str, Any]], gt: dict[str, Any], source: str, known_ids: set[int] | None = None
) -> list[dict[str, Any]]:
    """Validate point-regression results against ``gt``: known image and category, 3 finite numbers
    per point of the category, one entry per image and category. Returns those of the selected
    images (``known_ids``: every image id of the store when ``gt`` is a split of it)."""
    from dataforge.evaluation.predictions import _checked_points, one_per_image_and_class

    points = {c["id"]: c.get("keypoints") for c in gt["categories"]}
    second = (
        "point set of category {category} on image {image}; point regression has one per image and "
        "category (keypoint detections carry a score)"
    )
    out = []
    for where, p in one_per_image_and_class(preds, gt, source, known_ids, second):
        kps = _checked_points(p["keypoints"], points.get(p["category_id"]), where, source)
        out.append({"image_id": p["image_id"], "category_id": p["category_id"], "keypoints": kps})
    return out


def _truth(gt: dict[str, Any], category_ids: set[int]) -> dict[tuple[int, int], np.ndarray]:
    """``(image id, category id)`` -> the ``(K, 3)`` points of its one annotation with keypoints."""
    selected = {img["id"] for img in gt["images"]}
    out: dict[tuple[int, int], np.ndarray] = {}
    for a in gt["annotations"]:
        if a["image_id"] not in selected or a["category_id"] not in category_ids or not a.get("keypoints"):
            continue
        key = (a["image_id"], a["category_id"])
        pts = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        if not (pts[:, 2] > 0).any():
            continue
        if key in out:
            raise DataError(
                f"image {key[0]} has several annotations of category {key[1]} with keypoints; point "
                "regression compares one point set per image and category",
                hint="evaluate keypoint detections (with scores) by COCO OKS instead",
            )
        out[key] = pts
    return out


def per_image_errors(gt: dict[str, Any], preds: list[dict[str, Any]]) -> dict[int, float]:
    """Each predicted image's mean error (px) over its labelled true points."""
    truth = _truth(gt, {p["category_id"] for p in preds})
    sums: dict[int, list[float]] = {}
    for p in preds:
        pts = truth.get((p["image_id"], p["category_id"]))
        if pts is None:
            continue
        guess = np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 3)
        labelled = pts[:, 2] > 0
        d = np.hypot(*(guess[labelled, :2] - pts[labelled, :2]).T)
        sums.setdefault(p["image_id"], []).extend(d.tolist())
    return {iid: float(np.mean(v)) for iid, v in sums.items() if v}


def evaluate_regression(gt: dict[str, Any], preds: list[dict[str, Any]], *, worst: int = 8) -> dict[str, Any]:
    """The regression section of ``report.json`` for checked predictions (:func:`check_regression`)."""
    cats = {c["id"]: c for c in gt["categories"]}
    evaluated = {p["category_id"] for p in preds}
    truth = _truth(gt, evaluated)
    sizes = {img["id"]: (img["width"], img["height"]) for img in gt["images"]}
    files = {img["id"]: img.get("file_name") for img in gt["images"]}
    predicted = {(p["image_id"], p["category_id"]): p for p in preds}
    # one row per labelled true point: (image, category, point index, error px or nan, longer side)
    rows: list[tuple[int, int, int, float, float]] = []
    no_truth = 0
    for key, pts in sorted(truth.items()):
        side = float(max(sizes[key[0]]))
        p = predicted.get(key)
        guess = None if p is None else np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 3)
        for j in np.flatnonzero(pts[:, 2] > 0).tolist():
            err = float("nan") if guess is None else float(np.hypot(*(guess[j, :2] - pts[j, :2])))
            rows.append((key[0], key[1], j, err, side))
    for key in predicted:
        if key not in truth:
            no_truth += 1
    errors = np.array([r[3] for r in rows], dtype=np.float64)
    longer = np.array([r[4] for r in rows], dtype=np.float64)
    found = ~np.isnan(errors)

    def summary(mask: np.ndarray) -> dict[str, Any]:
        e, lg, f = errors[mask], longer[mask], found[mask]
        ok = e[f]
        out: dict[str, Any] = {
            "points": int(mask.sum()),
            "predicted": int(f.sum()),
            "mean_error_px": float(ok.mean()) if len(ok) else None,
            "median_error_px": float(np.median(ok)) if len(ok) else None,
            "mean_error_relative": float((ok / lg[f]).mean()) if len(ok) else None,
        }
        for alpha in PCK_ALPHAS:  # a missed point (no prediction) is not within any threshold
            hit = np.where(f, np.nan_to_num(e, nan=np.inf) <= alpha * lg, False)
            out[f"PCK@{alpha:g}"] = float(hit.mean()) if len(hit) else None
        return out

    everything = np.ones(len(rows), dtype=bool)
    report: dict[str, Any] = {
        "images": len({k[0] for k in truth}),
        "missing_predictions": sum(1 for k in truth if k not in predicted),
        "predictions_without_truth": no_truth,
        "pck_reference": "a fraction of the image's longer side",
        **summary(everything),
    }
    per_point = []
    cat_of = np.array([r[1] for r in rows], dtype=np.int64)
    idx_of = np.array([r[2] for r in rows], dtype=np.int64)
    for cid in sorted(evaluated):
        names = cats[cid].get("keypoints") or []
        for j, name in enumerate(names):
            mask = (cat_of == cid) & (idx_of == j)
            if mask.any():
                per_point.append({"category": cats[cid]["name"], "name": name, **summary(mask)})
    report["per_point"] = per_point
    ranked = sorted(per_image_errors(gt, preds).items(), key=lambda kv: (-kv[1], kv[0]))[:worst]
    report["worst_images"] = [
        {"image_id": iid, "file_name": files[iid], "mean_error_px": e} for iid, e in ranked
    ]
    return report
