"""``operating_points``: per class, the score threshold to deploy at and what each threshold gives.

For each class, its predictions above a threshold give a precision and a recall (at the report's
IoU threshold, VOC matching); the threshold with the highest F1 is the recommendation, and the
precision the class reaches at fixed recall levels (the best precision at any threshold whose recall
is at least the level) says what a stricter or looser deployment costs. ``dataforge evaluate --out``
writes the recommendations as ``thresholds.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataforge.evaluation.metrics.best_f1 import thresholds
from dataforge.evaluation.registry import DetectionInputs, metric

RECALL_LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95)


def curve(scores: np.ndarray, true: np.ndarray, positives: int) -> dict[str, Any]:
    """Best-F1 point and precision at :data:`RECALL_LEVELS` of one set of scored predictions."""
    empty: dict[str, Any] = {
        "score_threshold": None,
        "f1": None,
        "precision": None,
        "recall": None,
        "kept": 0,
        "precision_at_recall": {str(r): None for r in RECALL_LEVELS},
        "threshold_at_recall": {str(r): None for r in RECALL_LEVELS},
        "ground_truth": positives,
        "predictions": int(scores.size),
    }
    if positives == 0 or scores.size == 0 or not true.any():
        return empty
    t = thresholds(scores, true, positives)
    s, precision, recall, f1, kept, at = (t[k] for k in ("s", "precision", "recall", "f1", "kept", "at"))
    best = int(at[np.argmax(f1[at])])
    p_at: dict[str, float | None] = {}
    t_at: dict[str, float | None] = {}
    for level in RECALL_LEVELS:
        ok = at[recall[at] >= level - 1e-12]
        if ok.size:
            k = int(ok[np.argmax(precision[ok])])
            p_at[str(level)], t_at[str(level)] = float(precision[k]), float(s[k])
        else:
            p_at[str(level)] = t_at[str(level)] = None
    return {
        "score_threshold": float(s[best]),
        "f1": float(f1[best]),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "kept": int(kept[best]),
        "precision_at_recall": p_at,
        "threshold_at_recall": t_at,
        "ground_truth": positives,
        "predictions": int(scores.size),
    }


@metric(
    "operating_points",
    task="detection",
    description="per class: the best-F1 score threshold, its precision and recall, precision at fixed recalls",
)
def operating_points(x: DetectionInputs) -> dict[str, Any]:
    cats = np.fromiter((p["category_id"] for p in x.predictions), dtype=np.int64, count=len(x.predictions))
    positives: dict[int, int] = {}
    for a in x.gt.get("annotations", []):
        if not a.get("iscrowd") and not a.get("semantic"):
            positives[int(a["category_id"])] = positives.get(int(a["category_id"]), 0) + 1
    per_class = []
    for c in x.gt["categories"]:
        sel = x.scored & (cats == int(c["id"]))
        row = curve(x.scores[sel], x.true_positive[sel], positives.get(int(c["id"]), 0))
        per_class.append({"category_id": int(c["id"]), "name": str(c["name"]), **row})
    overall = curve(x.scores[x.scored], x.true_positive[x.scored], x.positives)
    return {
        "value": overall["f1"],
        "iou_threshold": x.iou_threshold,
        "recall_levels": list(RECALL_LEVELS),
        "overall": overall,
        "per_class": per_class,
    }
