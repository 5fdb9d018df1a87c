"""One table of overlaps for every detection number, and the greedy matcher they all use.

COCOeval (10 IoU thresholds x 4 area ranges), TIDE's error breakdown, VOC AP50 and the confusion
matrices each match predictions to ground truth greedily, highest score first, within an image (or
an image and class). They share :class:`Overlaps`: the ground truth and predictions as columns, and
every (prediction, ground truth) pair of one image that overlaps by IoU >= 0.1 (the lowest
threshold any of them reads), computed once: boxes vectorized with pycocotools' arithmetic
(``bbIou``: intersection over union, over the prediction's area for a crowd region), masks with
pycocotools' mask IoU image by image, so each IoU is bit for bit COCOeval's.

:func:`greedy` is the matching: sequential within a group, independent across groups, so it runs
every group at once, one rank at a time (the first prediction of every group, then the second,
...), and every IoU threshold and area range at once as rows of one boolean matrix.

:func:`coco_eval` is COCOeval's ``evaluate`` and ``accumulate`` for boxes or masks on that table: the
same precision [T, R, K, A, M] and recall [T, K, A, M] arrays, computed the way pycocotools
computes them (its cumulative sums, its division, its envelope, its ``searchsorted``), so the
numbers are pycocotools' (tests/test_evaluation_coco.py and test_evaluation_masks_keypoints.py
hold the whole arrays to it). Keypoints (OKS) are not here: faster-coco-eval scores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

#: the lowest IoU any consumer reads (TIDE's background threshold); lower overlaps are not kept
MIN_IOU = 0.1
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCOeval's params.iouThrs
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCOeval's params.recThrs
AREA_RANGES = ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))  # all, s, m, l
MAX_DETS = (1, 10, 100)
_PAIRS_PER_CHUNK = 65_536  # small chunks reuse freed memory: 2M-pair chunks took 3x longer (page faults)


@dataclass
class Overlaps:
    """Ground truth (``g_*``, one row per annotation, in ``gt["annotations"]`` order), predictions
    (``d_*``, in the order given) and the overlapping pairs of one image (``p_*``)."""

    image_ids: np.ndarray  # id of each image, in gt["images"] order (an image's index is its place)
    g_img: np.ndarray  # image index (-1: an image gt does not list)
    g_cls: np.ndarray  # category id
    g_crowd: np.ndarray  # bool
    g_area: np.ndarray  # the 'area' field (COCOeval's area ranges read it; the box's w * h without one)
    d_img: np.ndarray  # image index (-1: an image gt does not list)
    d_cls: np.ndarray
    d_score: np.ndarray
    d_area: np.ndarray  # as COCOeval's loadRes sets it: w * h of the box (masks: the mask's pixels,
    # unless the first prediction has a box: then every box's w * h)
    p_det: np.ndarray  # prediction row of each pair
    p_gt: np.ndarray  # ground-truth row
    p_iou: np.ndarray  # COCOeval's IoU: over the union, or over the prediction's area for a crowd
    p_plain: np.ndarray  # over the union, crowd or not
    _rank: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    def image_rank(self, keep: np.ndarray | None = None) -> np.ndarray:
        """Per prediction, its place among its image's predictions by score (descending, ties in
        the given order), the order greedy matching takes them in; -1 for one of an unknown image
        or not in ``keep`` (the others keep their places: only the order counts)."""
        if self._rank is None:
            self._rank = _ranks(self.d_img, self.d_score)
        return self._rank.copy() if keep is None else np.where(keep, self._rank, -1)


def _ranks(group: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per row, its place in its group by score descending (stable); -1 where ``group`` < 0."""
    rank = np.full(len(group), -1, dtype=np.int64)
    rows = np.flatnonzero(group >= 0)
    if not len(rows):
        return rank
    order = rows[np.lexsort((rows, -score[rows], group[rows]))]
    g = group[order]
    first = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    rank[order] = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    return rank


def _column(rows: list[dict[str, Any]], key: str, dtype: Any) -> np.ndarray:
    return np.fromiter((r[key] for r in rows), dtype=dtype, count=len(rows))


