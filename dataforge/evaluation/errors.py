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

from dataforge.evaluation.overlaps import Overlaps, greedy, index_of, overlaps

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
    cls: np.ndarray,
    score: np.ndarray,
    true: np.ndarray,
    keep: np.ndarray,
    positives: np.ndarray,
    order: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """TIDE's AP of every class row at once (COCO's 101-point interpolation at one IoU; 0 for a
    class without positives) over the ``keep`` rows, and which classes count in the mean (those
    with positives or predictions). The classes are segments of one array sorted by class, then
    score descending (ties in table order; ``order``: that sort of all rows, when the classes and
    scores are the table's): at each recall point, the envelope precision at the first row
    reaching it; a row is that first row for the points its recall passes that the row before
    did not."""
    n_cls = len(positives)
    if order is None:
        rows = np.flatnonzero(keep)
        rows = rows[np.argsort(-score[rows], kind="stable")]
        rows = rows[np.argsort(cls[rows], kind="stable")]
    else:
        rows = order[keep[order]]
    c_sorted = cls[rows]
    present = (positives > 0) | (np.bincount(c_sorted, minlength=n_cls) > 0)
    out = np.zeros(n_cls)
    if not len(rows):
        return out, present
    t_sorted = true[rows].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, c_sorted[1:] != c_sorted[:-1]])
    uniq = c_sorted[starts]
    seg = np.repeat(np.arange(len(uniq)), np.diff(np.r_[starts, len(rows)]))
    tp = np.cumsum(t_sorted)
    tp -= np.r_[0.0, tp][starts][seg]
    n = np.arange(len(rows)) - starts[seg] + 1.0
    npos = positives[uniq].astype(np.float64)
    precision = tp / n
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(npos[seg] > 0, tp / npos[seg], 0.0)
    off = (len(uniq) - seg) * 2.0
    env = np.maximum.accumulate((precision + off)[::-1])[::-1] - off
    k = np.searchsorted(_RECALLS, recall, side="right")  # recall points <= each row's recall
    prev = np.r_[0, k[:-1]]
    prev[starts] = 0
    sums = np.add.reduceat(env * (k - prev), starts)
    out[uniq] = np.where(npos > 0, sums / len(_RECALLS), 0.0)
    return out, present


class _Fixes:
    """TIDE's per-class AP of a table as is and with each error type fixed; classes are rows of
    ``classes`` (every class of a ground truth or prediction)."""

    def __init__(self, t: MatchTable) -> None:
        self.t = t
        self.classes = np.union1d(t.gt_class, t.pred_class).astype(np.int64)
        self.cls = index_of(t.pred_class, self.classes)
        self.g_cls = index_of(t.gt_class, self.classes)
        self.positives = np.bincount(self.g_cls, minlength=len(self.classes))
        by_score = np.argsort(-t.pred_score, kind="stable")
        self.order = by_score[np.argsort(self.cls[by_score], kind="stable")]

    def aps(self, fix: str | None) -> tuple[np.ndarray, np.ndarray]:
        """AP per class row with ``fix``'s errors fixed (None: as is), and which rows count."""
        t, n_cls = self.t, len(self.classes)
        cls, positives = self.cls, self.positives
        order: np.ndarray | None = self.order
        true = t.pred_code == TP
        keep = t.pred_code != IGNORED
        if fix in ("classification", "localization"):
            rows = np.flatnonzero(t.pred_error == _CODE[fix])
            g = t.pred_target[rows]
            safe = np.maximum(g, 0)
            ok = (g >= 0) & t.gt_usable[safe] & (t.gt_best[safe] == rows)
            cls = cls.copy()
            cls[rows[ok]] = self.g_cls[g[ok]]
            true[rows[ok]] = True
            keep[rows] = ok
            order = None
        elif fix in ("both", "duplicate", "background"):
            keep &= t.pred_error != _CODE[fix]
        elif fix == "missed":
            positives = positives - np.bincount(self.g_cls[~t.gt_matched & ~t.gt_usable], minlength=n_cls)
        elif fix == "false_negatives":
            positives = positives - np.bincount(self.g_cls[~t.gt_matched], minlength=n_cls)
        score = t.pred_score
        if fix == "false_positives":
            score = np.where(true, 1.0, 0.0)
            order = None
        return _class_aps(cls, score, true, keep, positives, order)


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
    fixes = _Fixes(t)
    base, counted = fixes.aps(None)
    ap = float(base[counted].mean()) if counted.any() else 0.0
    dap: dict[str, float] = {}
    gains: dict[str, np.ndarray] = {}
    for fix in (*ERROR_TYPES, *SPECIAL):
        aps, present = fixes.aps(fix)
        dap[fix] = max(float(aps[present].mean()) - ap, 0.0) if present.any() else 0.0
        gains[fix] = np.maximum(np.where(present, aps, 0.0) - base, 0.0)
    wrong = t.pred_code != TP
    n_cls, n_err = len(fixes.classes), len(ERROR_TYPES)
    by_class = np.bincount(fixes.cls[wrong] * n_err + t.pred_error[wrong], minlength=n_cls * n_err)
    by_class = by_class.reshape(n_cls, n_err)
    missed = np.bincount(fixes.g_cls[~t.gt_matched & ~t.gt_usable], minlength=n_cls)
    by_class[:, _CODE["missed"]] = missed
    counts = {name: int(by_class[:, k].sum()) for name, k in _CODE.items()}
    per_class = []
    for k in np.flatnonzero(counted).tolist():
        c = int(fixes.classes[k])
        per_class.append(
            {
                "category_id": c,
                "name": names.get(c, str(c)),
                "ap": float(base[k]),
                "dAP": {fix: float(gains[fix][k]) for fix in (*ERROR_TYPES, *SPECIAL)},
                "counts": {name: int(by_class[k, j]) for name, j in _CODE.items()},
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
