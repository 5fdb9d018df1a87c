"""``evaluate --explain``: every setting that changes a detection number, and the same predictions
scored the ways users most often compare against, so "why does tool X say something else"
answers itself.

The Ultralytics-style numbers follow ``ultralytics.utils.metrics`` (8.x) as its validator computes
them: per image, pairs of a prediction and a ground truth of its class at IoU >= each threshold: each
prediction keeps its best-overlapping one, then each ground truth its highest-scoring prediction; per class the predictions in score order; AP the area under the
precision envelope by the trapezoidal rule on 101 recall points, with precision 1 at recall 0; the
mean over classes that have a ground truth (one with no prediction counts 0). The envelope runs on
to (recall 1, precision 0), so the line from the highest recall reached down to it adds area that
COCO's 101 points (precision 0 past the highest recall) do not. No per-image
prediction limit, no area ranges, crowd regions left out (its COCO conversion drops them). Its
validator also keeps only predictions scoring >= 0.001 after its own NMS (at most 300 per image):
that part belongs to the model's output, not to the metric. Written from Ultralytics' source, not
run against it (the package is not in the lock).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataforge.evaluation.overlaps import Overlaps

IOUS = np.linspace(0.5, 0.95, 10)


def _trapz_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    y = np.interp(x, mrec, mpre)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x) / 2))


def ultralytics_style(
    gt: dict[str, Any], predictions: list[dict[str, Any]], table: Overlaps | None = None
) -> dict[str, float]:
    """mAP50-95 and mAP50 the way Ultralytics' validator computes them (module docstring), from
    the report's table of overlaps (``table``, computed when not given)."""
    from dataforge.evaluation.instances import instance_ground_truth
    from dataforge.evaluation.overlaps import overlaps

    gt = instance_ground_truth(gt)
    o = table if table is not None else overlaps(gt, predictions)
    # each prediction's place among all, images apart, by score within its image (its NMS output's order)
    rank = o.image_rank()
    place = np.empty(len(rank), dtype=np.int64)
    place[np.lexsort((rank, o.d_img))] = np.arange(len(rank))
    cand = np.flatnonzero(
        ~o.g_crowd[o.p_gt]
        & (o.d_cls[o.p_det] == o.g_cls[o.p_gt])
        & (o.p_iou >= IOUS[0])
        & (rank[o.p_det] >= 0)
    )
    correct = np.zeros((len(predictions), len(IOUS)), dtype=bool)
    for t, thr in enumerate(IOUS):
        pairs = cand[o.p_iou[cand] >= thr]
        # by IoU, highest first; of equal ones, in (ground truth, prediction) order as np.nonzero gives them
        pairs = pairs[np.lexsort((place[o.p_det[pairs]], o.p_gt[pairs], -o.p_iou[pairs]))]
        # each prediction once (its best-overlapping ground truth), then each ground truth once:
        # the first in prediction order, i.e. the highest-scoring (as Ultralytics does)
        pairs = pairs[np.unique(place[o.p_det[pairs]], return_index=True)[1]]
        pairs = pairs[np.unique(o.p_gt[pairs], return_index=True)[1]]
        correct[o.p_det[pairs], t] = True
    order = np.argsort(-o.d_score, kind="stable")
    classes, counts = np.unique(o.g_cls[~o.g_crowd], return_counts=True)
    ap = np.zeros((len(classes), len(IOUS)))
    for row, (c, n) in enumerate(zip(classes.tolist(), counts.tolist(), strict=True)):
        mine = order[o.d_cls[order] == c]
        if not len(mine):
            continue
        tp = np.cumsum(correct[mine], axis=0)
        fp = np.cumsum(~correct[mine], axis=0)
        for t in range(len(IOUS)):
            ap[row, t] = _trapz_ap(tp[:, t] / (n + 1e-16), tp[:, t] / (tp[:, t] + fp[:, t]))
    return {
        "mAP50-95": float(ap.mean()) if len(ap) else 0.0,
        "mAP50": float(ap[:, 0].mean()) if len(ap) else 0.0,
    }


