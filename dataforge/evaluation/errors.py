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


def _iou(dt: list[Any], gt: list[Any], crowd: list[bool]) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if not dt or not gt:
        return np.zeros((len(dt), len(gt)))
    return np.asarray(mask_utils.iou(dt, gt, crowd), dtype=np.float64).reshape(len(dt), len(gt))


def match_table(
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    *,
    foreground: float = 0.5,
    background: float = 0.1,
    max_dets: int = 100,
    iou_type: str = "bbox",
) -> MatchTable:
    """TIDE's matching and error types (module docstring) for every image of ``gt``; per image,
    only the matching itself loops (over the predictions that can match), the rest is array work."""
    key = "bbox" if iou_type == "bbox" else "segmentation"
    if iou_type == "segm":
        from dataforge.masks import to_rle

        size = {int(img["id"]): (int(img["height"]), int(img["width"])) for img in gt["images"]}
        gt = {
            **gt,
            "annotations": [
                {**a, "segmentation": to_rle(a["segmentation"], *size[int(a["image_id"])])}
                for a in gt["annotations"]
            ],
        }
        predictions = [
            {**q, "segmentation": to_rle(q["segmentation"], *size[int(q["image_id"])])} for q in predictions
        ]
    preds_by: dict[int, list[int]] = {}
    for i, pred in enumerate(predictions):
        preds_by.setdefault(int(pred["image_id"]), []).append(i)
    gts_by: dict[int, list[int]] = {}
    for i, a in enumerate(gt["annotations"]):
        gts_by.setdefault(int(a["image_id"]), []).append(i)
    p_parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("cls", "score", "index", "code", "error", "target")
    }
    g_parts: dict[str, list[np.ndarray]] = {k: [] for k in ("cls", "index", "matched", "usable", "best")}
    n_gt = n_pred = 0
    for img in gt["images"]:
        iid = int(img["id"])
        idx = gts_by.get(iid, [])
        real = [i for i in idx if not gt["annotations"][i].get("iscrowd")]
        crowds = [gt["annotations"][i] for i in idx if gt["annotations"][i].get("iscrowd")]
        g = len(real)
        g_cls = np.array([int(gt["annotations"][i]["category_id"]) for i in real], dtype=np.int64)
        usable = np.zeros(g, dtype=bool)
        best = np.full(g, -1, dtype=np.int64)
        used = np.zeros(g, dtype=bool)
        mine = preds_by.get(iid, [])
        order = sorted(mine, key=lambda i: -predictions[i]["score"])[:max_dets]
        if order:
            n = len(order)
            p_cls = np.array([int(predictions[i]["category_id"]) for i in order], dtype=np.int64)
            score = np.array([float(predictions[i]["score"]) for i in order], dtype=np.float64)
            dets = [predictions[i][key] for i in order]
            iou = _iou(dets, [gt["annotations"][i][key] for i in real], [False] * g)
            same = p_cls[:, None] == g_cls[None, :]
            cls_iou = iou * same
            matched_to = np.full(n, -1, dtype=np.int64)
            if g:
                for p in np.flatnonzero(cls_iou.max(axis=1) >= foreground).tolist():  # only these can match
                    row = np.where(used, 0.0, cls_iou[p])
                    k = int(np.argmax(row))
                    if row[k] >= foreground:
                        used[k] = True
                        matched_to[p] = k
            hidden = np.zeros(n, dtype=bool)
            for c in crowds:
                c_iou = _iou(dets, [c[key]], [True])[:, 0]
                hidden |= (matched_to < 0) & (c_iou > foreground) & (p_cls == int(c["category_id"]))
            error: np.ndarray = np.full(n, _CODE["background"], dtype=np.int64)
            target: np.ndarray = np.full(n, -1, dtype=np.int64)
            if g:
                rows = np.arange(n)
                best_cls = np.argmax(cls_iou, axis=1)
                other = iou * ~same
                best_other = np.argmax(other, axis=1)
                is_loc = (cls_iou[rows, best_cls] >= background) & (cls_iou[rows, best_cls] <= foreground)
                is_cls = other[rows, best_other] >= foreground
                is_dup = (cls_iou * used[None, :]).max(axis=1) >= foreground
                is_bkg = iou.max(axis=1) <= background
                error = np.select(
                    [is_loc, is_cls, is_dup, is_bkg],
                    [_CODE["localization"], _CODE["classification"], _CODE["duplicate"], _CODE["background"]],
                    _CODE["both"],
                )
                target = np.where(is_loc, best_cls, np.where(~is_loc & is_cls, best_other, -1))
            wrong = matched_to < 0
            error = np.where(wrong, error, -1)
            target = np.where(wrong, target, -1)
            # BestGTMatch: the first (highest-scoring) error pointing at a ground truth no one matched
            pointing = np.flatnonzero((target >= 0) & ~used[np.maximum(target, 0)]) if g else target[:0]
            if pointing.size:
                tg, first = np.unique(target[pointing], return_index=True)
                usable[tg] = True
                best[tg] = n_pred + pointing[first]
            p_parts["cls"].append(p_cls)
            p_parts["score"].append(score)
            p_parts["index"].append(np.array(order, dtype=np.int64))
            p_parts["code"].append(np.where(~wrong, TP, np.where(hidden, IGNORED, error)))
            p_parts["error"].append(error)
            p_parts["target"].append(np.where(target >= 0, n_gt + target, -1))
            n_pred += n
        g_parts["cls"].append(g_cls)
        g_parts["index"].append(np.array(real, dtype=np.int64))
        g_parts["matched"].append(used)
        g_parts["usable"].append(usable)
        g_parts["best"].append(best)
        n_gt += g

    def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return MatchTable(
        pred_class=cat(p_parts["cls"], np.int64),
        pred_score=cat(p_parts["score"], np.float64),
        pred_index=cat(p_parts["index"], np.int64),
        pred_code=cat(p_parts["code"], np.int64),
        pred_error=cat(p_parts["error"], np.int64),
        pred_target=cat(p_parts["target"], np.int64),
        gt_class=cat(g_parts["cls"], np.int64),
        gt_index=cat(g_parts["index"], np.int64),
        gt_matched=cat(g_parts["matched"], bool),
        gt_usable=cat(g_parts["usable"], bool),
        gt_best=cat(g_parts["best"], np.int64),
    )


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
) -> tuple[dict[str, Any], MatchTable]:
    """The error breakdown as the report keeps it, and the table it came from."""
    t = match_table(
        gt, predictions, foreground=foreground, background=background, max_dets=max_dets, iou_type=iou_type
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
