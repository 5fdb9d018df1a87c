"""Pure metric functions: IoU, greedy matching, VOC average precision, confusion matrices.

All boxes are absolute-pixel xyxy float arrays of shape ``(N, 4)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dataforge.boxes import FloatArray, box_area


def box_iou(boxes_a_xyxy: ArrayLike, boxes_b_xyxy: ArrayLike) -> FloatArray:
    """IoU of every pair: ``(N, 4)`` x ``(M, 4)`` xyxy boxes -> ``(N, M)`` float64. Degenerate boxes give 0."""
    a = np.asarray(boxes_a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b_xyxy, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def greedy_match(
    iou: FloatArray, scores: ArrayLike, threshold: float
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Match predictions (columns of ``iou``, shape (G, P)) to ground truth (rows) greedily by score.

    Each prediction, highest score first (stable for ties), takes the unmatched ground truth with the
    highest IoU >= ``threshold``. Returns, per prediction, the matched ground-truth index (-1 if
    none) and the IoU of that match (0 if none).
    """
    s = np.asarray(scores, dtype=np.float64)
    n_gt, n_pred = iou.shape
    matched = np.full(n_pred, -1, dtype=np.int64)
    match_iou = np.zeros(n_pred, dtype=np.float64)
    taken = np.zeros(n_gt, dtype=bool)
    for p in np.argsort(-s, kind="mergesort"):
        if n_gt == 0:
            break
        col = np.where(taken, -1.0, iou[:, p])
        g = int(np.argmax(col))
        if col[g] >= threshold:
            matched[p], match_iou[p], taken[g] = g, col[g], True
    return matched, match_iou


def voc_ap(recall: ArrayLike, precision: ArrayLike, *, eleven_point: bool = False) -> float:
    """VOC average precision from a PR curve (points in descending-score order).

    ``eleven_point``: VOC2007, the mean of the max precision at recall >= 0, 0.1, ..., 1.
    Otherwise VOC2010+: the area under the monotone (right-to-left max) precision envelope.
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if eleven_point:
        return float(
            np.mean([prec[rec >= t].max() if np.any(rec >= t) else 0.0 for t in np.linspace(0, 1, 11)])
        )
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