def _boxes(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([r["bbox"] for r in rows], dtype=np.float64).reshape(-1, 4)


def overlaps(gt: dict[str, Any], predictions: list[dict[str, Any]], iou_type: str = "bbox") -> Overlaps:
    """The table for ``predictions`` (COCO results, boxes or, with ``iou_type="segm"``, masks)
    against ``gt`` (a COCO dict)."""
    images = [int(img["id"]) for img in gt["images"]]
    place = {iid: k for k, iid in enumerate(images)}
    anns = gt.get("annotations", [])
    n_g, n_d = len(anns), len(predictions)
    g_img = np.fromiter((place.get(int(a["image_id"]), -1) for a in anns), dtype=np.int64, count=n_g)
    d_img = np.fromiter((place.get(int(p["image_id"]), -1) for p in predictions), dtype=np.int64, count=n_d)
    g_crowd = np.fromiter((bool(a.get("iscrowd")) for a in anns), dtype=bool, count=n_g)
    g_area = np.fromiter((float(a.get("area", np.nan)) for a in anns), dtype=np.float64, count=n_g)
    if iou_type == "bbox":
        g_box, d_box = _boxes(anns), _boxes(predictions)
        d_area = d_box[:, 2] * d_box[:, 3]
        g_area = np.where(np.isnan(g_area), g_box[:, 2] * g_box[:, 3], g_area)  # no 'area': the box's
        p_det, p_gt, p_iou, p_plain = _box_pairs(g_img, g_box, g_crowd, d_img, d_box, len(images))
    else:  # masks: pycocotools' mask IoU, image by image
        p_det, p_gt, p_iou, d_area = _mask_pairs(gt, predictions, g_img, g_crowd, d_img, len(images))
        p_plain = p_iou
        if predictions and predictions[0].get("bbox"):  # COCOeval's loadRes: then areas are boxes'
            boxed = np.fromiter((bool(q.get("bbox")) for q in predictions), dtype=bool, count=n_d)
            box_area = np.array([q["bbox"][2] * q["bbox"][3] if q.get("bbox") else 0.0 for q in predictions])
            d_area = np.where(boxed, box_area, d_area)
    return Overlaps(
        image_ids=np.array(images, dtype=np.int64),
        g_img=g_img,
        g_cls=_column(anns, "category_id", np.int64),
        g_crowd=g_crowd,
        g_area=g_area,
        d_img=d_img,
        d_cls=_column(predictions, "category_id", np.int64),
        d_score=_column(predictions, "score", np.float64),
        d_area=d_area,
        p_det=p_det,
        p_gt=p_gt,
        p_iou=p_iou,
        p_plain=p_plain,
    )


def _box_pairs(
    g_img: np.ndarray,
    g_box: np.ndarray,
    g_crowd: np.ndarray,
    d_img: np.ndarray,
    d_box: np.ndarray,
    n_images: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (prediction, ground truth) pair of one image overlapping by IoU >= MIN_IOU (either
    kind), in chunks of a bounded number of candidate pairs; pycocotools' ``bbIou`` arithmetic."""
    known = g_img >= 0
    g_order = np.flatnonzero(known)[np.argsort(g_img[known], kind="stable")]
    g_count = np.bincount(g_img[known], minlength=n_images)
    g_start = np.r_[0, np.cumsum(g_count)[:-1]]
    dets = np.flatnonzero(d_img >= 0)
    counts = g_count[d_img[dets]]
    ends = np.cumsum(counts)
    cuts = np.searchsorted(
        ends, np.arange(_PAIRS_PER_CHUNK, int(ends[-1]) if len(ends) else 0, _PAIRS_PER_CHUNK)
    )
    gx, gy, gw, gh = (np.ascontiguousarray(g_box[:, k]) for k in range(4))
    dx, dy, dw, dh = (np.ascontiguousarray(d_box[:, k]) for k in range(4))
    parts: list[tuple[np.ndarray, ...]] = []
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(dets)], strict=True):
        dc, cc = dets[lo:hi], counts[lo:hi]
        total = int(cc.sum())
        if not total:
            continue
        dd = np.repeat(dc, cc)
        within = np.arange(total) - np.repeat(np.cumsum(cc) - cc, cc)
        gg = g_order[np.repeat(g_start[d_img[dc]], cc) + within]
        w = np.minimum(dw[dd] + dx[dd], gw[gg] + gx[gg]) - np.maximum(dx[dd], gx[gg])
        h = np.minimum(dh[dd] + dy[dd], gh[gg] + gy[gg]) - np.maximum(dy[dd], gy[gg])
        hit = np.flatnonzero((w > 0) & (h > 0))
        dd, gg, inter = dd[hit], gg[hit], w[hit] * h[hit]
        da, ga = dw[dd] * dh[dd], gw[gg] * gh[gg]
        plain = inter / (da + ga - inter)
        crowd = g_crowd[gg]
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(crowd, inter / da, plain)
        keep = (iou >= MIN_IOU) | (plain >= MIN_IOU)
        parts.append((dd[keep], gg[keep], iou[keep], plain[keep]))
    if not parts:
        empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        return empty_i, empty_i, empty_f, empty_f
    return tuple(np.concatenate(c) for c in zip(*parts, strict=True))  # type: ignore[return-value]