def explain(
    report: dict[str, Any],
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    table: Overlaps | None = None,
) -> dict[str, Any]:
    """The settings behind the detection numbers, and the same predictions scored by other
    conventions (``table``: the predictions' overlaps, when the caller has them)."""
    d = report["detection"]
    objects = [a for a in gt["annotations"] if not a.get("semantic")]
    crowd = sum(1 for a in objects if a.get("iscrowd"))
    box_area = sum(
        1
        for a in objects
        if isinstance(a.get("area"), (int, float))
        and abs(a["area"] - a["bbox"][2] * a["bbox"][3]) <= 1e-6 * max(1.0, a["area"])
    )
    per_image_class: dict[tuple[int, int], int] = {}
    for p in predictions:
        key = (int(p["image_id"]), int(p["category_id"]))
        per_image_class[key] = per_image_class.get(key, 0) + 1
    beyond = sum(n - 100 for n in per_image_class.values() if n > 100)
    predicted = {int(p["image_id"]) for p in predictions}
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    used = sorted({int(p["category_id"]) for p in predictions})
    settings = {
        "iou_thresholds": "AP: 0.50:0.05:0.95 (10 thresholds, averaged); AP50, AP75: one each",
        "matching": "per image and class, predictions in score order each take the unmatched ground truth "
        "they overlap most (COCOeval); a class never matches another (not class-agnostic)",
        "max_detections": f"1, 10, 100 per image and class (AP: 100); {beyond} predictions lie beyond the "
        "100th of their image and class and are not counted",
        "area_ranges": "small < 32^2, medium 32^2-96^2, large > 96^2 pixels, by the ground truth's 'area' "
        f"field: equal to its box's w*h for {box_area} of {len(objects)} objects (the rest: the segmentation's "
        "area, as COCO files give it)",
        "crowd": f"{crowd} crowd regions: a prediction on one (intersection over the prediction's area) "
        "neither counts nor hurts, at any number of predictions",
        "score_filter": "none: every prediction counts (a low-score one that finds an object adds recall); "
        f"--score {d['confusion']['score_threshold']} applies to the confusion matrix only",
        "category_mapping": "predictions' category_id read as the ground truth's ids: "
        + ", ".join(f"{c}={names.get(c, '?')}" for c in used),
        "images": f"{len(gt['images'])} evaluated, {len({int(i['id']) for i in gt['images']} - predicted)} "
        "of them without any prediction (their objects count as missed)",
        "box_format": "COCO xywh in absolute pixels, continuous coordinates, no +1",
    }
    ul = ultralytics_style(gt, predictions, table)
    voc = d["voc"]
    conventions = [
        {
            "name": "COCO AP (pycocotools / faster-coco-eval)",
            "value": d["coco_stats"][0],
            "why": "10 IoU thresholds, 101-point interpolated envelope, max 100 per image and class",
        },
        {"name": "COCO AP50", "value": d["coco_stats"][1], "why": "the same at IoU 0.5 only"},
        {
            "name": f"VOC all-point AP{int(voc['iou_threshold'] * 100)} (VOC2010+)",
            "value": voc["mAP50_all_point"],
            "why": "area under the whole envelope, not 101 points; crowds ignored; no detection limit",
        },
        {
            "name": f"VOC 11-point AP{int(voc['iou_threshold'] * 100)} (VOC2007)",
            "value": voc["mAP50_11_point"],
            "why": "mean of the envelope at recall 0, 0.1, ..., 1",
        },
        {
            "name": "Ultralytics-style mAP50-95",
            "value": ul["mAP50-95"],
            "why": "pairs matched by IoU (not by score); trapezoids on 101 points with precision 1 at "
            "recall 0 and a straight line from the highest recall down to precision 0 at recall 1 (area "
            "COCO does not count); no per-image limit; crowds dropped",
        },
        {"name": "Ultralytics-style mAP50", "value": ul["mAP50"], "why": "the same at IoU 0.5"},
    ]
    if "errors" in d:
        conventions.append(
            {
                "name": "TIDE AP50",
                "value": d["errors"]["ap"],
                "why": "max 100 per image over all classes, a class with predictions only counts 0",
            }
        )
    return {"settings": settings, "conventions": conventions}
