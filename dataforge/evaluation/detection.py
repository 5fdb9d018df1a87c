"""Detection evaluation with COCOeval's exact semantics, plus VOC AP50 and a confusion matrix.

The COCO numbers come from faster-coco-eval (a C++ port of COCOeval whose results equal
pycocotools'); the tests hold every number to pycocotools within 1e-9. Before the engine sees the
data, ground-truth annotation ids are re-numbered 1..N (both engines read id 0 as "no match"), and
an empty prediction list is evaluated as "no detections" (pycocotools' ``loadRes`` crashes on it).

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

from dataforge.evaluation.registry import DetectionInputs, compute
from dataforge.metrics import box_iou, greedy_match, voc_ap

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
    summarized object."""
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


#: from this many predictions on, COCOeval's categories are split over two worker processes that
#: run beside the rest of the report (COCOeval evaluates each category on its own, so the merged
#: arrays are the same numbers); below it, forking costs more than it saves
PARALLEL_FROM = 50_000
_SHARED: dict[str, Any] = {}  # what the forked workers read (inherited, not pickled)


def _coco_part(cats: list[int]) -> tuple[np.ndarray, np.ndarray]:
    gt, preds = _SHARED["gt"], _SHARED["preds"]
    keep = set(cats)
    part = {**gt, "annotations": [a for a in gt["annotations"] if a["category_id"] in keep]}
    ev = run_cocoeval(part, [p for p in preds if p["category_id"] in keep], cat_ids=cats)
    return np.asarray(ev.eval["precision"]), np.asarray(ev.eval["recall"])


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


def _single_threaded() -> bool:
    """Forking is safe only from a process with no other thread (one could hold a lock the child
    would wait on forever): a caller with threads (FiftyOne's database client, a thread pool)
    gets the one-process run."""
    import threading

    return threading.active_count() == 1


class CocoJob:
    """COCOeval of boxes, started now and collected by :meth:`result`: on a large problem with
    two cores, its categories split in two forked processes (balanced by predictions) that run
    while the caller computes the rest of the report; otherwise run in :meth:`result`."""

    def __init__(self, gt: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
        import multiprocessing as mp

        from dataforge.runtime import usable_cores

        self.gt, self.predictions = gt, predictions
        self.cats = sorted(int(c["id"]) for c in gt["categories"])
        self.futures: list[Any] = []
        self.pool: Any = None
        if (
            len(predictions) >= PARALLEL_FROM
            and len(self.cats) >= 2
            and usable_cores() >= 2
            and "fork" in mp.get_all_start_methods()
            and _single_threaded()
        ):
            from concurrent.futures import ProcessPoolExecutor

            counts = dict.fromkeys(self.cats, 0)
            for p in predictions:
                counts[int(p["category_id"])] = counts.get(int(p["category_id"]), 0) + 1
            groups: list[list[int]] = [[], []]
            load = [0, 0]
            for c in sorted(self.cats, key=lambda c: -counts[c]):
                k = 0 if load[0] <= load[1] else 1
                groups[k].append(c)
                load[k] += counts[c]
            _SHARED.update(gt=gt, preds=predictions)
            self.pool = ProcessPoolExecutor(2, mp_context=mp.get_context("fork"))
            self.futures = [self.pool.submit(_coco_part, sorted(g)) for g in groups if g]
            self.groups = [sorted(g) for g in groups if g]

    def result(self) -> Any:
        """An object with COCOeval's ``eval`` (precision, recall) and ``stats`` (12 numbers)."""
        from types import SimpleNamespace

        if not self.futures:
            return run_cocoeval(self.gt, self.predictions)
        try:
            parts = [f.result() for f in self.futures]
        finally:
            self.pool.shutdown()
            _SHARED.clear()
        cats = [c for g in self.groups for c in g]
        order = np.argsort(cats, kind="stable")  # back to ascending category ids, as COCOeval
        precision = np.concatenate([p for p, _r in parts], axis=2)[:, :, order]
        recall = np.concatenate([r for _p, r in parts], axis=1)[:, order]
        return SimpleNamespace(
            eval={"precision": precision, "recall": recall}, stats=summarize(precision, recall)
        )


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
    coco: CocoJob | None = None,
) -> DetectionResult:
    """Every detection number for ``predictions`` (COCO results) against ``gt`` (a COCO dict);
    ``coco``: its COCOeval, already started (:class:`CocoJob`)."""
    job = coco or CocoJob(gt, predictions)
    voc, ious, matched = voc_and_matches(gt, predictions, iou_threshold)
    confusion = detection_confusion(
        gt, predictions, iou_threshold=iou_threshold, score_threshold=score_threshold
    )
    ev = job.result()
    stats = [float(s) for s in ev.stats[:12]]
    per_class, curves = per_class_ap(ev, gt, [c["id"] for c in gt["categories"]])
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
            "engine": "faster-coco-eval (COCOeval semantics; tests hold it to pycocotools within 1e-9)",
            "box_format": "COCO xywh, absolute pixels, no +1",
            "area": "ground truth 'area' field decides small/medium/large",
            "max_dets": [1, 10, 100],
            "iou_thresholds": "np.linspace(0.5, 0.95, 10)",
            "missing_value": -1,
            "voc": f"AP at IoU {iou_threshold}, greedy by score, crowd ground truth ignored, no +1",
        },
    )


