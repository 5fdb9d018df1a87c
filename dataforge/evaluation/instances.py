"""Instance segmentation (COCO ``segm``) and keypoint (COCO OKS) evaluation.

Masks: COCOeval on the table of mask overlaps that TIDE's mask breakdown reads too
(:mod:`dataforge.evaluation.overlaps`, pycocotools' mask IoU), its arrays held to pycocotools'
bit for bit by the tests. Keypoints: faster-coco-eval with ``iouType="keypoints"``, held to
pycocotools within 1e-9. Semantic regions of the ground truth
(``"semantic": true``) are not objects and are left out; they are :mod:`semantic`'s.

Keypoints: OKS with per-point sigmas: the COCO person sigmas for 17-point categories, else the
``1 / K`` of every point that Ultralytics uses for its non-COCO pose sets, unless given. Per point,
the pixel error of predictions matched to an object (greedy by score, OKS >= 0.5) is reported too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataforge.errors import DataError, UsageError
from dataforge.evaluation.detection import STAT_NAMES, per_class_ap, run_cocoeval
from dataforge.evaluation.overlaps import Overlaps, coco_eval, overlaps

KEYPOINT_STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AP_medium",
    "AP_large",
    "AR",
    "AR50",
    "AR75",
    "AR_medium",
    "AR_large",
)

#: pycocotools' sigmas of COCO's 17 person keypoints (nose, eyes, ears, shoulders, elbows, wrists,
#: hips, knees, ankles)
COCO_PERSON_SIGMAS = [
    0.026,
    0.025,
    0.025,
    0.035,
    0.035,
    0.079,
    0.079,
    0.072,
    0.072,
    0.062,
    0.062,
    0.107,
    0.107,
    0.087,
    0.087,
    0.089,
    0.089,
]


def instance_ground_truth(gt: dict[str, Any]) -> dict[str, Any]:
    """``gt`` without its semantic regions (the same dict when it has none)."""
    anns = gt.get("annotations", [])
    if not any(a.get("semantic") for a in anns):
        return gt
    return {**gt, "annotations": [a for a in anns if not a.get("semantic")]}


def evaluate_masks(
    gt: dict[str, Any], predictions: list[dict[str, Any]], *, table: Overlaps | None = None
) -> dict[str, Any]:
    """COCO's 12 ``segm`` numbers, per-class AP and PR curves, for predictions with masks
    (``table``: their mask overlaps, when the caller has them)."""
    gt = instance_ground_truth(gt)
    bare = [a for a in gt["annotations"] if not a.get("segmentation")]
    if bare:
        a = bare[0]
        raise DataError(
            f"{len(bare)} ground-truth objects have no mask (first: annotation {a.get('id')} of image "
            f"{a.get('image_id')}); mask evaluation needs a mask on every object",
            hint="evaluate the boxes alone with --iou-type bbox",
        )
    o = table if table is not None else overlaps(gt, predictions, "segm")
    ev = coco_eval(o, [c["id"] for c in gt["categories"]])
    per_class, curves = per_class_ap(ev, gt, [c["id"] for c in gt["categories"]])
    return {
        "coco_stats": [float(v) for v in ev.stats[:12]],
        "coco_stat_names": list(STAT_NAMES),
        "per_class": per_class,
        "pr_curves": curves,
        "conventions": {
            "engine": "dataforge's vectorized COCOeval on mask overlaps (tests hold its arrays to pycocotools')",
            "iou": "mask IoU of the RLEs; crowd regions as COCOeval (intersection over the prediction)",
            "area": "ground truth 'area' field decides small/medium/large",
            "max_dets": [1, 10, 100],
            "missing_value": -1,
        },
    }


def keypoint_sigmas(gt: dict[str, Any], sigmas: list[float] | None) -> tuple[list[int], list[float], str]:
    """The keypoint categories of ``gt``, the sigmas to use and where they came from. COCOeval
    takes one sigma list, so every keypoint category must have the same number of points."""
    kp_cats = {c["id"]: c["keypoints"] for c in gt["categories"] if c.get("keypoints")}
    if not kp_cats:
        raise DataError("no category of the ground truth names keypoints (categories[].keypoints)")
    counts = {len(v) for v in kp_cats.values()}
    if len(counts) > 1:
        raise UsageError(
            f"keypoint categories with different point counts ({sorted(counts)}); COCO keypoint "
            "evaluation takes one sigma per point: evaluate them one at a time (--where category == ...)"
        )
    k = counts.pop()
    if sigmas is not None:
        if len(sigmas) != k or not all(np.isfinite(sigmas)) or min(sigmas) <= 0:
            raise UsageError(f"--kpt-sigmas needs {k} positive numbers (one per point), found {sigmas}")
        return sorted(kp_cats), [float(v) for v in sigmas], "given"
    if k == 17:
        return sorted(kp_cats), list(COCO_PERSON_SIGMAS), "COCO person sigmas"
    return (
        sorted(kp_cats),
        [1.0 / k] * k,
        f"1/K = {1.0 / k:g} for each of the {k} points (Ultralytics' default)",
    )


def keypoint_ground_truth(gt: dict[str, Any], cat_ids: list[int]) -> dict[str, Any]:
    """The instance ground truth of the keypoint categories; an object of theirs without keypoints
    has none labelled (``num_keypoints`` 0: COCOeval ignores it)."""
    k = len(next(c["keypoints"] for c in gt["categories"] if c["id"] == cat_ids[0]))
    keep = set(cat_ids)
    anns = []
    for a in instance_ground_truth(gt)["annotations"]:
        if a.get("category_id") not in keep:
            continue
        if not a.get("keypoints"):
            a = {**a, "keypoints": [0] * (3 * k), "num_keypoints": 0}
        elif "num_keypoints" not in a:
            a = {**a, "num_keypoints": int(sum(1 for v in a["keypoints"][2::3] if v > 0))}
        anns.append(a)
    return {**gt, "annotations": anns}


def evaluate_keypoints(
    gt: dict[str, Any], predictions: list[dict[str, Any]], sigmas: list[float] | None = None
) -> dict[str, Any]:
    """COCO's 10 keypoint numbers (OKS), per-class AP, and the pixel error per point."""
    cat_ids, used, origin = keypoint_sigmas(gt, sigmas)
    keep = set(cat_ids)
    stray = [p for p in predictions if p["category_id"] not in keep]
    if stray:
        raise DataError(
            f"{len(stray)} keypoint predictions are of categories without keypoints "
            f"(first: category {stray[0]['category_id']} on image {stray[0]['image_id']})"
        )
    kgt = keypoint_ground_truth(gt, cat_ids)
    ev = run_cocoeval(kgt, predictions, "keypoints", kpt_sigmas=used, cat_ids=cat_ids)
    per_class, curves = per_class_ap(ev, kgt, cat_ids, max_dets=0)
    names = next(c["keypoints"] for c in gt["categories"] if c["id"] == cat_ids[0])
    return {
        "coco_stats": [float(v) for v in ev.stats[:10]],
        "coco_stat_names": list(KEYPOINT_STAT_NAMES),
        "per_class": per_class,
        "pr_curves": curves,
        "per_keypoint": point_errors(kgt, predictions, used, names),
        "sigmas": used,
        "conventions": {
            "engine": "faster-coco-eval, iouType keypoints (tests hold it to pycocotools within 1e-9)",
            "similarity": "OKS: mean over labelled points of exp(-d^2 / (2 area (2 sigma)^2))",
            "sigmas": origin,
            "ignored": "ground-truth objects with no labelled point (num_keypoints 0)",
            "max_dets": [20],
            "per_keypoint": "matched pairs: greedy by score, OKS >= 0.5, per image and category",
            "missing_value": -1,
        },
    }


