"""Where the AP goes: TIDE's error breakdown (Bolya et al., ECCV 2020) from one table of matches.

Per image, predictions are ranked by score (the first ``max_dets``, 100, over all classes) and each,
in turn, takes the unmatched ground truth of its class it overlaps most if the IoU is at least the
foreground threshold (0.5): a true positive. Every other prediction gets one error type, the first
that applies:

``localization``  its class's best-overlapping ground truth has IoU in [background, foreground]
``classification``  a ground truth of another class overlaps it by IoU >= foreground
``duplicate``     a ground truth of its class that another prediction matched overlaps it >= foreground
``background``    nothing overlaps it by more than background (0.1)
``both``          the rest: wrong class and badly placed

A ground truth no prediction matched is ``missed`` unless a classification or localization error
points at it. The AP gained by fixing one type (dAP) is the AP50 with those errors fixed minus the
AP50 as is: a classification or localization error becomes a true positive (of the ground truth's
class) when it is the highest-scoring such error on a still-unmatched ground truth, and is dropped
otherwise; duplicates, background and both errors are dropped; a missed ground truth stops counting.
Two more: ``false_positives`` (every false positive scored below every true positive) and
``false_negatives`` (every unmatched ground truth uncounted).

AP here is TIDE's: COCO's 101-point interpolation at one IoU, averaged over the classes that have
a ground truth or a prediction; it differs from COCOeval's AP50 on purpose and in these ways:
``max_dets`` is per image over all classes (COCOeval: per class); there are no area ranges; a class
with predictions but no ground truth counts as AP 0 (COCOeval leaves it out); a crowd region only
hides a same-class prediction it covers more than ``foreground`` (intersection over the
prediction; COCOeval matches predictions to crowds at every IoU). tests/test_evaluation_errors.py
holds every number to the ``tidecv`` package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dataforge.evaluation.overlaps import Overlaps, greedy, overlaps

ERROR_TYPES = ("classification", "localization", "both", "duplicate", "background", "missed")
SPECIAL = ("false_positives", "false_negatives")
_CODE = {name: k for k, name in enumerate(ERROR_TYPES)}
TP, IGNORED = -1, -2  # codes of a matched prediction, and of one a crowd region hides


@dataclass
class MatchTable:
    """One row per ranked prediction and per ground truth, with what happened to it."""

    pred_class: np.ndarray
    pred_score: np.ndarray
    pred_index: np.ndarray  # index into the predictions given
    pred_code: np.ndarray  # TP, IGNORED (a crowd hides it, not counted in AP), or an error code
    pred_error: np.ndarray  # the error type, even for a hidden one (-1 for a TP)
    pred_target: np.ndarray  # classification / localization: the ground-truth row it points at
    gt_class: np.ndarray
    gt_index: np.ndarray  # index into gt["annotations"]
    gt_matched: np.ndarray  # bool
    gt_usable: np.ndarray  # bool: unmatched but a classification / localization error points at it
    gt_best: np.ndarray  # prediction row fixing it (the top-scoring error pointing at it), or -1


def match_table(
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    *,
    foreground: float = 0.5,
    background: float = 0.1,
    max_dets: int = 100,
    iou_type: str = "bbox",
    table: Overlaps | None = None,
) -> MatchTable:
    """TIDE's matching and error types (module docstring) for every image of ``gt``, as array
    work on the overlaps of each image (``table``, computed when not given): rows are images in
    ``gt``'s order, each its predictions by score."""
    o = table if table is not None else overlaps(gt, predictions, iou_type)
    rank = o.image_rank()
    rank[rank >= max_dets] = -1
    rows = np.flatnonzero(rank >= 0)
    rows = rows[np.lexsort((rank[rows], o.d_img[rows]))]
    n = len(rows)
    row_of = np.full(len(o.d_cls), -1, dtype=np.int64)
    row_of[rows] = np.arange(n)
    real = np.flatnonzero(~o.g_crowd & (o.g_img >= 0))
    real = real[np.argsort(o.g_img[real], kind="stable")]  # by image, in annotation order
    g_row = np.full(len(o.g_cls), -1, dtype=np.int64)
    g_row[real] = np.arange(len(real))
    in_table = np.flatnonzero(row_of[o.p_det] >= 0)
    crowd = o.g_crowd[o.p_gt[in_table]]
    pairs, crowd_pairs = in_table[~crowd], in_table[crowd]
    same = o.d_cls[o.p_det[pairs]] == o.g_cls[o.p_gt[pairs]]
    iou, p_row, p_g = o.p_iou[pairs], row_of[o.p_det[pairs]], g_row[o.p_gt[pairs]]
    # matching: each prediction in turn takes the free ground truth of its class it overlaps most
    cand = pairs[same & (iou >= foreground)]
    dets, took = greedy(rank, cand, o, np.ones((1, len(cand)), dtype=bool), ties="first")
    hit = took[0] >= 0
    matched_to = np.full(n, -1, dtype=np.int64)
    matched_to[row_of[dets[hit]]] = g_row[o.p_gt[took[0][hit]]]
    used = np.zeros(len(real), dtype=bool)
    used[matched_to[matched_to >= 0]] = True
    best_cls_iou, best_cls = _first_best(p_row[same], iou[same], p_g[same], n)
    best_other_iou, best_other = _first_best(p_row[~same], iou[~same], p_g[~same], n)
    is_loc = (best_cls_iou >= background) & (best_cls_iou <= foreground)
    is_cls = best_other_iou >= foreground
    is_dup = np.zeros(n, dtype=bool)
    is_dup[p_row[same & used[np.maximum(p_g, 0)] & (iou >= foreground)]] = True
    is_bkg = np.ones(n, dtype=bool)
    is_bkg[p_row[iou > background]] = False
    wrong = matched_to < 0
    hidden = np.zeros(n, dtype=bool)  # a crowd region of its class covers it
    c_hit = crowd_pairs[
        (o.d_cls[o.p_det[crowd_pairs]] == o.g_cls[o.p_gt[crowd_pairs]]) & (o.p_iou[crowd_pairs] > foreground)
    ]
    hidden[row_of[o.p_det[c_hit]]] = True
    hidden &= wrong
    error = np.select(
        [is_loc, is_cls, is_dup, is_bkg],
        [_CODE["localization"], _CODE["classification"], _CODE["duplicate"], _CODE["background"]],
        _CODE["both"],
    )
    target = np.where(is_loc, best_cls, np.where(is_cls, best_other, -1))
    error = np.where(wrong, error, -1)
    target = np.where(wrong, target, -1)
    # BestGTMatch: the first (highest-scoring) error pointing at a ground truth no one matched
    usable = np.zeros(len(real), dtype=bool)
    best = np.full(len(real), -1, dtype=np.int64)
    pointing = np.flatnonzero((target >= 0) & ~used[np.maximum(target, 0)]) if len(real) else target[:0]
    if pointing.size:
        tg, first = np.unique(target[pointing], return_index=True)
        usable[tg] = True
        best[tg] = pointing[first]
    return MatchTable(
        pred_class=o.d_cls[rows],
        pred_score=o.d_score[rows],
        pred_index=rows,
        pred_code=np.where(~wrong, TP, np.where(hidden, IGNORED, error)),
        pred_error=error,
        pred_target=target,
        gt_class=o.g_cls[real],
        gt_index=real,
        gt_matched=used,
        gt_usable=usable,
        gt_best=best,
    )


