"""How sure is an AP: bootstrap over images, and the paired comparison of two prediction sets.

COCOeval's matching (area range "all", at most 100 predictions per image and class, the 10 IoU
thresholds 0.50:0.05:0.95, crowd regions matched many times and ignored) is done once, per
prediction and threshold: true positive, false positive or ignored. A resample draws the images
with replacement; an image drawn k times counts k times, so AP of a resample needs no matching
again: per class and threshold, the predictions stay in score order and their true and false
positives are summed with the image weights (one vectorized pass over every class and threshold,
each a segment of one array). With weights all 1 the numbers are COCOeval's AP and AP50 (the tests
hold them to faster-coco-eval within 1e-9).

The interval is the percentile one (2.5% and 97.5% of the resampled values), seeded. A paired
comparison resamples the same images for both prediction sets, so the differences are paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dataforge.metrics import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class Matched:
    """COCOeval's matching, reduced to the true positives (the AP envelope is only ever reached at
    one). Segments are one class and IoU threshold each (class-major); per segment its true
    positives in score order, and the false positives ranked between each and the one before as
    a sparse (true positives x images) count matrix. False positives after a segment's last true
    positive change nothing and are left out."""

    tp_image: np.ndarray  # image index of each true positive
    tp_seg: np.ndarray  # its segment
    tp_seg_start: np.ndarray  # (S,) first true positive of each segment
    tp_seg_len: np.ndarray  # (S,)
    fp_before: Any  # scipy.sparse CSR (true positives x images)
    positives: np.ndarray  # (C, I): non-crowd ground truth per class and image
    classes: list[int]  # category id of each class row
    n_images: int


def _coco_match(dts: list[dict[str, Any]], gts: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """One image and class, its predictions in COCOeval's order (score descending, the first
    100): per threshold whether each matched (T, D) and is ignored (T, D), as
    COCOeval.evaluateImg does for area "all"."""
    gts = sorted(gts, key=lambda g: bool(g.get("iscrowd")))  # non-crowd first
    t, d = len(IOU_THRESHOLDS), len(dts)
    matched = np.zeros((t, d), dtype=bool)
    ignored = np.zeros((t, d), dtype=bool)
    if not d or not gts:
        return matched, ignored
    crowd = np.array([bool(g.get("iscrowd")) for g in gts])
    db = np.array([x["bbox"] for x in dts], dtype=np.float64)
    gb = np.array([g["bbox"] for g in gts], dtype=np.float64)
    dxy, gxy = db.copy(), gb.copy()
    dxy[:, 2:] += dxy[:, :2]
    gxy[:, 2:] += gxy[:, :2]
    iou = box_iou(dxy, gxy)  # (D, G)
    if crowd.any():  # a crowd region: intersection over the prediction's area
        lt = np.maximum(dxy[:, None, :2], gxy[None, crowd, :2])
        rb = np.minimum(dxy[:, None, 2:], gxy[None, crowd, 2:])
        inter = np.clip(rb - lt, 0, None).prod(axis=2)
        area = (db[:, 2] * db[:, 3])[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            iou[:, crowd] = np.where(area > 0, inter / area, 0.0)
    for ti, thr in enumerate(IOU_THRESHOLDS):
        taken = np.zeros(len(gts), dtype=bool)
        for di in range(d):
            best = min(thr, 1 - 1e-10)
            m = -1
            for gi in range(len(gts)):
                if taken[gi] and not crowd[gi]:
                    continue
                if m > -1 and not crowd[m] and crowd[gi]:
                    break
                if iou[di, gi] < best:
                    continue
                best, m = iou[di, gi], gi
            if m == -1:
                continue
            matched[ti, di] = True
            ignored[ti, di] = crowd[m]
            taken[m] = True
    return matched, ignored


def match(gt: dict[str, Any], predictions: list[dict[str, Any]], max_dets: int = 100) -> Matched:
    """COCOeval's matching of boxes (area "all") for every image and class of ``gt``. Predictions
    of a class an image has no ground truth of (most of them) are false positives at every
    threshold without any matching; the rest go through :func:`_coco_match` group by group."""
    images = [int(img["id"]) for img in gt["images"]]
    index = {iid: k for k, iid in enumerate(images)}
    classes = sorted(int(c["id"]) for c in gt["categories"])
    crow = {c: k for k, c in enumerate(classes)}
    n_img, t = len(images), len(IOU_THRESHOLDS)
    gts: dict[int, list[Any]] = {}  # key: class row * images + image index
    positives = np.zeros((len(classes), n_img), dtype=np.float64)
    for a in gt["annotations"]:
        if a.get("semantic"):
            continue
        c, i = crow[int(a["category_id"])], index[int(a["image_id"])]
        gts.setdefault(c * n_img + i, []).append(a)
        if not a.get("iscrowd"):
            positives[c, i] += 1
    n = len(predictions)
    p_cls = np.fromiter((crow.get(int(p["category_id"]), -1) for p in predictions), dtype=np.int64, count=n)
    p_img = np.fromiter((index.get(int(p["image_id"]), -1) for p in predictions), dtype=np.int64, count=n)
    p_score = np.fromiter((p["score"] for p in predictions), dtype=np.float64, count=n)
    p_id = np.array(images, dtype=np.int64)[np.maximum(p_img, 0)] if n else np.zeros(0, dtype=np.int64)
    valid = np.flatnonzero((p_cls >= 0) & (p_img >= 0))
    # class, then image id ascending (COCOeval concatenates a class's images so), then score
    # descending, ties in the given order (its mergesort)
    order = valid[np.lexsort((-p_score[valid], p_id[valid], p_cls[valid]))]
    key = p_cls[order] * n_img + p_img[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(order) else np.zeros(0, dtype=np.int64)
    rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    kept = rank < max_dets
    order, key = order[kept], key[kept]
    matched = np.zeros((t, len(order)), dtype=bool)
    ignored = np.zeros((t, len(order)), dtype=bool)
    if len(order):
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for s0, e0 in zip(starts.tolist(), ends.tolist(), strict=True):
            group = gts.get(int(key[s0]))
            if group:
                dts = [predictions[j] for j in order[s0:e0].tolist()]
                mt, ig = _coco_match(dts, group)
                matched[:, s0:e0], ignored[:, s0:e0] = mt, ig
    cls_of = p_cls[order]
    rows_image: list[np.ndarray] = []
    rows_tp: list[np.ndarray] = []
    rows_fp: list[np.ndarray] = []
    seg_len: list[int] = []
    bounds = np.searchsorted(cls_of, np.arange(len(classes) + 1))
    for c in range(len(classes)):
        sel = np.arange(bounds[c], bounds[c + 1])
        by_score = sel[np.argsort(-p_score[order[sel]], kind="mergesort")]
        for ti in range(t):
            keep = by_score[~ignored[ti, by_score]]  # ignored rows drop out (neither TP nor FP)
            rows_image.append(p_img[order[keep]])
            rows_tp.append(matched[ti, keep])
            rows_fp.append(~matched[ti, keep])
            seg_len.append(len(keep))
    return _reduced(
        np.concatenate(rows_image) if rows_image else np.zeros(0, dtype=np.int64),
        np.concatenate(rows_tp) if rows_tp else np.zeros(0, dtype=bool),
        np.concatenate(rows_fp) if rows_fp else np.zeros(0, dtype=bool),
        np.array(seg_len, dtype=np.int64),
        positives,
        classes,
    )


def _reduced(
    image: np.ndarray,
    tp: np.ndarray,
    fp: np.ndarray,
    seg_len: np.ndarray,
    positives: np.ndarray,
    classes: list[int],
) -> Matched:
    """The reduced table (:class:`Matched`) of the full one: one row per (threshold, prediction)
    kept, by segment in score order, with its image, and whether it is a true or false positive
    (ignored rows are neither)."""
    from scipy.sparse import csr_matrix

    n_seg = len(seg_len)
    seg = np.repeat(np.arange(n_seg), seg_len)
    tp_rows = np.flatnonzero(tp)
    # for every false positive, the index (among the true positives) of the next true positive:
    # the number of true positives before it
    before = np.cumsum(tp, dtype=np.int64) - tp
    fp_rows = np.flatnonzero(fp & (before < len(tp_rows)))
    if len(tp_rows):
        fp_rows = fp_rows[seg[fp_rows] == seg[tp_rows[before[fp_rows]]]]  # the next one is its segment's
    k = before[fp_rows]  # non-decreasing: the CSR rows come in order (duplicates are summed by @)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(k, minlength=len(tp_rows)))]).astype(np.int64)
    n_images = positives.shape[1]
    counts = csr_matrix(
        (np.ones(len(fp_rows)), image[fp_rows].astype(np.int64), indptr), shape=(len(tp_rows), n_images)
    )
    tp_seg = seg[tp_rows]
    tp_len = np.bincount(tp_seg, minlength=n_seg)
    return Matched(
        tp_image=image[tp_rows],
        tp_seg=tp_seg,
        tp_seg_start=np.concatenate([[0], np.cumsum(tp_len)[:-1]]).astype(np.int64),
        tp_seg_len=tp_len,
        fp_before=counts,
        positives=positives,
        classes=classes,
        n_images=n_images,
    )


def class_ap_many(m: Matched, weights: np.ndarray) -> np.ndarray:
    """(R, C, T) AP per class and IoU threshold for each row of image ``weights`` (R, I), from the
    reduced table."""
    n_seg, t = len(m.tp_seg_len), len(IOU_THRESHOLDS)
    r = weights.shape[0]
    wt = weights.T  # (I, R)
    npos = np.repeat(m.positives @ wt, t, axis=0)  # (S, R)
    out = np.zeros((n_seg, r))
    if len(m.tp_image):
        seg = m.tp_seg
        ctp = np.cumsum(wt[m.tp_image], axis=0)
        cfp = np.cumsum(np.asarray(m.fp_before @ wt), axis=0)
        start = m.tp_seg_start
        prev = np.maximum(start - 1, 0)
        first = (start == 0)[:, None]
        ctp -= np.where(first, 0.0, ctp[prev])[seg]
        cfp -= np.where(first, 0.0, cfp[prev])[seg]
        out = _segment_ap(ctp, cfp, npos, seg, start[m.tp_seg_len > 0], n_seg)
    out = np.where(npos > 0, out, np.nan)  # (S, R)
    return out.T.reshape(r, len(m.classes), t)


def _segment_ap(
    ctp: np.ndarray, cfp: np.ndarray, npos: np.ndarray, seg: np.ndarray, starts: np.ndarray, n_seg: int
) -> np.ndarray:
    """(S, R) COCOeval's AP of each segment from the running true / false positive counts of its
    rows (rows x R, counted from each segment's start) and its positives ``npos`` (S, R).

    COCOeval takes, at each recall point r, the envelope precision at the first row whose recall
    is >= r. Row i is that first row for the points it passes that the row before did not: with
    k_i the number of recall points <= its recall, exactly k_i - k_(i-1) of them. So AP is the sum
    of envelope x (k_i - k_(i-1)) over the segment's rows, / 101: no search per segment, and the
    recall comparisons are COCOeval's own floating-point ones."""
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = ctp / npos[seg]
        precision = ctp / (ctp + cfp + np.spacing(1))
    recall = np.where(np.isfinite(recall), recall, 0.0)
    # the envelope (max precision to the right) within each segment: offsets keep segments apart
    # (they cost at most ~1e-13 of a precision value; the comparisons of recall do not use them)
    rev_off = ((n_seg - seg) * 2.0)[:, None]
    env = np.maximum.accumulate((precision + rev_off)[::-1], axis=0)[::-1] - rev_off
    k = np.searchsorted(RECALL_POINTS, recall.ravel(), side="right").reshape(recall.shape)
    prev = np.vstack([np.zeros((1, k.shape[1]), dtype=k.dtype), k[:-1]])
    prev[starts[starts < len(k)]] = 0  # a segment's first row counts from 0
    gained = env * (k - prev)
    out = np.zeros((n_seg, k.shape[1]))
    if len(gained):
        nonempty = np.unique(seg)  # rows are grouped by segment, in order
        firsts = np.searchsorted(seg, nonempty, side="left")
        out[nonempty] = np.add.reduceat(gained, firsts, axis=0)
    return out / len(RECALL_POINTS)


def _mean(x: np.ndarray, axis: int | None = None) -> Any:
    """Mean of the finite entries (NaN where there are none), without numpy's empty-slice warning."""
    ok = np.isfinite(x)
    total = np.where(ok, x, 0.0).sum(axis=axis)
    count = ok.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def summary(ap: np.ndarray) -> tuple[float, float, np.ndarray]:
    """AP (mean over classes and thresholds), AP50, and per-class AP (mean over thresholds); -1
    where nothing has a ground truth (COCOeval's sentinel)."""
    overall, ap50 = float(_mean(ap)), float(_mean(ap[:, 0]))
    return (
        (overall if np.isfinite(overall) else -1.0),
        (ap50 if np.isfinite(ap50) else -1.0),
        _mean(ap, axis=1),
    )


def resample_weights(n_images: int, n: int, seed: int) -> np.ndarray:
    """(n, I) how many times each image is drawn in each of ``n`` resamples."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [np.bincount(rng.integers(0, n_images, n_images), minlength=n_images) for _ in range(n)]
    ).astype(np.float64)


def _interval(values: np.ndarray) -> list[float] | None:
    ok = values[np.isfinite(values)]
    if not ok.size:
        return None
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return [float(lo), float(hi)]


def bootstrap(
    gt: dict[str, Any], predictions: list[dict[str, Any]], *, n: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """95% percentile intervals of AP, AP50 and per-class AP over ``n`` image resamples."""
    m = match(gt, predictions)
    ap, ap50, per = summary(class_ap_many(m, np.ones((1, m.n_images)))[0])
    stats = _resampled(m, resample_weights(m.n_images, n, seed))
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    return {
        "resamples": n,
        "seed": seed,
        "interval": "95% percentile",
        "AP": {"value": ap, "ci95": _interval(stats[:, 0])},
        "AP50": {"value": ap50, "ci95": _interval(stats[:, 1])},
        "per_class": [
            {
                "category_id": c,
                "name": names.get(c, str(c)),
                "AP": float(per[k]) if np.isfinite(per[k]) else -1.0,
                "ci95": _interval(stats[:, 2 + k]),
            }
            for k, c in enumerate(m.classes)
        ],
    }


def _resampled(m: Matched, draws: np.ndarray, chunk: int = 8) -> np.ndarray:
    """(R, 2 + C): AP, AP50 and per-class AP of each resample."""
    rows = []
    for i in range(0, len(draws), chunk):
        for ap in class_ap_many(m, draws[i : i + chunk]):
            overall, ap50, per = summary(ap)
            rows.append(np.concatenate([[overall, ap50], per]))
    return np.array(rows).reshape(len(draws), -1)


def compare(
    gt: dict[str, Any],
    a: list[dict[str, Any]],
    b: list[dict[str, Any]],
    *,
    n: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """B against A on the same resamples: the difference of AP, AP50 and per-class AP with its 95%
    interval, and the share of resamples where B scores higher."""
    ma, mb = match(gt, a), match(gt, b)
    ones = np.ones((1, ma.n_images))
    sa, sb = _resampled(ma, ones)[0], _resampled(mb, ones)[0]
    draws = resample_weights(ma.n_images, n, seed)
    diffs = _resampled(mb, draws) - _resampled(ma, draws)
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}

    def row(k: int) -> dict[str, Any]:
        d = diffs[:, k]
        ok = d[np.isfinite(d)]
        return {
            "A": float(sa[k]) if np.isfinite(sa[k]) else None,
            "B": float(sb[k]) if np.isfinite(sb[k]) else None,
            "delta": float(sb[k] - sa[k]) if np.isfinite(sb[k] - sa[k]) else None,
            "ci95": _interval(d),
            "B_better": float((ok > 0).mean()) if ok.size else None,
        }

    return {
        "resamples": n,
        "seed": seed,
        "interval": "95% percentile of B - A over paired image resamples",
        "AP": row(0),
        "AP50": row(1),
        "per_class": [
            {"category_id": c, "name": names.get(c, str(c)), **row(2 + k)} for k, c in enumerate(ma.classes)
        ],
    }


def image_errors(gt: dict[str, Any], predictions: list[dict[str, Any]], iou: float = 0.5) -> dict[int, int]:
    """Per image: its false positives plus missed objects, keeping the predictions that score at
    least the set's best-F1 threshold (VOC matching at ``iou``): what a deployment would see."""
    from dataforge.evaluation.detection import voc_and_matches
    from dataforge.evaluation.metrics.best_f1 import best_f1

    _voc, _ious, x = voc_and_matches(gt, predictions, iou)
    threshold = best_f1(x)["score_threshold"]
    kept = x.scored & (x.scores >= (threshold if threshold is not None else np.inf))
    out = {int(img["id"]): 0 for img in gt["images"]}
    for a in gt["annotations"]:
        if not a.get("iscrowd") and not a.get("semantic"):
            out[int(a["image_id"])] += 1  # missed until found
    for p, tp, keep in zip(predictions, x.true_positive.tolist(), kept.tolist(), strict=True):
        if keep:
            out[int(p["image_id"])] += -1 if tp else 1
    return out


def image_changes(
    gt: dict[str, Any], a: list[dict[str, Any]], b: list[dict[str, Any]], top: int = 8
) -> dict[str, list[dict[str, Any]]]:
    """The images where B made the most fewer (``gained``) and more (``lost``) errors than A."""
    ea, eb = image_errors(gt, a), image_errors(gt, b)
    files = {int(img["id"]): img.get("file_name") for img in gt["images"]}
    rows = [
        {"image_id": i, "file_name": files[i], "errors_A": ea[i], "errors_B": eb[i], "change": ea[i] - eb[i]}
        for i in ea
    ]
    gained = sorted((r for r in rows if r["change"] > 0), key=lambda r: (-r["change"], r["image_id"]))[:top]
    lost = sorted((r for r in rows if r["change"] < 0), key=lambda r: (r["change"], r["image_id"]))[:top]
    return {"gained": gained, "lost": lost}
