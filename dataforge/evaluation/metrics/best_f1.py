"""``best_f1``: the score threshold to deploy a detector at, and what it gives there.

Over all classes, predictions above a threshold give a precision and a recall (at the report's
IoU threshold, VOC matching); the threshold whose F1 is highest is the usual first choice. COCO
mAP averages over every threshold and so never names one.
"""

from __future__ import annotations

import numpy as np

from dataforge.evaluation.registry import DetectionInputs, metric


@metric(
    "best_f1",
    task="detection",
    description="the score threshold with the highest F1 (all classes, at the IoU threshold)",
)
def best_f1(x: DetectionInputs) -> dict[str, float | int | None]:
    sel = np.flatnonzero(x.scored)
    if x.positives == 0 or sel.size == 0:
        return {"value": None, "score_threshold": None, "precision": None, "recall": None, "kept": 0}
    order = sel[np.argsort(-x.scores[sel], kind="mergesort")]
    scores = x.scores[order]
    tp = np.cumsum(x.true_positive[order])
    kept = np.arange(1, order.size + 1)
    # a threshold keeps every prediction scoring at least it: only the last of equal scores counts
    last = np.append(scores[1:] != scores[:-1], True)
    precision, recall = tp / kept, tp / x.positives
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    best = int(np.flatnonzero(last)[np.argmax(f1[last])])
    return {
        "value": float(f1[best]),
        "score_threshold": float(scores[best]),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "kept": int(kept[best]),
    }
