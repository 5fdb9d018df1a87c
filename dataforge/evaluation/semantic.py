"""Semantic segmentation evaluation: a pixel confusion matrix over the classes, and what it gives.

Ground truth: the store's semantic regions (``"semantic": true`` RLE annotations, one per class
present in an image: what the ``masks`` and VOC ``SegmentationClass`` importers write). Pixels in
no region are void (255 in the label map) and are not counted. Predictions: COCO-Stuff results,
``{"image_id", "category_id", "segmentation": RLE}`` per class present; a pixel no predicted
region covers is counted in the ``unlabelled`` column (a miss of its true class).

Per class c, with the matrix ``M`` (rows truth, columns prediction): IoU = M[c,c] / (row + column
- M[c,c]) and accuracy (recall) = M[c,c] / row. mIoU and mean accuracy average the classes present
in the truth or the predictions (a class in neither has no IoU, ``None``); pixel accuracy is the
trace over the counted pixels; frequency-weighted IoU weights each IoU by its class's share of the
truth (as mmsegmentation, torchmetrics and the FCN paper define them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataforge.errors import DataError


def _class_maps(
    regions: list[dict[str, Any]], index: dict[int, int], height: int, width: int, fill: int, what: str
) -> np.ndarray:
    """An ``(H, W)`` map of class indices painted from ``regions`` (``fill`` where none); two
    regions may not share a pixel."""
    from dataforge.masks import decode_all

    out = np.full((height, width), fill, dtype=np.int64)
    if not regions:
        return out
    masks = decode_all([r["segmentation"] for r in regions], height, width)
    painted = np.zeros((height, width), dtype=bool)
    for r, m in zip(regions, masks, strict=True):
        if (painted & m).any():
            raise DataError(
                f"{what} of image {r['image_id']}: the regions of two classes overlap "
                f"(category {r['category_id']} and another); a semantic map gives each pixel one class"
            )
        out[m] = index[r["category_id"]]
        painted |= m
    return out


def class_scores(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class of a pixel confusion matrix ``(K, K)`` or ``(K, K + 1)`` (rows truth, columns
    prediction, an optional last column of pixels predicted as nothing): IoU and accuracy, NaN for
    a class in neither the truth nor the predictions (IoU) or not in the truth (accuracy)."""
    n = matrix.shape[0]
    tp = np.diag(matrix[:, :n]).astype(np.float64)
    rows = matrix.sum(axis=1).astype(np.float64)
    union = rows + matrix[:, :n].sum(axis=0) - tp
    iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
    acc = np.where(rows > 0, tp / np.where(rows > 0, rows, 1), np.nan)
    return iou, acc


def evaluate_semantic(gt: dict[str, Any], predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """mIoU, per-class IoU and accuracy, pixel accuracy, frequency-weighted IoU and the pixel
    confusion matrix of ``predictions`` (checked COCO-Stuff results) on ``gt``'s semantic regions."""
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(cats)}
    n = len(cats)
    truth_by: dict[int, list[dict[str, Any]]] = {}
    for a in gt["annotations"]:
        if a.get("semantic"):
            truth_by.setdefault(a["image_id"], []).append(a)
    if not truth_by:
        raise DataError(
            "the ground truth has no semantic regions ('semantic': true annotations) to evaluate "
            "semantic predictions against",
            hint="import label maps with --format masks, or VOC with --option masks=classes",
        )
    pred_by: dict[int, list[dict[str, Any]]] = {}
    for region in predictions:
        pred_by.setdefault(region["image_id"], []).append(region)
    matrix = np.zeros((n, n + 1), dtype=np.int64)  # last column: no prediction
    images = [img for img in gt["images"] if img["id"] in truth_by]
    per_image = []
    for img in images:
        h, w = img["height"], img["width"]
        t = _class_maps(truth_by[img["id"]], index, h, w, -1, "ground truth")
        pm = _class_maps(pred_by.get(img["id"], []), index, h, w, n, "predictions")
        counted = t >= 0
        pair = np.bincount(t[counted] * (n + 1) + pm[counted], minlength=n * (n + 1)).reshape(n, n + 1)
        matrix += pair
        counted_here = int(pair.sum())
        per_image.append(
            {
                "image_id": img["id"],
                "file_name": img.get("file_name"),
                "pixel_accuracy": float(np.trace(pair[:, :n]) / counted_here) if counted_here else None,
            }
        )
    iou, acc = class_scores(matrix)
    tp = np.diag(matrix[:, :n]).astype(np.float64)
    rows = matrix.sum(axis=1).astype(np.float64)
    cols = matrix[:, :n].sum(axis=0).astype(np.float64)
    present = ~np.isnan(iou)
    total = float(rows.sum())
    freq = rows / total if total else np.zeros(n)
    worst = sorted(
        (r for r in per_image if r["pixel_accuracy"] is not None),
        key=lambda r: (r["pixel_accuracy"], r["image_id"]),
    )[:20]

    def val(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    return {
        "mIoU": val(np.nanmean(iou)) if present.any() else None,
        "mean_accuracy": val(np.nanmean(acc)) if (rows > 0).any() else None,
        "pixel_accuracy": float(tp.sum() / total) if total else None,
        "frequency_weighted_IoU": float(np.nansum(freq * np.nan_to_num(iou))) if total else None,
        "per_class": [
            {
                "category_id": c["id"],
                "name": c["name"],
                "IoU": val(iou[i]),
                "accuracy": val(acc[i]),
                "pixels": int(rows[i]),
                "predicted_pixels": int(cols[i]),
            }
            for i, c in enumerate(cats)
        ],
        "confusion": {
            "labels": [c["name"] for c in cats],
            "columns_extra": "unlabelled",
            "rows": "ground truth",
            "columns": "predictions (+ unlabelled: no predicted class)",
            "matrix": matrix.tolist(),
        },
        "images": len(images),
        "counted_pixels": int(total),
        "worst_images": worst,
        "conventions": {
            "void": "ground-truth pixels in no semantic region are not counted",
            "mean_over": "classes present in the truth or the predictions",
            "unlabelled": "a pixel no predicted region covers counts against its true class",
        },
    }
