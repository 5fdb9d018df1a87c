"""Detection evaluation with COCOeval's exact semantics, plus VOC AP50 and a confusion matrix.

Boxes: every number comes from one table of overlaps (:mod:`dataforge.evaluation.overlaps`):
COCOeval's matching and accumulation, vectorized, whose arrays equal pycocotools' (the tests hold
them to it), VOC AP50, the confusion matrices and TIDE's breakdown. Masks and keypoints:
faster-coco-eval (a C++ port of COCOeval), through :func:`run_cocoeval`; before it sees the data,
ground-truth annotation ids are re-numbered 1..N (it reads id 0 as "no match"), and an empty
prediction list is evaluated as "no detections" (pycocotools' ``loadRes`` crashes on it).

Conventions (also written into every report):

* boxes are COCO xywh in absolute pixels, continuous coordinates, no +1;
* area ranges use the ground truth's ``area`` field (segmentation area in COCO files), as COCOeval;
* maxDets 1/10/100, applied per image and category; IoU thresholds ``np.linspace(.5, .95, 10)``;
* a statistic with nothing to measure is -1 (COCOeval's sentinel).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataforge.evaluation.overlaps import Overlaps, coco_eval, greedy, index_of, overlaps
from dataforge.evaluation.registry import DetectionInputs, compute
from dataforge.metrics import voc_ap

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


@dataclass
class DetectionResult:
    coco_stats: list[float]
    per_class: list[dict[str, Any]]
    pr_curves: dict[str, dict[str, list[float]]]
    voc: dict[str, Any]
    confusion: dict[str, Any]
    iou_of_matches: dict[str, Any]
    worst_images: list[dict[str, Any]] = field(default_factory=list)
    conventions: dict[str, Any] = field(default_factory=dict)
    #: the registered extra metrics (``dataforge/evaluation/metrics/``), by name
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "coco_stats": self.coco_stats,
            "coco_stat_names": list(STAT_NAMES),
            "per_class": self.per_class,
            "pr_curves": self.pr_curves,
            "voc": self.voc,
            "confusion": self.confusion,
            "iou_of_matches": self.iou_of_matches,
            "worst_images": self.worst_images,
            "conventions": self.conventions,
            "metrics": self.metrics,
        }


def _reindexed(gt: dict[str, Any]) -> dict[str, Any]:
    """The ground truth with annotation ids 1..N when its ids are not already unique positive ints
    (id 0 breaks COCOeval's matching); otherwise the same dict."""
    anns = gt.get("annotations", [])
    ids = [a.get("id") for a in anns]
    if (
        not ({type(i) for i in ids} - {int})
        and len(set(ids)) == len(ids)
        and (not ids or min(ids) > 0)
        and "info" in gt
        and "licenses" in gt
    ):
        return gt
    out = {k: v for k, v in gt.items() if k != "annotations"}
    out["annotations"] = [{**a, "id": i + 1} for i, a in enumerate(gt.get("annotations", []))]
    out.setdefault("info", {})
    out.setdefault("licenses", [])
    return out


def run_cocoeval(
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    iou_type: str = "bbox",
    *,
    kpt_sigmas: list[float] | None = None,
    cat_ids: list[int] | None = None,
) -> Any:
    """Run faster-coco-eval's COCOeval (``bbox``, ``segm`` or ``keypoints``, with ``kpt_sigmas``
    for the last; ``cat_ids`` restricts the categories); returns the evaluated, accumulated,
    summarized object. The report runs keypoints through it; the tests run boxes and masks too, a
    second engine beside dataforge's own."""
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(_reindexed(gt))
        # loadRes adds keys (id, area, iscrowd, segmentation) to the dicts it is given; the callers'
        # prediction dicts are dataforge's own, and nothing downstream minds the extra keys.
        coco_dt = coco_gt.loadRes(predictions) if predictions else _empty_results(COCO, coco_gt)
        kwargs = {"kpt_oks_sigmas": kpt_sigmas} if iou_type == "keypoints" else {}
        ev = COCOeval_faster(
            coco_gt, coco_dt, iouType=iou_type, print_function=lambda *a, **k: None, **kwargs
        )
        if cat_ids is not None:
            ev.params.catIds = sorted(cat_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def per_class_ap(
    ev: Any, gt: dict[str, Any], cat_ids: list[int], max_dets: int = -1
) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[float]]]]:
    """Per category of an evaluated COCOeval: AP (IoU .50:.95), AP50, AR at the last maxDets, over
    all areas; and the precision-recall curves at the first and sixth IoU threshold."""
    names = {c["id"]: c["name"] for c in gt["categories"]}
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    recall = np.asarray(ev.eval["recall"])  # [T, K, A, M]
    per_class = []
    curves: dict[str, dict[str, list[float]]] = {}
    rec_thrs = np.linspace(0, 1, 101)
    for k, cid in enumerate(sorted(cat_ids)):
        p = precision[:, :, k, 0, max_dets]
        r = recall[:, k, 0, max_dets]
        ap = float(p[p > -1].mean()) if np.any(p > -1) else -1.0
        ap50 = float(p[0][p[0] > -1].mean()) if np.any(p[0] > -1) else -1.0
        ar = float(r[r > -1].mean()) if np.any(r > -1) else -1.0
        per_class.append({"category_id": cid, "name": names[cid], "AP": ap, "AP50": ap50, "AR100": ar})
        if np.any(p[0] > -1):
            curves[names[cid]] = {
                "recall": rec_thrs.tolist(),
                "precision_iou50": p[0].tolist(),
                "precision_iou75": p[5].tolist(),
            }
    return per_class, curves