def _arrays(anns: list[dict[str, Any]], with_score: bool) -> dict[str, np.ndarray]:
    """Columns of a list of COCO dicts: image, category, xyxy boxes, score or crowd flag."""
    box = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    box[:, 2:] = box[:, 2:] + box[:, :2]  # xywh -> xyxy
    out: dict[str, np.ndarray] = {
        "image": np.fromiter((a["image_id"] for a in anns), dtype=np.int64, count=len(anns)),
        "cat": np.fromiter((a["category_id"] for a in anns), dtype=np.int64, count=len(anns)),
        "box": box,
    }
    if with_score:
        out["score"] = np.fromiter((a["score"] for a in anns), dtype=np.float64, count=len(anns))
    else:
        out["crowd"] = np.fromiter((bool(a.get("iscrowd")) for a in anns), dtype=bool, count=len(anns))
    return out


def _groups(image_ids: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices per image id (each group in original order)."""
    if image_ids.size == 0:
        return {}
    order = np.argsort(image_ids, kind="mergesort")
    ids, starts = np.unique(image_ids[order], return_index=True)
    return dict(zip(ids.tolist(), np.split(order, starts[1:]), strict=True))


def _greedy(iou: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """greedy_match restricted to predictions that overlap some ground truth enough (the rest miss)."""
    n_gt, n_pred = iou.shape
    matched = np.full(n_pred, -1, dtype=np.int64)
    match_iou = np.zeros(n_pred, dtype=np.float64)
    if n_gt == 0 or n_pred == 0:
        return matched, match_iou
    cand = np.flatnonzero(iou.max(axis=0) >= threshold)
    if cand.size:
        sub_m, sub_iou = greedy_match(iou[:, cand], scores[cand], threshold)
        matched[cand], match_iou[cand] = sub_m, sub_iou
    return matched, match_iou


def voc_and_matches(
    gt: dict[str, Any], predictions: list[dict[str, Any]], iou_threshold: float
) -> tuple[dict[str, Any], dict[str, Any], DetectionInputs]:
    """VOC-style AP (11-point and all-point) per class at one IoU, the IoU of matched pairs, and
    the matching itself (the inputs of the registered extra metrics).

    Per image, a prediction may match only ground truth of its own class (greedy by score); a
    prediction that misses but overlaps a crowd region of its class enough is neither TP nor FP.
    """
    names = {c["id"]: c["name"] for c in gt["categories"]}
    g = _arrays(gt.get("annotations", []), with_score=False)
    d = _arrays(predictions, with_score=True)
    g_by, d_by = _groups(g["image"]), _groups(d["image"])
    is_tp = np.zeros(len(predictions), dtype=np.int8)
    counted = np.zeros(len(predictions), dtype=bool)  # False: on a crowd region, not scored
    matched_ious: list[np.ndarray] = []
    errors: dict[int, tuple[int, int]] = {}  # image -> (false positives with score >= 0.5, missed objects)
    for img, gi in g_by.items():
        if img not in d_by:
            errors[img] = (0, int((~g["crowd"][gi]).sum()))
    for img, di in d_by.items():
        gi = g_by.get(img, np.zeros(0, dtype=np.int64))
        regular, crowd = gi[~g["crowd"][gi]], gi[g["crowd"][gi]]
        same = g["cat"][regular][:, None] == d["cat"][di][None, :]
        iou = box_iou(g["box"][regular], d["box"][di]) * same
        m, m_iou = _greedy(iou, d["score"][di], iou_threshold)
        is_tp[di] = m >= 0
        matched_ious.append(m_iou[m >= 0])
        counted[di] = True
        if crowd.size:
            c_iou = box_iou(g["box"][crowd], d["box"][di]) * (
                g["cat"][crowd][:, None] == d["cat"][di][None, :]
            )
            counted[di[(m < 0) & (c_iou.max(axis=0) >= iou_threshold)]] = False
    n_pos = np.bincount(g["cat"][~g["crowd"]], minlength=max(names, default=0) + 1) if len(g["cat"]) else None
    per_class = {}
    for cid in sorted(names):
        positives = int(n_pos[cid]) if n_pos is not None and cid < len(n_pos) else 0
        if positives == 0:
            per_class[names[cid]] = {"AP50_all_point": -1.0, "AP50_11_point": -1.0, "ground_truth": 0}
            continue
        sel = np.flatnonzero((d["cat"] == cid) & counted)
        order = sel[np.argsort(-d["score"][sel], kind="mergesort")]
        tp = np.cumsum(is_tp[order])
        fp = np.cumsum(1 - is_tp[order])
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
    arr = np.concatenate(matched_ious) if matched_ious else np.zeros(0)
    ious = {
        "iou_threshold": iou_threshold,
        "count": int(arr.size),
        "mean": float(arr.mean()) if arr.size else None,
        "histogram": np.histogram(arr, bins=10, range=(iou_threshold, 1.0))[0].tolist() if arr.size else [],
        "bin_edges": np.linspace(iou_threshold, 1.0, 11).tolist(),
    }
    files = {img["id"]: img.get("file_name") for img in gt.get("images", [])}
    worst = sorted(errors.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))[:20]
    ious["worst_images"] = [
        {"image_id": i, "file_name": files.get(i), "false_positives": fp, "missed": fn}
        for i, (fp, fn) in worst
        if fp + fn
    ]
    matched = DetectionInputs(
        gt=gt,
        predictions=predictions,
        iou_threshold=iou_threshold,
        true_positive=is_tp.astype(bool),
        scored=counted,
        scores=d["score"],
        positives=int((~g["crowd"]).sum()) if len(g["cat"]) else 0,
    )
    return voc, ious, matched


def detection_confusion(
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
) -> dict[str, Any]:
    """Class-agnostic matching per image, so cross-class confusions show.

    Rows are ground truth, columns are predictions (FiftyOne's layout; Ultralytics transposes it),
    each with a last ``background`` entry: ``[gt, background]`` counts missed objects (FN),
    ``[background, pred]`` counts detections of nothing (FP). Predictions below
    ``score_threshold`` are dropped first; crowd ground truth is left out. Per image, predictions
    (highest score first) take the unmatched ground truth with the highest IoU >= ``iou_threshold``.
    """
    cats = sorted(c["id"] for c in gt["categories"])
    names = {c["id"]: c["name"] for c in gt["categories"]}
    lookup = np.full(max(cats, default=0) + 1 - min(min(cats, default=0), 0), -1, dtype=np.int64)
    offset = -min(min(cats, default=0), 0)
    for i, cid in enumerate(cats):
        lookup[cid + offset] = i
    bg = len(cats)
    matrix = np.zeros((bg + 1, bg + 1), dtype=np.int64)
    g = _arrays([a for a in gt.get("annotations", []) if not a.get("iscrowd")], with_score=False)
    d = _arrays([p for p in predictions if p["score"] >= score_threshold], with_score=True)
    g_cls, d_cls = lookup[g["cat"] + offset], lookup[d["cat"] + offset]
    g_by, d_by = _groups(g["image"]), _groups(d["image"])
    empty = np.zeros(0, dtype=np.int64)
    for img in set(g_by) | set(d_by):
        gi, di = g_by.get(img, empty), d_by.get(img, empty)
        m, _ = _greedy(box_iou(g["box"][gi], d["box"][di]), d["score"][di], iou_threshold)
        hit = m >= 0
        np.add.at(matrix, (g_cls[gi[m[hit]]], d_cls[di[hit]]), 1)
        np.add.at(matrix, (np.full((~hit).sum(), bg), d_cls[di[~hit]]), 1)
        missed = np.ones(gi.size, dtype=bool)
        missed[m[hit]] = False
        np.add.at(matrix, (g_cls[gi[missed]], np.full(missed.sum(), bg)), 1)
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