def oks_matrix(
    gt_points: np.ndarray, areas: np.ndarray, pred_points: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """COCOeval's object keypoint similarity, ``(P, G)``: predictions ``(P, K, 3)`` against
    objects ``(G, K, 3)`` that each have labelled points, with their ``areas`` ``(G,)``."""
    vis = gt_points[:, :, 2] > 0  # (G, K)
    d2 = ((pred_points[:, None, :, :2] - gt_points[None, :, :, :2]) ** 2).sum(axis=-1)  # (P, G, K)
    e = d2 / (2 * sigmas) ** 2 / (areas[None, :, None] + np.spacing(1)) / 2
    return (np.exp(-e) * vis[None]).sum(axis=-1) / vis.sum(axis=-1)[None]


def point_errors(
    gt: dict[str, Any], predictions: list[dict[str, Any]], sigmas: list[float], names: list[str]
) -> list[dict[str, Any]]:
    """Per point name: how many labelled points were matched, and their mean and median error in
    pixels. Each prediction (highest score first) takes the unmatched, non-crowd object of its
    image and category with labelled points that it has the highest OKS >= 0.5 with."""
    sig = np.asarray(sigmas, dtype=np.float64)
    k = len(names)
    by_key: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for a in gt["annotations"]:
        if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0:
            by_key.setdefault((a["image_id"], a["category_id"]), []).append(a)
    preds_by: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for p in predictions:
        if (p["image_id"], p["category_id"]) in by_key:
            preds_by.setdefault((p["image_id"], p["category_id"]), []).append(p)
    pairs_g: list[np.ndarray] = []
    pairs_d: list[np.ndarray] = []
    for key, preds in preds_by.items():
        objs = by_key[key]
        g = np.asarray([o["keypoints"] for o in objs], np.float64).reshape(len(objs), k, 3)
        preds = sorted(preds, key=lambda q: -q["score"])
        d = np.asarray([q["keypoints"] for q in preds], np.float64).reshape(len(preds), k, 3)
        sims = oks_matrix(g, np.asarray([o["area"] for o in objs], np.float64), d, sig)
        taken = np.zeros(len(objs), bool)
        for i in range(len(preds)):
            row = np.where(taken, -1.0, sims[i])
            j = int(row.argmax())
            if row[j] >= 0.5:
                taken[j] = True
                pairs_g.append(g[j])
                pairs_d.append(d[i])
    errors: list[np.ndarray] = [np.zeros(0)] * k
    if pairs_g:
        gg, dd = np.stack(pairs_g), np.stack(pairs_d)
        dist = np.hypot(dd[:, :, 0] - gg[:, :, 0], dd[:, :, 1] - gg[:, :, 1])
        errors = [dist[gg[:, j, 2] > 0, j] for j in range(k)]
    return [
        {
            "name": n,
            "matched": len(e),
            "mean_px": float(e.mean()) if len(e) else None,
            "median_px": float(np.median(e)) if len(e) else None,
        }
        for n, e in zip(names, errors, strict=True)
    ]