def _empty_results(coco_cls: Any, coco_gt: Any) -> Any:
    dt = coco_cls()
    dt.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    dt.createIndex()
    return dt


def evaluate_detections(
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    table: Overlaps | None = None,
) -> DetectionResult:
    """Every detection number for ``predictions`` (COCO results) against ``gt`` (a COCO dict);
    ``table``: their overlaps, when the caller has them."""
    o = table if table is not None else overlaps(gt, predictions)
    cat_ids = [c["id"] for c in gt["categories"]]
    ev = coco_eval(o, cat_ids)
    voc, ious, matched = voc_and_matches(gt, predictions, iou_threshold, table=o)
    confusion = detection_confusion(
        gt, predictions, iou_threshold=iou_threshold, score_threshold=score_threshold, table=o
    )
    stats = [float(s) for s in ev.stats[:12]]
    per_class, curves = per_class_ap(ev, gt, cat_ids)
    worst = ious.pop("worst_images")
    metrics = compute("detection", matched)
    return DetectionResult(
        coco_stats=stats,
        per_class=per_class,
        pr_curves=curves,
        voc=voc,
        confusion=confusion,
        iou_of_matches=ious,
        worst_images=worst,
        metrics=metrics,
        conventions={
            "engine": "dataforge's vectorized COCOeval (tests hold its arrays to pycocotools')",
            "box_format": "COCO xywh, absolute pixels, no +1",
            "area": "ground truth 'area' field decides small/medium/large",
            "max_dets": [1, 10, 100],
            "iou_thresholds": "np.linspace(0.5, 0.95, 10)",
            "missing_value": -1,
            "voc": f"AP at IoU {iou_threshold}, greedy by score, crowd ground truth ignored, no +1",
        },
    )