def _mask_pairs(
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    g_img: np.ndarray,
    g_crowd: np.ndarray,
    d_img: np.ndarray,
    n_images: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of masks (pycocotools' mask IoU, image by image), and each prediction's mask
    area (NaN on an image gt does not list)."""
    from pycocotools import mask as mask_utils

    sizes = [(int(img["height"]), int(img["width"])) for img in gt["images"]]
    by_img_g: list[list[int]] = [[] for _ in range(n_images)]
    by_img_d: list[list[int]] = [[] for _ in range(n_images)]
    for i, k in enumerate(g_img.tolist()):
        if k >= 0:
            by_img_g[k].append(i)
    for i, k in enumerate(d_img.tolist()):
        if k >= 0:
            by_img_d[k].append(i)
    anns = gt["annotations"]
    d_area = np.full(len(d_img), np.nan)
    dets_out, gts_out, ious_out = [], [], []
    for k in range(n_images):
        gi, di = by_img_g[k], by_img_d[k]
        if not di:
            continue
        h, w = sizes[k]
        d_rles = [_as_rle(predictions[i]["segmentation"], h, w) for i in di]
        d_area[di] = mask_utils.area(d_rles)
        if not gi:
            continue
        g_rles = [_as_rle(anns[i]["segmentation"], h, w) for i in gi]
        crowd = [bool(g_crowd[i]) for i in gi]
        iou = np.asarray(mask_utils.iou(d_rles, g_rles, crowd), dtype=np.float64).reshape(len(di), len(gi))
        r, c = np.nonzero(iou >= MIN_IOU)
        dets_out.append(np.asarray(di, dtype=np.int64)[r])
        gts_out.append(np.asarray(gi, dtype=np.int64)[c])
        ious_out.append(iou[r, c])
    if not dets_out:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float64), d_area
    return np.concatenate(dets_out), np.concatenate(gts_out), np.concatenate(ious_out), d_area


def _as_rle(segmentation: Any, height: int, width: int) -> Any:
    """A compressed RLE of the image's size as it is (pycocotools reads string counts); any other
    segmentation through :func:`dataforge.masks.to_rle`."""
    if (
        type(segmentation) is dict
        and type(segmentation.get("counts")) in (str, bytes)
        and segmentation.get("size") == [height, width]
    ):
        return segmentation
    from dataforge.masks import to_rle

    return to_rle(segmentation, height, width)


def greedy(
    rank: np.ndarray,
    pairs: np.ndarray,
    o: Overlaps,
    valid: np.ndarray,
    *,
    ties: str,
    prefer: np.ndarray | None = None,
    reusable: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of every group at once, in ``R`` independent runs.

    ``rank``: per prediction, its place in its group's order (0 goes first); ``pairs``: indices
    into ``o``'s pairs, each within one group, the candidates; ``valid`` (R, len(pairs)): which
    may match in each run (an IoU threshold). In turn, each prediction takes, of its valid pairs
    whose ground truth is still free, the highest IoU (``ties="last"``: of equal ones the later
    annotation, as COCOeval; ``"first"``: the earlier, as ``argmax``); with ``prefer`` (R, len(pairs)) a
    preferred pair over any other (COCOeval's ground truth inside the area range over the rest).
    ``reusable`` ground truth stays free once matched (crowd regions).

    Returns the predictions that had candidates and, per run, the pair (an index into ``o``'s
    pairs) each took, or -1: arrays (D,) and (R, D).
    """
    n_runs = valid.shape[0]
    if not len(pairs):
        return np.zeros(0, dtype=np.int64), np.zeros((n_runs, 0), dtype=np.int64)
    det = o.p_det[pairs]
    gt_key = o.p_gt[pairs] if ties == "last" else -o.p_gt[pairs]
    order = np.lexsort((gt_key, o.p_iou[pairs], det, rank[det]))
    pairs, det, valid = pairs[order], det[order], valid[:, order]
    pref = prefer[:, order] if prefer is not None else None
    gts = o.p_gt[pairs]
    free_always = reusable[gts] if reusable is not None else None
    n = len(pairs)
    seg = np.flatnonzero(np.r_[True, det[1:] != det[:-1]])
    seg_rank = rank[det[seg]]
    steps = np.flatnonzero(np.r_[True, seg_rank[1:] != seg_rank[:-1]])
    bounds = np.r_[seg, n]
    taken = np.zeros((n_runs, len(o.g_cls)), dtype=bool)
    chosen = np.full((n_runs, len(seg)), -1, dtype=np.int64)
    pos = np.arange(1, n + 1)
    for s0, s1 in zip(steps.tolist(), np.r_[steps[1:], len(seg)].tolist(), strict=True):
        a0, a1 = int(bounds[s0]), int(bounds[s1])
        free = ~taken[:, gts[a0:a1]]
        if free_always is not None:
            free |= free_always[a0:a1]
        ok = valid[:, a0:a1] & free
        local = seg[s0:s1] - a0
        last = np.maximum.reduceat(np.where(ok, pos[a0:a1], 0), local, axis=1)
        if pref is not None:
            best = np.maximum.reduceat(np.where(ok & pref[:, a0:a1], pos[a0:a1], 0), local, axis=1)
            last = np.where(best > 0, best, last)
        pick = last - 1
        chosen[:, s0:s1] = pick
        r, c = np.nonzero(pick >= 0)
        taken[r, gts[pick[r, c]]] = True
    out = np.where(chosen >= 0, pairs[np.maximum(chosen, 0)], -1)
    return det[seg], out


def index_of(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """The place of each value in ``sorted_ids``, -1 where it is not there."""
    if not len(sorted_ids):
        return np.full(len(values), -1, dtype=np.int64)
    k = np.searchsorted(sorted_ids, values)
    k_ok = np.minimum(k, len(sorted_ids) - 1)
    return np.where(sorted_ids[k_ok] == values, k_ok, -1).astype(np.int64)


@dataclass
class CocoMatches:
    """COCOeval's ``evaluate`` for boxes on a table: per prediction, its class row and place, and
    how each matched, per area range and IoU threshold."""

    cats: np.ndarray  # category ids, ascending (class rows)
    d_k: np.ndarray  # class row of each prediction (-1: a class gt does not list)
    rank: np.ndarray  # place in its image and class by score, -1 beyond maxDets[-1] (not evaluated)
    order: np.ndarray  # evaluated predictions in accumulate's order: class, score, image id, place
    dets: np.ndarray  # the predictions that had a candidate (all others match nothing anywhere)
    hit: np.ndarray  # (A*T, len(dets)), area-major: matched
    hit_ignored: np.ndarray  # (A*T, len(dets)): matched a crowd region or a ground truth outside the range
    d_outside: np.ndarray  # (A, D): the prediction's own area is outside the range
    positives: np.ndarray  # (K, A): ground truth that counts (not crowd, inside the range)
    g_k: np.ndarray  # class row of each annotation (-1: not evaluated)
    g_ignored: np.ndarray  # (A, G): crowd, or outside the range


def coco_matches(o: Overlaps, cat_ids: list[int]) -> CocoMatches:
    """COCOeval's matching (``bbox`` or ``segm``, default parameters) of every image and class at once: per
    image and class, its first 100 predictions by score take, in turn, the free ground truth of the
    highest IoU >= each threshold (of equal IoUs the later annotation), one inside the area range
    over one outside it; crowd regions match any number and are ignored."""
    cats = np.array(sorted(cat_ids), dtype=np.int64)
    n_t, n_k, n_a = len(IOU_THRESHOLDS), len(cats), len(AREA_RANGES)
    d_k = index_of(o.d_cls, cats)
    group = np.where((d_k >= 0) & (o.d_img >= 0), o.d_img * max(n_k, 1) + d_k, -1)
    rank = _ranks(group, o.d_score)
    rank[rank >= MAX_DETS[-1]] = -1
    g_k = index_of(o.g_cls, cats)
    g_k[o.g_img < 0] = -1
    lo = np.array([a[0] for a in AREA_RANGES])[:, None]
    hi = np.array([a[1] for a in AREA_RANGES])[:, None]
    g_ignored = o.g_crowd[None, :] | (o.g_area[None, :] < lo) | (o.g_area[None, :] > hi)  # (A, G)
    # candidates: pairs of one image and class, COCOeval's IoU >= the lowest threshold
    cand = np.flatnonzero(
        (o.p_iou >= IOU_THRESHOLDS[0]) & (rank[o.p_det] >= 0) & (o.d_cls[o.p_det] == o.g_cls[o.p_gt])
    )
    valid = np.tile(o.p_iou[cand][None, :] >= IOU_THRESHOLDS[:, None], (n_a, 1))  # (A*T, P)
    prefer = np.repeat(~g_ignored[:, o.p_gt[cand]], n_t, axis=0)
    dets, took = greedy(rank, cand, o, valid, ties="last", prefer=prefer, reusable=o.g_crowd)
    hit = took >= 0
    hit_ignored = np.zeros_like(hit)
    for a in range(n_a):
        rows = slice(a * n_t, (a + 1) * n_t)
        hit_ignored[rows] = hit[rows] & g_ignored[a][o.p_gt[np.maximum(took[rows], 0)]]
    in_eval = np.flatnonzero(rank >= 0)
    img_order = np.argsort(np.argsort(o.image_ids, kind="stable"), kind="stable")  # image id rank
    order = in_eval[
        np.lexsort((rank[in_eval], img_order[o.d_img[in_eval]], -o.d_score[in_eval], d_k[in_eval]))
    ]
    g_rows = np.flatnonzero(g_k >= 0)
    positives = np.zeros((n_k, n_a), dtype=np.int64)
    for a in range(n_a):
        positives[:, a] = np.bincount(g_k[g_rows][~g_ignored[a, g_rows]], minlength=n_k)[:n_k]
    return CocoMatches(
        cats=cats,
        d_k=d_k,
        rank=rank,
        order=order,
        dets=dets,
        hit=hit,
        hit_ignored=hit_ignored,
        d_outside=(o.d_area[None, :] < lo) | (o.d_area[None, :] > hi),
        positives=positives,
        g_k=g_k,
        g_ignored=g_ignored,
    )


def coco_eval(o: Overlaps, cat_ids: list[int]) -> SimpleNamespace:
    """COCOeval (``bbox`` or ``segm``, as the table was made; its default parameters) on the table: an object with ``eval``
    (``precision`` [T, R, K, A, M], ``recall`` [T, K, A, M]) and ``stats`` (its 12 numbers)."""
    m = coco_matches(o, cat_ids)
    n_t, n_r, n_k, n_a, n_m = (
        len(IOU_THRESHOLDS),
        len(RECALL_POINTS),
        len(m.cats),
        len(AREA_RANGES),
        len(MAX_DETS),
    )
    precision = -np.ones((n_t, n_r, n_k, n_a, n_m))
    recall = -np.ones((n_t, n_k, n_a, n_m))
    where = np.full(len(o.d_cls), -1, dtype=np.int64)
    for m_i, max_det in enumerate(MAX_DETS):
        # per class, the predictions of every image in score order, the first maxDet of each
        sel = m.order[m.rank[m.order] < max_det]
        where[:] = -1
        where[sel] = np.arange(len(sel))
        at = where[m.dets]
        touched = np.flatnonzero(at >= 0)
        touched = touched[np.argsort(at[touched], kind="stable")]
        for a in range(n_a):
            rows = slice(a * n_t, (a + 1) * n_t)
            _accumulate(
                precision[:, :, :, a, m_i],
                recall[:, :, a, m_i],
                m.positives[:, a],
                m.d_k[sel],
                ~m.d_outside[a, sel],
                at[touched],
                m.hit[rows][:, touched],
                m.hit_ignored[rows][:, touched],
            )
    return SimpleNamespace(
        eval={"precision": precision, "recall": recall}, stats=summarize(precision, recall)
    )


def summarize(precision: np.ndarray, recall: np.ndarray) -> list[float]:
    """COCOeval.summarize()'s 12 box numbers from its precision [T, R, K, A, M] and recall
    [T, K, A, M] arrays (areas all, small, medium, large; maxDets 1, 10, 100)."""

    def mean(x: np.ndarray) -> float:
        v = x[x > -1]
        return float(np.mean(v)) if v.size else -1.0

    p, r = precision, recall
    return [
        mean(p[:, :, :, 0, 2]),
        mean(p[0, :, :, 0, 2]),
        mean(p[5, :, :, 0, 2]),
        mean(p[:, :, :, 1, 2]),
        mean(p[:, :, :, 2, 2]),
        mean(p[:, :, :, 3, 2]),
        mean(r[:, :, 0, 0]),
        mean(r[:, :, 0, 1]),
        mean(r[:, :, 0, 2]),
        mean(r[:, :, 1, 2]),
        mean(r[:, :, 2, 2]),
        mean(r[:, :, 3, 2]),
    ]


def _accumulate(
    precision: np.ndarray,
    recall: np.ndarray,
    positives: np.ndarray,
    cls: np.ndarray,
    counted: np.ndarray,
    at: np.ndarray,
    hit: np.ndarray,
    hit_ignored: np.ndarray,
) -> None:
    """COCOeval.accumulate for one area range and maxDet, into ``precision`` [T, R, K] and
    ``recall`` [T, K].

    ``cls``, ``counted``: per prediction in accumulate's order (class-major, score descending),
    its class row and whether it counts when it matches nothing (inside the area range); ``at``
    (ascending) places the predictions that matched at some threshold, ``hit`` and
    ``hit_ignored`` (T, len(at)) say how.

    Only the true positives are visited: COCOeval's precision at a recall point is the envelope at
    the first prediction reaching that recall, a true positive; the envelope's maximum is reached
    at a true positive too (between two, precision only falls). A true positive's precision needs
    the false positives before it: the counted predictions before it, less the true positives, with
    the matched ones corrected (a matched prediction counts unless its match is ignored, whatever
    its own area). Each number is computed with COCOeval's own operations: ``tp / npig`` and
    ``tp / (fp + tp + eps)`` over float counts, and the same comparisons to the recall points.
    """
    n_t, _, n_k = precision.shape
    bounds = np.searchsorted(cls, np.arange(n_k + 1))
    counted_before = np.r_[0, np.cumsum(counted, dtype=np.int64)]  # at each place, over all rows before
    base = counted[at].astype(np.int64)
    live = ~(hit_ignored | (~hit & ~base.astype(bool)[None, :]))
    correction = live.astype(np.int64) - base[None, :]
    tp = hit & ~hit_ignored
    tp_cum = np.cumsum(tp, axis=1, dtype=np.int64)
    corr_cum = np.cumsum(correction, axis=1, dtype=np.int64)
    zero = np.zeros((n_t, 1), dtype=np.int64)
    tp_upto, corr_upto = np.hstack([zero, tp_cum]), np.hstack([zero, corr_cum])
    first = np.searchsorted(at, bounds)  # each class's first matched row (and the end)
    row_cls = cls[at]
    start = first[row_cls]
    # counted rows of its class before each matched row, at each threshold
    live_before = (
        counted_before[at][None, :]
        + corr_upto[:, :-1]
        - (counted_before[bounds[row_cls]][None, :] + corr_upto[:, start])
    )
    tp_n = tp_cum - tp_upto[:, start]  # true positives of its class up to and including it
    fp_n = live_before - (tp_n - tp)
    eps = np.spacing(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pr = np.where(tp, tp_n / (fp_n + tp_n + eps), 0.0)
    npig = positives[row_cls]
    for k in range(n_k):
        if positives[k] == 0:
            continue
        recall[:, k] = (tp_upto[:, first[k + 1]] - tp_upto[:, first[k]]) / positives[k]
        precision[:, :, k] = 0.0
        s, e = int(first[k]), int(first[k + 1])
        if e > s:  # the envelope, within the class
            pr[:, s:e] = np.maximum.accumulate(pr[:, s:e][:, ::-1], axis=1)[:, ::-1]
    t_i, r_i = np.nonzero(tp)
    if not len(t_i):
        return
    n_tp = tp_n[t_i, r_i].astype(np.float64)
    npig_r = npig[r_i]
    reached = np.searchsorted(RECALL_POINTS, n_tp / npig_r, side="right")
    before = np.where(n_tp == 1, 0, np.searchsorted(RECALL_POINTS, (n_tp - 1) / npig_r, side="right"))
    lengths = reached - before
    n = int(lengths.sum())
    if not n:
        return
    owner = np.repeat(np.arange(len(t_i)), lengths)
    j = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths) + before[owner]
    precision[t_i[owner], j, row_cls[r_i[owner]]] = pr[t_i[owner], r_i[owner]]
