"""Classification metrics: accuracy, top-k, per-class precision/recall/F1, confusion matrix.

Ground truth is each image's first image-level label (``labels`` in the store). The confusion
matrix has rows = ground truth and columns = predictions; ``normalized_by_row`` divides each row by
its total (so the diagonal is per-class recall).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataforge.errors import DataError
from dataforge.evaluation.predictions import category_of
from dataforge.evaluation.registry import ClassificationInputs, compute


def evaluate_classification(
    truth: dict[int, int],
    preds: list[dict[str, Any]],
    categories: dict[int, str],
    source: str,
    top_k: tuple[int, ...] = (1, 2, 3, 5),
) -> dict[str, Any]:
    by_name = {n: c for c, n in categories.items()}
    ranked: dict[int, list[int]] = {}
    for i, p in enumerate(preds):
        iid = p.get("image_id")
        if iid not in truth:
            raise DataError(
                f"{source}: prediction {i}: image_id {iid!r} has no ground-truth label", source=source
            )
        if isinstance(p.get("scores"), dict):
            scored = []
            for key, s in p["scores"].items():
                cid = category_of(key, by_name)
                if cid not in categories:
                    raise DataError(f"{source}: prediction {i}: unknown category {key!r}", source=source)
                if not isinstance(s, (int, float)) or s != s or s < 0:
                    raise DataError(
                        f"{source}: prediction {i}: score of {key!r} must be a number >= 0, found {s!r}",
                        source=source,
                    )
                scored.append((float(s), cid))
            ranked[iid] = [c for _s, c in sorted(scored, key=lambda t: -t[0])]
        elif p.get("category_id") in categories:
            ranked[iid] = [p["category_id"]]
        else:
            raise DataError(
                f"{source}: prediction {i}: category_id {p.get('category_id')!r} is not a category",
                source=source,
            )
    missing = sorted(set(truth) - set(ranked))
    cats = sorted(categories)
    index = {c: i for i, c in enumerate(cats)}
    matrix = np.zeros((len(cats), len(cats)), dtype=np.int64)
    for iid, label in truth.items():
        if iid in ranked:
            matrix[index[label], index[ranked[iid][0]]] += 1
    n = int(matrix.sum())
    per_class = []
    for i, cid in enumerate(cats):
        tp = int(matrix[i, i])
        p_den, r_den = int(matrix[:, i].sum()), int(matrix[i, :].sum())
        prec = tp / p_den if p_den else 0.0
        rec = tp / r_den if r_den else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class.append(
            {"name": categories[cid], "precision": prec, "recall": rec, "f1": f1, "support": r_den}
        )
    topk = {}
    for k in top_k:
        if all(len(r) >= k for r in ranked.values()) or k == 1:
            hits = sum(1 for iid, label in truth.items() if iid in ranked and label in ranked[iid][:k])
            topk[f"top{k}"] = hits / n if n else -1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.nan_to_num(matrix / matrix.sum(axis=1, keepdims=True))
    metrics = compute(
        "classification", ClassificationInputs(truth=truth, predictions=preds, names=categories)
    )
    return {
        "metrics": metrics,
        "images": n,
        "images_without_prediction": len(missing),
        "accuracy": float(np.trace(matrix) / n) if n else -1.0,
        "top_k": topk,
        "per_class": per_class,
        "macro_f1": float(np.mean([c["f1"] for c in per_class if c["support"]])) if n else -1.0,
        "confusion": {
            "labels": [categories[c] for c in cats],
            "rows": "ground truth",
            "columns": "predictions",
            "matrix": matrix.tolist(),
            "normalized_by_row": norm.tolist(),
        },
    }