def _first_best(row: np.ndarray, iou: np.ndarray, g: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``n``, the highest IoU of its pairs and its ground truth (the first of equal
    ones, as ``argmax``); 0 and -1 for a row without pairs."""
    best_iou = np.zeros(n, dtype=np.float64)
    best_g = np.full(n, -1, dtype=np.int64)
    if len(row):
        order = np.lexsort((g, -iou, row))
        r = row[order]
        top = order[np.r_[True, r[1:] != r[:-1]]]
        best_iou[row[top]], best_g[row[top]] = iou[top], g[top]
    return best_iou, best_g


#: TIDE's recall points are k / 100; COCOeval's np.linspace(0, 1, 101) differs in the last bit at
#: some of them (0.35000000000000003), which moves the step where a recall is exactly one (14/40)
_RECALLS = np.arange(101) / 100


def _class_aps(
    cls: np.ndarray, score: np.ndarray, true: np.ndarray, positives: dict[int, int]
) -> dict[int, float]:
    """TIDE's AP of every class at once (COCO's 101-point interpolation at one IoU; 0 for a class
    without positives), the classes as segments of one score-sorted array: at each recall point,
    the envelope precision at the first row reaching it; a row is that first row for the points
    its recall passes that the row before did not."""
    classes = sorted(set(cls.tolist()) | set(positives))
    present = [c for c in classes if positives.get(c, 0) > 0 or bool((cls == c).any())]
    out = {c: 0.0 for c in present}  # nothing of a class: left out of the mean (not in ``present``)
    if not len(cls):
        return out
    order = np.lexsort((-score, cls))  # by class, then score descending, ties in table order
    c_sorted, t_sorted = cls[order], true[order].astype(np.float64)
    uniq, starts = np.unique(c_sorted, return_index=True)
    seg = np.repeat(np.arange(len(uniq)), np.diff(np.r_[starts, len(order)]))
    tp = np.cumsum(t_sorted)
    tp -= np.r_[0.0, tp][starts][seg]
    n = np.arange(len(order)) - starts[seg] + 1.0
    npos = np.array([positives.get(int(c), 0) for c in uniq], dtype=np.float64)
    precision = tp / n
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(npos[seg] > 0, tp / npos[seg], 0.0)
    off = (len(uniq) - seg) * 2.0
    env = np.maximum.accumulate((precision + off)[::-1])[::-1] - off
    k = np.searchsorted(_RECALLS, recall, side="right")  # recall points <= each row's recall
    prev = np.r_[0, k[:-1]]
    prev[starts] = 0
    sums = np.add.reduceat(env * (k - prev), starts)
    for c, total, count in zip(uniq.tolist(), sums.tolist(), npos.tolist(), strict=True):
        out[int(c)] = total / len(_RECALLS) if count > 0 else 0.0
    return out


def _fixed(t: MatchTable, fix: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, int]]:
    """The AP inputs (class, score, true positive) and the positives per class, with ``fix``'s
    errors fixed (None: as is)."""
    positives: dict[int, int] = {}
    for c in t.gt_class.tolist():
        positives[c] = positives.get(c, 0) + 1
    for c in t.pred_class.tolist():
        positives.setdefault(c, 0)
    cls = t.pred_class.copy()
    true = t.pred_code == TP
    keep = t.pred_code != IGNORED
    if fix in ("classification", "localization"):
        rows = np.flatnonzero(t.pred_error == _CODE[fix])
        for r in rows.tolist():
            g = int(t.pred_target[r])
            if g >= 0 and t.gt_usable[g] and int(t.gt_best[g]) == r:
                cls[r], true[r], keep[r] = t.gt_class[g], True, True
            else:
                keep[r] = False
    elif fix in ("both", "duplicate", "background"):
        keep &= t.pred_error != _CODE[fix]
    elif fix == "missed":
        for g in np.flatnonzero(~t.gt_matched & ~t.gt_usable).tolist():
            positives[int(t.gt_class[g])] -= 1
    elif fix == "false_negatives":
        for g in np.flatnonzero(~t.gt_matched).tolist():
            positives[int(t.gt_class[g])] -= 1
    score = t.pred_score.copy()
    if fix == "false_positives":
        score = np.where(true, 1.0, 0.0)
    return cls[keep], score[keep], true[keep], positives


def breakdown(
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    *,
    foreground: float = 0.5,
    background: float = 0.1,
    max_dets: int = 100,
    iou_type: str = "bbox",
    table: Overlaps | None = None,
) -> tuple[dict[str, Any], MatchTable]:
    """The error breakdown as the report keeps it, and the table it came from (``table``: the
    overlaps, when the caller has them)."""
    t = match_table(
        gt,
        predictions,
        foreground=foreground,
        background=background,
        max_dets=max_dets,
        iou_type=iou_type,
        table=table,
    )
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    base = _class_aps(*_fixed(t, None))
    ap = float(np.mean(list(base.values()))) if base else 0.0
    dap: dict[str, float] = {}
    per_class_dap: dict[int, dict[str, float]] = {c: {} for c in base}
    for fix in (*ERROR_TYPES, *SPECIAL):
        aps = _class_aps(*_fixed(t, fix))
        dap[fix] = max(float(np.mean(list(aps.values()))) - ap, 0.0) if aps else 0.0
        for c in base:
            per_class_dap[c][fix] = max(aps.get(c, 0.0) - base[c], 0.0)
    counts = {name: int((t.pred_error[t.pred_code != TP] == k).sum()) for name, k in _CODE.items()}
    counts["missed"] = int((~t.gt_matched & ~t.gt_usable).sum())
    per_class = []
    for c in sorted(base):
        mine = t.pred_class == c
        wrong = t.pred_code != TP
        row_counts = {name: int((t.pred_error[mine & wrong] == k).sum()) for name, k in _CODE.items()}
        row_counts["missed"] = int((~t.gt_matched & ~t.gt_usable & (t.gt_class == c)).sum())
        per_class.append(
            {
                "category_id": c,
                "name": names.get(c, str(c)),
                "ap": base[c],
                "dAP": per_class_dap[c],
                "counts": row_counts,
            }
        )
    report = {
        "ap": ap,
        "dAP": dap,
        "counts": counts,
        "per_class": per_class,
        "settings": {
            "iou_type": iou_type,
            "foreground_iou": foreground,
            "background_iou": background,
            "max_dets_per_image": max_dets,
            "ap": "TIDE's: 101-point AP at the foreground IoU, mean over classes with a ground truth or "
            "a prediction (a class with predictions only counts 0)",
            "reference": "tidecv 1.0.1 (tests hold every number to it)",
        },
    }
    return report, t


def prediction_errors(t: MatchTable, n_predictions: int) -> list[str | None]:
    """Per prediction given: ``"tp"``, its error type, ``"ignored"`` (a crowd region hides it, still
    typed in the table), or None (beyond ``max_dets`` on its image)."""
    out: list[str | None] = [None] * n_predictions
    for i, code, err in zip(t.pred_index.tolist(), t.pred_code.tolist(), t.pred_error.tolist(), strict=True):
        out[i] = "tp" if code == TP else ERROR_TYPES[err]
    return out


def ground_truth_errors(t: MatchTable, n_annotations: int) -> list[str | None]:
    """Per annotation: ``"tp"`` (matched), ``"missed"``, ``"fixable"`` (unmatched, but a
    classification or localization error points at it), or None (a crowd region)."""
    out: list[str | None] = [None] * n_annotations
    for i, m, u in zip(t.gt_index.tolist(), t.gt_matched.tolist(), t.gt_usable.tolist(), strict=True):
        out[i] = "tp" if m else "fixable" if u else "missed"
    return out
