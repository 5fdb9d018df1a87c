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

    pred_image: np.ndarray  # image id
    pred_class: np.ndarray
    pred_score: np.ndarray
    pred_index: np.ndarray  # index into the predictions given (-1: none)
    pred_code: np.ndarray  # TP, IGNORED (a crowd hides it, not counted in AP), or an error code
    pred_error: np.ndarray  # the error type, even for a hidden one (-1 for a TP)
    pred_target: np.ndarray  # classification / localization: the ground-truth row it points at
    pred_gt: np.ndarray  # TP: the ground-truth row it matched
    gt_image: np.ndarray
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
    """TIDE's matching and error types (module docstring) for every image of ``gt``."""
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
    rows: dict[str, list[Any]] = {
        k: [] for k in ("image", "cls", "score", "index", "code", "error", "target", "gt")
    }
    g_rows: dict[str, list[Any]] = {k: [] for k in ("image", "cls", "index", "matched", "usable", "best")}
    for img in gt["images"]:
        iid = int(img["id"])
        anns = [gt["annotations"][i] for i in gts_by.get(iid, [])]
        real = [(i, a) for i, a in zip(gts_by.get(iid, []), anns, strict=True) if not a.get("iscrowd")]
        crowds = [a for a in anns if a.get("iscrowd")]
        g0 = len(g_rows["image"])
        for i, a in real:
            g_rows["image"].append(iid)
            g_rows["cls"].append(int(a["category_id"]))
            g_rows["index"].append(i)
            g_rows["matched"].append(False)
            g_rows["usable"].append(False)
            g_rows["best"].append(-1)
        order = sorted(preds_by.get(iid, []), key=lambda i: -predictions[i]["score"])[:max_dets]
        if not order:
            continue
        dets = [predictions[i][key] for i in order]
        p_cls = np.array([int(predictions[i]["category_id"]) for i in order], dtype=np.int64)
        g_cls = np.array([int(a["category_id"]) for _i, a in real], dtype=np.int64)
        iou = _iou(dets, [a[key] for _i, a in real], [False] * len(real))
        same = p_cls[:, None] == g_cls[None, :]
        cls_iou = iou * same
        used = np.zeros(len(real), dtype=bool)
        matched_to = np.full(len(order), -1, dtype=np.int64)
        for p in range(len(order)):
            if not len(real):
                break
            row = np.where(used, 0.0, cls_iou[p])
            g = int(np.argmax(row))
            if row[g] >= foreground:
                used[g] = True
                matched_to[p] = g
        hidden = np.zeros(len(order), dtype=bool)
        for c in crowds:
            c_iou = _iou(dets, [c[key]], [True])[:, 0]
            hidden |= (matched_to < 0) & (c_iou > foreground) & (p_cls == int(c["category_id"]))
        p0 = len(rows["image"])
        best_score: dict[int, float] = {}
        for p, i in enumerate(order):
            error, target = -1, -1
            if matched_to[p] < 0:
                if not len(real):
                    error = _CODE["background"]
                else:
                    g = int(np.argmax(cls_iou[p]))
                    other = iou[p] * ~same[p]
                    used_cls = cls_iou[p] * used
                    if background <= cls_iou[p, g] <= foreground:
                        error, target = _CODE["localization"], g
                    elif other.max() >= foreground:
                        error, target = _CODE["classification"], int(np.argmax(other))
                    elif used_cls.max() >= foreground:
                        error = _CODE["duplicate"]
                    elif iou[p].max() <= background:
                        error = _CODE["background"]
                    else:
                        error = _CODE["both"]
                if target >= 0 and not used[target]:
                    g_rows["usable"][g0 + target] = True
                    score = float(predictions[i]["score"])
                    if score > best_score.get(target, -1.0):
                        best_score[target] = score
                        g_rows["best"][g0 + target] = p0 + p
            rows["image"].append(iid)
            rows["cls"].append(int(p_cls[p]))
            rows["score"].append(float(predictions[i]["score"]))
            rows["index"].append(i)
            rows["code"].append(TP if matched_to[p] >= 0 else IGNORED if hidden[p] else error)
            rows["error"].append(error)
            rows["target"].append(g0 + target if target >= 0 else -1)
            rows["gt"].append(g0 + int(matched_to[p]) if matched_to[p] >= 0 else -1)
        for g in np.flatnonzero(used).tolist():
            g_rows["matched"][g0 + g] = True
    return MatchTable(
        pred_image=np.array(rows["image"], dtype=np.int64),
        pred_class=np.array(rows["cls"], dtype=np.int64),
        pred_score=np.array(rows["score"], dtype=np.float64),
        pred_index=np.array(rows["index"], dtype=np.int64),
        pred_code=np.array(rows["code"], dtype=np.int64),
        pred_error=np.array(rows["error"], dtype=np.int64),
        pred_target=np.array(rows["target"], dtype=np.int64),
        pred_gt=np.array(rows["gt"], dtype=np.int64),
        gt_image=np.array(g_rows["image"], dtype=np.int64),
        gt_class=np.array(g_rows["cls"], dtype=np.int64),
        gt_index=np.array(g_rows["index"], dtype=np.int64),
        gt_matched=np.array(g_rows["matched"], dtype=bool),
        gt_usable=np.array(g_rows["usable"], dtype=bool),
        gt_best=np.array(g_rows["best"], dtype=np.int64),
    )


def ap101(scores: np.ndarray, true: np.ndarray, positives: int) -> float:
    """COCO's 101-point interpolated AP of one class (0 without positives)."""
    if positives <= 0 or not len(scores):
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(true[order])
    n = np.arange(1, len(order) + 1)
    precision = tp / n
    recall = tp / positives
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    # TIDE's recall points are k / 100; COCOeval's np.linspace(0, 1, 101) differs in the last bit at
    # some of them (0.35000000000000003), which moves the step where a recall is exactly one (14/40)
    at = np.searchsorted(recall, np.arange(101) / 100, side="left")
    curve = np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0)
    return float(curve.mean())


def _class_aps(
    cls: np.ndarray, score: np.ndarray, true: np.ndarray, positives: dict[int, int]
) -> dict[int, float]:
    out = {}
    for c in sorted(set(cls.tolist()) | {k for k, v in positives.items()}):
        sel = cls == c
        n = positives.get(c, 0)
        if not sel.any() and n == 0:
            continue  # nothing of this class: left out of the mean
        out[c] = ap101(score[sel], true[sel], n)
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
