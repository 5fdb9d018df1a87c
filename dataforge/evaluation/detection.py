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
import copy
import io
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    conventions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "coco_stats": self.coco_stats,
            "coco_stat_names": list(STAT_NAMES),
            "per_class": self.per_class,
            "pr_curves": self.pr_curves,
            "voc": self.voc,
            "confusion": self.confusion,
            "iou_of_matches": self.iou_of_matches,
            "conventions": self.conventions,
        }


def _reindexed(gt: dict[str, Any]) -> dict[str, Any]:
    """A copy of the ground truth with annotation ids 1..N (id 0 breaks COCOeval's matching)."""
    out = {k: v for k, v in gt.items() if k != "annotations"}
    out["annotations"] = [{**a, "id": i + 1} for i, a in enumerate(gt.get("annotations", []))]
    out.setdefault("info", {})
    out.setdefault("licenses", [])
    return out


def run_cocoeval(gt: dict[str, Any], predictions: list[dict[str, Any]]) -> Any:
    """Run faster-coco-eval's COCOeval (bbox); returns the evaluated, accumulated, summarized object."""
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(_reindexed(gt))
        coco_dt = (
            coco_gt.loadRes(copy.deepcopy(predictions)) if predictions else _empty_results(COCO, coco_gt)
        )
        ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


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
) -> DetectionResult:
    """Every detection number for ``predictions`` (COCO results) against ``gt`` (a COCO dict)."""
    ev = run_cocoeval(gt, predictions)
    stats = [float(s) for s in ev.stats[:12]]
    names = {c["id"]: c["name"] for c in gt["categories"]}
    cat_ids = sorted(names)
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    recall = np.asarray(ev.eval["recall"])  # [T, K, A, M]
    per_class = []
    curves: dict[str, dict[str, list[float]]] = {}
    rec_thrs = np.linspace(0, 1, 101)
    for k, cid in enumerate(cat_ids):
        p = precision[:, :, k, 0, -1]
        r = recall[:, k, 0, -1]
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
    voc, ious = voc_and_matches(gt, predictions, iou_threshold)
    confusion = detection_confusion(
        gt, predictions, iou_threshold=iou_threshold, score_threshold=score_threshold
    )
    return DetectionResult(
        coco_stats=stats,
        per_class=per_class,
        pr_curves=curves,
        voc=voc,
        confusion=confusion,
        iou_of_matches=ious,
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


def _by_image_class(anns: list[dict[str, Any]]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    out: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for a in anns:
        out[(a["image_id"], a["category_id"])].append(a)
    return out


def _xyxy(anns: list[dict[str, Any]]) -> np.ndarray:
    b = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    b[:, 2:] += b[:, :2]
    return b


def voc_and_matches(
    gt: dict[str, Any], predictions: list[dict[str, Any]], iou_threshold: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """VOC-style AP (11-point and all-point) per class at one IoU, and the IoU of matched pairs."""
    names = {c["id"]: c["name"] for c in gt["categories"]}
    gts = _by_image_class(gt.get("annotations", []))
    preds = _by_image_class(predictions)
    per_class = {}
    matched_ious: list[float] = []
    for cid in sorted(names):
        keys = {k for k in gts if k[1] == cid} | {k for k in preds if k[1] == cid}
        n_pos = sum(1 for k in keys for a in gts.get(k, []) if not a.get("iscrowd"))
        scored: list[tuple[float, int]] = []  # (score, is_tp)
        for key in keys:
            g = [a for a in gts.get(key, []) if not a.get("iscrowd")]
            crowd = [a for a in gts.get(key, []) if a.get("iscrowd")]
            d = preds.get(key, [])
            if not d:
                continue
            scores = np.array([p["score"] for p in d], dtype=np.float64)
            m, m_iou = greedy_match(box_iou(_xyxy(g), _xyxy(d)), scores, iou_threshold)
            crowd_hit = (
                (box_iou(_xyxy(crowd), _xyxy(d)).max(axis=0) >= iou_threshold)
                if crowd
                else np.zeros(len(d), bool)
            )
            for j in range(len(d)):
                if m[j] >= 0:
                    scored.append((float(scores[j]), 1))
                    matched_ious.append(float(m_iou[j]))
                elif not crowd_hit[j]:  # a detection on a crowd region is neither TP nor FP
                    scored.append((float(scores[j]), 0))
        if n_pos == 0:
            per_class[names[cid]] = {"AP50_all_point": -1.0, "AP50_11_point": -1.0, "ground_truth": 0}
            continue
        scored.sort(key=lambda t: -t[0])
        tp = np.cumsum([t[1] for t in scored]) if scored else np.zeros(0)
        fp = np.cumsum([1 - t[1] for t in scored]) if scored else np.zeros(0)
        rec = tp / n_pos
        prec = tp / np.maximum(tp + fp, 1e-12)
        per_class[names[cid]] = {
            "AP50_all_point": voc_ap(rec, prec),
            "AP50_11_point": voc_ap(rec, prec, eleven_point=True),
            "ground_truth": n_pos,
        }
    valid = [v for v in per_class.values() if v["ground_truth"] > 0]
    voc = {
        "iou_threshold": iou_threshold,
        "mAP50_all_point": float(np.mean([v["AP50_all_point"] for v in valid])) if valid else -1.0,
        "mAP50_11_point": float(np.mean([v["AP50_11_point"] for v in valid])) if valid else -1.0,
        "per_class": per_class,
    }
    arr = np.array(matched_ious)
    ious = {
        "iou_threshold": iou_threshold,
        "count": int(arr.size),
        "mean": float(arr.mean()) if arr.size else None,
        "histogram": np.histogram(arr, bins=10, range=(iou_threshold, 1.0))[0].tolist() if arr.size else [],
        "bin_edges": np.linspace(iou_threshold, 1.0, 11).tolist(),
    }
    return voc, ious


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
    index = {cid: i for i, cid in enumerate(cats)}
    bg = len(cats)
    matrix = np.zeros((bg + 1, bg + 1), dtype=np.int64)
    g_by_img: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in gt.get("annotations", []):
        if not a.get("iscrowd"):
            g_by_img[a["image_id"]].append(a)
    p_by_img: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for p in predictions:
        if p["score"] >= score_threshold:
            p_by_img[p["image_id"]].append(p)
    for img in set(g_by_img) | set(p_by_img):
        g, d = g_by_img.get(img, []), p_by_img.get(img, [])
        if d and g:
            m, _ = greedy_match(box_iou(_xyxy(g), _xyxy(d)), [p["score"] for p in d], iou_threshold)
        else:
            m = np.full(len(d), -1)
        hit = set()
        for j, p in enumerate(d):
            if m[j] >= 0:
                matrix[index[g[m[j]]["category_id"]], index[p["category_id"]]] += 1
                hit.add(int(m[j]))
            else:
                matrix[bg, index[p["category_id"]]] += 1
        for i, a in enumerate(g):
            if i not in hit:
                matrix[index[a["category_id"]], bg] += 1
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
