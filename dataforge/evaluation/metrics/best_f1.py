"""``best_f1``: the score threshold to deploy a detector at, and what it gives there.

Over all classes, predictions above a threshold give a precision and a recall (at the report's
IoU threshold, VOC matching); the threshold whose F1 is highest is the usual first choice. COCO
mAP averages over every threshold and so never names one.
"""

from __future__ import annotations

import numpy as np

from dataforge.evaluation.registry import DetectionInputs, metric


def thresholds(scores: np.ndarray, true: np.ndarray, positives: int) -> dict[str, np.ndarray]:
    """What each score threshold gives, predictions ranked by score: the scores ``s``,
    ``precision``, ``recall``, ``f1`` and ``kept`` at each rank, and ``at``, the ranks that are
    thresholds (a threshold keeps every prediction scoring at least it: only the last of equal
    scores counts). ``operating_points`` reads the same table per class."""
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    tp = np.cumsum(true[order])
    kept = np.arange(1, order.size + 1)
    at = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    precision, recall = tp / kept, tp / positives
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {"s": s, "precision": precision, "recall": recall, "f1": f1, "kept": kept, "at": at}


@metric(
    "best_f1",
    task="detection",
    description="the score threshold with the highest F1 (all classes, at the IoU threshold)",
)
def best_f1(x: DetectionInputs) -> dict[str, float | int | None]:
    sel = np.flatnonzero(x.scored)
    if x.positives == 0 or sel.size == 0:
        return {"value": None, "score_threshold": None, "precision": None, "recall": None, "kept": 0}
    t = thresholds(x.scores[sel], x.true_positive[sel], x.positives)
    best = int(t["at"][np.argmax(t["f1"][t["at"]])])
    return {
        "value": float(t["f1"][best]),
        "score_threshold": float(t["s"][best]),
        "precision": float(t["precision"][best]),
        "recall": float(t["recall"][best]),
        "kept": int(t["kept"][best]),
    }
