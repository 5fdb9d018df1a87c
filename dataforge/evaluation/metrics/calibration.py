"""``calibration``: do the scores mean what they say? Reliability in 10 equal-width score bins and
the expected calibration error (ECE: the bins' |accuracy - mean score|, weighted by their share).

Detection: a prediction is right when it matches a ground truth at the report's IoU threshold
(VOC matching; predictions a crowd region hides are left out). Classification: the top class's
score against whether it is the true class (needs each prediction's ``score`` or ``scores``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataforge.evaluation.predictions import category_of
from dataforge.evaluation.registry import ClassificationInputs, DetectionInputs, metric

BINS = 10


def reliability(scores: np.ndarray, right: np.ndarray) -> dict[str, Any]:
    """ECE, the largest bin gap (MCE) and the per-bin table of ``scores`` in [0, 1]."""
    if scores.size == 0:
        return {"value": None, "ece": None, "mce": None, "bins": [], "predictions": 0}
    s = np.clip(scores, 0.0, 1.0)
    which = np.minimum((s * BINS).astype(np.int64), BINS - 1)  # [0, 0.1), ..., [0.9, 1.0]
    count = np.bincount(which, minlength=BINS)
    mean_score = np.bincount(which, weights=s, minlength=BINS)
    hits = np.bincount(which, weights=right.astype(np.float64), minlength=BINS)
    bins, ece, mce = [], 0.0, 0.0
    for b in range(BINS):
        n = int(count[b])
        conf = float(mean_score[b] / n) if n else None
        acc = float(hits[b] / n) if n else None
        if n:
            gap = abs(acc - conf)  # type: ignore[operator]
            ece += n / s.size * gap
            mce = max(mce, gap)
        bins.append(
            {"low": b / BINS, "high": (b + 1) / BINS, "count": n, "mean_score": conf, "accuracy": acc}
        )
    return {"value": ece, "ece": ece, "mce": mce, "bins": bins, "predictions": int(s.size)}


@metric(
    "calibration",
    task="detection",
    description="expected calibration error of the scores (right: matched at the IoU threshold), 10 bins",
)
def detection_calibration(x: DetectionInputs) -> dict[str, Any]:
    out = reliability(x.scores[x.scored], x.true_positive[x.scored])
    out["right_means"] = f"matched a ground truth at IoU >= {x.iou_threshold}"
    return out


@metric(
    "calibration",
    task="classification",
    description="expected calibration error of the top class's score, 10 bins",
)
def classification_calibration(x: ClassificationInputs) -> dict[str, Any]:
    by_name = {n: c for c, n in x.names.items()}
    scores, right = [], []
    for p in x.predictions:
        iid = p.get("image_id")
        if iid not in x.truth:
            continue
        if isinstance(p.get("scores"), dict) and p["scores"]:
            key, score = max(p["scores"].items(), key=lambda kv: kv[1])
            cid = category_of(key, by_name)
        elif isinstance(p.get("score"), (int, float)):
            cid, score = p.get("category_id"), p["score"]
        else:
            return {"value": None, "reason": "predictions without scores", "bins": []}
        scores.append(float(score))
        right.append(cid == x.truth[iid])
    out = reliability(np.array(scores), np.array(right, dtype=bool))
    out["right_means"] = "the top class is the true one"
    return out