def _matches(o: Overlaps, rank: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Greedy matching by score within each image over ``pairs`` (all valid), ties to the earlier
    annotation: per prediction, its pair (-1: none)."""
    dets, took = greedy(rank, pairs, o, np.ones((1, len(pairs)), dtype=bool), ties="first")
    pair_of = np.full(len(o.d_cls), -1, dtype=np.int64)
    pair_of[dets] = took[0]
    return pair_of


def voc_and_matches(
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    iou_threshold: float,
    *,
    table: Overlaps | None = None,
) -> tuple[dict[str, Any], dict[str, Any], DetectionInputs]:
    """VOC-style AP (11-point and all-point) per class at one IoU, the IoU of matched pairs, the
    images with the most errors, and the matching itself (the inputs of the registered extra
    metrics).

    Per image, a prediction may match only ground truth of its own class (greedy by score); a
    prediction that misses but overlaps a crowd region of its class enough is neither TP nor FP.
    """
    o = table if table is not None else overlaps(gt, predictions)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    rank = o.image_rank()
    same = o.d_cls[o.p_det] == o.g_cls[o.p_gt]
    crowd = o.g_crowd[o.p_gt]
    pair_of = _matches(
        o, rank, np.flatnonzero(same & ~crowd & (o.p_iou >= iou_threshold) & (rank[o.p_det] >= 0))
    )
    is_tp = pair_of >= 0
    counted = o.d_img >= 0  # False: on a crowd region, not scored
    on_crowd = o.p_det[same & crowd & (o.p_plain >= iou_threshold)]
    counted[on_crowd[~is_tp[on_crowd]]] = False
    regular = ~o.g_crowd
    per_class = {}
    scored = np.flatnonzero(counted)
    order = scored[np.lexsort((-o.d_score[scored], o.d_cls[scored]))]
    cls_sorted = o.d_cls[order]
    positives_of = dict(zip(*np.unique(o.g_cls[regular], return_counts=True), strict=True))
    for cid in sorted(names):
        positives = int(positives_of.get(cid, 0))
        if positives == 0:
            per_class[names[cid]] = {"AP50_all_point": -1.0, "AP50_11_point": -1.0, "ground_truth": 0}
            continue
        rows = order[np.searchsorted(cls_sorted, cid) : np.searchsorted(cls_sorted, cid, side="right")]
        tp = np.cumsum(is_tp[rows])
        fp = np.cumsum(~is_tp[rows])
        rec = tp / positives
        prec = tp / np.maximum(tp + fp, 1e-12)
        per_class[names[cid]] = {
            "AP50_all_point": voc_ap(rec, prec),
            "AP50_11_point": voc_ap(rec, prec, eleven_point=True),
            "ground_truth": positives,
        }
    valid = [v for v in per_class.values() if v["ground_truth"] > 0]
    voc = {
        "iou_threshold": iou_threshold,
        "mAP50_all_point": float(np.mean([v["AP50_all_point"] for v in valid])) if valid else -1.0,
        "mAP50_11_point": float(np.mean([v["AP50_11_point"] for v in valid])) if valid else -1.0,
        "per_class": per_class,
    }
    arr = o.p_iou[pair_of[is_tp]]
    ious = {
        "iou_threshold": iou_threshold,
        "count": int(arr.size),
        "mean": float(arr.mean()) if arr.size else None,
        "histogram": np.histogram(arr, bins=10, range=(iou_threshold, 1.0))[0].tolist() if arr.size else [],
        "bin_edges": np.linspace(iou_threshold, 1.0, 11).tolist(),
    }
    # per image: false positives scored >= 0.5, and objects no prediction matched
    n_img = o.n_images
    false_pos = np.bincount(o.d_img[counted & ~is_tp & (o.d_score >= 0.5)], minlength=n_img)
    found = np.zeros(len(o.g_cls), dtype=bool)
    found[o.p_gt[pair_of[is_tp]]] = True
    missed = np.bincount(o.g_img[regular & ~found & (o.g_img >= 0)], minlength=n_img)
    total = false_pos + missed
    worst = [int(k) for k in np.lexsort((o.image_ids, -total))[:20] if total[k]]
    files = [img.get("file_name") for img in gt.get("images", [])]
    ious["worst_images"] = [
        {
            "image_id": int(o.image_ids[k]),
            "file_name": files[k],
            "false_positives": int(false_pos[k]),
            "missed": int(missed[k]),
        }
        for k in worst
    ]
    matched = DetectionInputs(
        gt=gt,
        predictions=predictions,
        iou_threshold=iou_threshold,
        true_positive=is_tp,
        scored=counted,
        scores=o.d_score,
        positives=int(regular.sum()),
    )
    return voc, ious, matched


def detection_confusion(
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    table: Overlaps | None = None,
    keep: np.ndarray | None = None,
) -> dict[str, Any]:
    """Class-agnostic matching per image, so cross-class confusions show.

    Rows are ground truth, columns are predictions (FiftyOne's layout; Ultralytics transposes it),
    each with a last ``background`` entry: ``[gt, background]`` counts missed objects (FN),
    ``[background, pred]`` counts detections of nothing (FP). Predictions below
    ``score_threshold`` (or outside ``keep``, a mask) are dropped first; crowd ground truth is left
    out. Per image, predictions (highest score first) take the unmatched ground truth with the
    highest IoU >= ``iou_threshold``.
    """
    o = table if table is not None else overlaps(gt, predictions)
    cats = sorted(c["id"] for c in gt["categories"])
    names = {c["id"]: c["name"] for c in gt["categories"]}
    bg = len(cats)
    kept = o.d_score >= score_threshold
    if keep is not None:
        kept &= keep
    rank = o.image_rank(kept)
    pair_of = _matches(
        o, rank, np.flatnonzero(~o.g_crowd[o.p_gt] & (o.p_iou >= iou_threshold) & (rank[o.p_det] >= 0))
    )
    lookup = np.array(cats, dtype=np.int64)
    g_cls, d_cls = index_of(o.g_cls, lookup), index_of(o.d_cls, lookup)
    g_cls[g_cls < 0], d_cls[d_cls < 0] = bg, bg  # a class gt does not list: background's row
    hit = np.flatnonzero(pair_of >= 0)
    found = np.zeros(len(o.g_cls), dtype=bool)
    found[o.p_gt[pair_of[hit]]] = True
    pred_row = np.full(len(o.d_cls), bg, dtype=np.int64)  # background: a detection of nothing
    pred_row[hit] = g_cls[o.p_gt[pair_of[hit]]]
    size = bg + 1
    cells = np.r_[
        pred_row[kept] * size + d_cls[kept],
        g_cls[~o.g_crowd & ~found] * size + bg,
    ]
    matrix = np.bincount(cells, minlength=size * size).reshape(size, size).astype(np.int64)
    labels = [names[c] for c in cats] + ["background"]
    per_class = []
    for i, cid in enumerate(cats):
        tp = int(matrix[i, i])
        per_class.append(
            {
                "name": names[cid],
                "TP": tp,
                "FP": int(matrix[:, i].sum() - tp),
                "FN": int(matrix[i, :].sum() - tp),
            }
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.nan_to_num(matrix / matrix.sum(axis=1, keepdims=True))
    return {
        "labels": labels,
        "rows": "ground truth",
        "columns": "predictions",
        "iou_threshold": iou_threshold,
        "score_threshold": score_threshold,
        "matrix": matrix.tolist(),
        "normalized_by_row": norm.tolist(),
        "per_class": per_class,
    }
