"""How sure is an AP: bootstrap over images, and the paired comparison of two prediction sets.

COCOeval's matching (area range "all", at most 100 predictions per image and class, the 10 IoU
thresholds 0.50:0.05:0.95, crowd regions matched many times and ignored) is done once, per
prediction and threshold: true positive, false positive or ignored; it is the report's own
(:func:`dataforge.evaluation.overlaps.coco_matches`, on the same table of overlaps). A resample draws the images
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

from dataforge.evaluation.overlaps import IOU_THRESHOLDS, RECALL_POINTS, Overlaps, coco_matches, overlaps


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


def match(gt: dict[str, Any], predictions: list[dict[str, Any]], *, table: Overlaps | None = None) -> Matched:
    """COCOeval's matching of boxes (area "all") for every image and class of ``gt``, from the
    table of overlaps the report shares (``table``, computed when not given), reduced."""
    from dataforge.evaluation.instances import instance_ground_truth

    gt = instance_ground_truth(gt)
    o = table if table is not None else overlaps(gt, predictions)
    classes = sorted(int(c["id"]) for c in gt["categories"])
    cm = coco_matches(o, classes)
    t, n_img, n_cls = len(IOU_THRESHOLDS), o.n_images, len(classes)
    hit = np.zeros((t, len(o.d_cls)), dtype=bool)
    ignored = np.zeros((t, len(o.d_cls)), dtype=bool)
    hit[:, cm.dets] = cm.hit[:t]  # area "all" comes first
    ignored[:, cm.dets] = cm.hit_ignored[:t]
    ignored |= ~hit & cm.d_outside[0][None, :]
    counts = (cm.g_k >= 0) & ~cm.g_ignored[0]
    positives = (
        np.bincount(cm.g_k[counts] * n_img + o.g_img[counts], minlength=n_cls * n_img)
        .reshape(n_cls, n_img)
        .astype(np.float64)
    )
    order = cm.order  # class-major, each class in score order
    bounds = np.searchsorted(cm.d_k[order], np.arange(n_cls + 1))
    rows_image: list[np.ndarray] = []
    rows_tp: list[np.ndarray] = []
    rows_fp: list[np.ndarray] = []
    seg_len: list[int] = []
    for c in range(n_cls):
        by_score = order[bounds[c] : bounds[c + 1]]
        for ti in range(t):
            keep = by_score[~ignored[ti, by_score]]  # ignored rows drop out (neither TP nor FP)
            tps = np.flatnonzero(hit[ti, keep])
            keep = keep[: tps[-1] + 1] if len(tps) else keep[:0]  # what follows the last TP changes nothing
            rows_image.append(o.d_img[keep])
            rows_tp.append(hit[ti, keep])
            rows_fp.append(~hit[ti, keep])
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
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    *,
    n: int = 1000,
    seed: int = 0,
    table: Overlaps | None = None,
) -> dict[str, Any]:
    """95% percentile intervals of AP, AP50 and per-class AP over ``n`` image resamples
    (``table``: the predictions' overlaps, when the caller has them)."""
    m = match(gt, predictions, table=table)
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


#: from this many resamples on, they are split over two forked processes (each resample is
#: computed alone, so the numbers do not depend on the split)
PARALLEL_FROM = 100


def _resampled(m: Matched, draws: np.ndarray, chunk: int = 8) -> np.ndarray:
    """(R, 2 + C): AP, AP50 and per-class AP of each resample; many resamples run as two halves
    in forked processes where that is safe (:func:`dataforge.runtime.forked_map`)."""
    from dataforge.runtime import forked_map

    def part(rows_of: np.ndarray) -> np.ndarray:
        rows = []
        for i in range(0, len(rows_of), chunk):
            for ap in class_ap_many(m, rows_of[i : i + chunk]):
                overall, ap50, per = summary(ap)
                rows.append(np.concatenate([[overall, ap50], per]))
        return np.array(rows).reshape(len(rows_of), -1)

    if len(draws) < PARALLEL_FROM:
        return part(draws)
    half = (len(draws) + 1) // 2
    return np.concatenate(forked_map(part, [draws[:half], draws[half:]]))


def compare(
    gt: dict[str, Any],
    a: list[dict[str, Any]],
    b: list[dict[str, Any]],
    *,
    n: int = 1000,
    seed: int = 0,
    table_a: Overlaps | None = None,
) -> dict[str, Any]:
    """B against A on the same resamples: the difference of AP, AP50 and per-class AP with its 95%
    interval, and the share of resamples where B scores higher (``table_a``: A's overlaps, when
    the caller has them)."""
    ma, mb = match(gt, a, table=table_a), match(gt, b)
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


def image_errors(
    gt: dict[str, Any], predictions: list[dict[str, Any]], iou: float = 0.5, table: Overlaps | None = None
) -> dict[int, int]:
    """Per image: its false positives plus missed objects, keeping the predictions that score at
    least the set's best-F1 threshold (VOC matching at ``iou``): what a deployment would see."""
    from dataforge.evaluation.detection import voc_and_matches
    from dataforge.evaluation.metrics.best_f1 import best_f1

    _voc, _ious, x = voc_and_matches(gt, predictions, iou, table=table)
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
    gt: dict[str, Any],
    a: list[dict[str, Any]],
    b: list[dict[str, Any]],
    top: int = 8,
    table_a: Overlaps | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The images where B made the most fewer (``gained``) and more (``lost``) errors than A."""
    ea, eb = image_errors(gt, a, table=table_a), image_errors(gt, b)
    files = {int(img["id"]): img.get("file_name") for img in gt["images"]}
    rows = [
        {"image_id": i, "file_name": files[i], "errors_A": ea[i], "errors_B": eb[i], "change": ea[i] - eb[i]}
        for i in ea
    ]
    gained = sorted((r for r in rows if r["change"] > 0), key=lambda r: (-r["change"], r["image_id"]))[:top]
    lost = sorted((r for r in rows if r["change"] < 0), key=lambda r: (r["change"], r["image_id"]))[:top]
    return {"gained": gained, "lost": lost}
