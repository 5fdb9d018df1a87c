"""Put a store's images, ground truth and predictions into FiftyOne, and run FiftyOne's own evaluation.

The dataset is persistent and keyed by image file path, so running again updates it. Per sample,
``ground_truth`` and ``predictions`` hold the task's labels in FiftyOne's own types:

- detection: ``fo.Detections`` with FiftyOne's relative ``[x, y, w, h]`` boxes (converted by
  ``dataforge.boxes``) and, for objects with masks, ``mask``: the instance mask cropped to the box
  (FiftyOne's convention; the box is then the whole pixels that hold the mask); keypoints go to
  ``gt_keypoints`` / ``pred_keypoints`` (``fo.Keypoints``, relative points, an unlabelled point NaN;
  the category's skeleton on the dataset);
- semantic segmentation: ``fo.Segmentation`` class maps (value ``k + 1`` for the k-th category, 0
  void or nothing predicted; ``mask_targets`` on the dataset);
- point regression: ``fo.Keypoints`` both, and ``error_px`` (the image's mean point error) to sort
  and filter by;
- classification: ``fo.Classification`` (the prediction's ``confidence`` its score).

Also ``tags`` (the store's), ``split``, ``dataforge_id``, ``sha256`` and ``source_format``. Then
FiftyOne's evaluation runs where it has one, with ``eval_key`` (per-object or per-sample results in
the App): ``evaluate_detections(compute_mAP=True)`` for boxes, again with ``use_masks=True`` for
masks (``eval_key + "_masks"``), ``evaluate_segmentations``, ``evaluate_classifications``. Each of
its numbers is reported beside dataforge's. Why they can differ: FiftyOne's COCO method has no
area ranges and applies ``max_preds`` per class where COCOeval applies maxDets per image and
category; FiftyOne's masks live in their boxes (a mask pixel outside its box is lost); its pixel
accuracy leaves out pixels no prediction covers, where dataforge counts them wrong.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from dataforge.boxes import xywh_to_xyxy, xyxy_to_xywh_rel
from dataforge.errors import ComponentError, UsageError

#: the FiftyOne label type of ``ground_truth``/``predictions`` per task
FIELD_TYPES = {
    "detection": "Detections",
    "semantic": "Segmentation",
    "regression": "Keypoints",
    "classification": "Classification",
}


def _fo() -> Any:
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    try:
        import fiftyone as fo
    except Exception as exc:  # FiftyOne raises many kinds of errors when its database cannot start
        raise ComponentError(
            f"FiftyOne is not usable here: {type(exc).__name__}: {exc}",
            hint="run ./setup.sh, then `dataforge doctor`",
        ) from exc
    return fo


def _mask_in_box(seg: Any, size_wh: tuple[int, int], bbox: list[float]) -> tuple[Any, list[float]]:
    """A COCO mask cropped to the whole pixels of its box, and that box (xywh)."""
    from dataforge.masks import decode

    w, h = size_wh
    x0, y0 = max(0, math.floor(bbox[0])), max(0, math.floor(bbox[1]))
    x1, y1 = min(w, math.ceil(bbox[0] + bbox[2])), min(h, math.ceil(bbox[1] + bbox[3]))
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    return decode(seg, h, w)[y0:y1, x0:x1], [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def _points(fo: Any, kps: list[float], size_wh: tuple[int, int], label: str, *, predicted: bool) -> Any:
    """COCO's flat ``[x, y, v] * K`` as an ``fo.Keypoint`` (relative; an unlabelled truth point NaN)."""
    w, h = size_wh
    pts = []
    for x, y, v in zip(kps[0::3], kps[1::3], kps[2::3], strict=True):
        pts.append((x / w, y / h) if predicted or v > 0 else (math.nan, math.nan))
    return fo.Keypoint(label=label, points=pts)


def _detections(
    fo: Any,
    anns: list[dict[str, Any]],
    cats: dict[int, dict[str, Any]],
    size_wh: tuple[int, int],
    *,
    scored: bool,
) -> tuple[Any, Any]:
    dets, points = [], []
    for a in anns:
        if a.get("semantic"):
            continue
        label = cats[a["category_id"]]["name"]
        box = a.get("bbox")
        kw: dict[str, Any] = {"label": label}
        seg = a.get("segmentation")
        if seg and box is not None:
            kw["mask"], box = _mask_in_box(seg, size_wh, box)
        if box is not None:
            kw["bounding_box"] = xyxy_to_xywh_rel(xywh_to_xyxy(box), size_wh).tolist()
            if scored:
                kw["confidence"] = float(a["score"])
            else:
                kw["iscrowd"] = int(a.get("iscrowd", 0) or 0)
                kw["dataforge_id"] = a.get("id")
            if a.get("_tide"):  # TIDE's error type (evaluation/errors.py), to filter by in the App
                kw["tide"] = a["_tide"]
            dets.append(fo.Detection(**kw))
        if a.get("keypoints") and cats[a["category_id"]].get("keypoints"):
            kp = _points(fo, a["keypoints"], size_wh, label, predicted=scored)
            if scored:
                kp["confidence"] = [float(a["score"])] * len(kp.points)
            points.append(kp)
    return fo.Detections(detections=dets), fo.Keypoints(keypoints=points)


def _class_map(regions: list[dict[str, Any]], index: dict[int, int], size_wh: tuple[int, int]) -> Any:
    """Semantic regions as one class map: category k (0-based) is k + 1, 0 elsewhere."""
    from dataforge.masks import decode

    w, h = size_wh
    out = np.zeros((h, w), dtype=np.uint8 if len(index) < 255 else np.uint16)
    for r in regions:
        out[decode(r["segmentation"], h, w)] = index[r["category_id"]] + 1
    return out


def _top_label(p: dict[str, Any], names: dict[int, str]) -> tuple[str, float | None]:
    if isinstance(p.get("scores"), dict):
        key, score = max(p["scores"].items(), key=lambda kv: kv[1])
        return (key if key in names.values() else names[int(key)]), float(score)
    return names[p["category_id"]], (float(p["score"]) if "score" in p else None)


def to_fiftyone(
    name: str,
    task: str,
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    images_dir: Path,
    report: dict[str, Any],
    *,
    eval_key: str = "eval",
) -> dict[str, Any]:
    """Build or update the FiftyOne dataset ``name`` for ``task`` and run FiftyOne's evaluation;
    its numbers beside ``report``'s (dataforge's)."""
    fo = _fo()
    cats = {c["id"]: c for c in gt["categories"]}
    names = {cid: c["name"] for cid, c in cats.items()}
    gt_by: dict[int, list[dict[str, Any]]] = {}
    for a in gt["annotations"]:
        gt_by.setdefault(a["image_id"], []).append(a)
    pr_by: dict[int, list[dict[str, Any]]] = {}
    for p in predictions:
        pr_by.setdefault(p["image_id"], []).append(p)
    ds = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name)
    ds.persistent = True
    schema = ds.get_field_schema()
    held = getattr(getattr(schema.get("ground_truth"), "document_type", None), "__name__", None)
    if held is not None and held != FIELD_TYPES[task]:
        raise UsageError(
            f"FiftyOne dataset {name!r} holds {held} labels, not {task} ones ({FIELD_TYPES[task]})",
            hint="give this evaluation its own dataset: --fiftyone ANOTHER_NAME",
        )
    for field_name, kind in (
        ("split", fo.StringField),
        ("dataforge_id", fo.IntField),
        ("sha256", fo.StringField),
        ("source_format", fo.StringField),
    ):
        if field_name not in schema:  # declared, so that None values (no split) are allowed
            ds.add_sample_field(field_name, kind)
    index = {cid: i for i, cid in enumerate(sorted(cats))}
    errors: dict[int, float] = {}
    if task == "regression":
        from dataforge.evaluation.regression import per_image_errors

        errors = per_image_errors(gt, predictions)
    existing = {s.filepath: s for s in ds} if len(ds) else {}
    new = []
    with_masks = False
    with_points = task == "detection" and any(c.get("keypoints") for c in gt["categories"])
    for img in gt["images"]:
        path = str((images_dir / img["file_name"]).resolve())
        size = (img["width"], img["height"])
        sample = existing.get(path) or fo.Sample(filepath=path)
        sample["metadata"] = fo.ImageMetadata(width=img["width"], height=img["height"])
        truth, preds = gt_by.get(img["id"], []), pr_by.get(img["id"], [])
        if task == "detection":
            sample["ground_truth"], gt_points = _detections(fo, truth, cats, size, scored=False)
            sample["predictions"], pred_points = _detections(fo, preds, cats, size, scored=True)
            with_masks |= any("segmentation" in p for p in preds)
            if with_points:  # a field on every sample (empty where no object has points)
                sample["gt_keypoints"], sample["pred_keypoints"] = gt_points, pred_points
        elif task == "semantic":
            regions = [a for a in truth if a.get("semantic")]
            sample["ground_truth"] = fo.Segmentation(mask=_class_map(regions, index, size))
            sample["predictions"] = fo.Segmentation(mask=_class_map(preds, index, size))
        elif task == "regression":
            sample["ground_truth"] = fo.Keypoints(
                keypoints=[
                    _points(fo, a["keypoints"], size, names[a["category_id"]], predicted=False)
                    for a in truth
                    if a.get("keypoints") and any(p["category_id"] == a["category_id"] for p in preds)
                ]
            )
            sample["predictions"] = fo.Keypoints(
                keypoints=[
                    _points(fo, p["keypoints"], size, names[p["category_id"]], predicted=True) for p in preds
                ]
            )
            sample["error_px"] = errors.get(img["id"])
        else:  # classification
            label = img.get("labels") or []
            sample["ground_truth"] = fo.Classification(label=names[label[0]]) if label else None
            if preds:
                top, score = _top_label(preds[0], names)
                sample["predictions"] = fo.Classification(label=top, confidence=score)
            else:
                sample["predictions"] = None
        sample.tags = list(img.get("tags", []))
        sample["split"] = img.get("split")
        sample["dataforge_id"] = img["id"]
        sample["sha256"] = img.get("sha256")
        sample["source_format"] = (img.get("source") or {}).get("format")
        if path in existing:
            sample.save()
        else:
            new.append(sample)
    if new:
        ds.add_samples(new)
    out: dict[str, Any] = {"dataset": name, "samples": len(ds), "eval_key": eval_key, "comparisons": []}
    for key in [k for k in ds.list_evaluations() if k in (eval_key, eval_key + "_masks")]:
        ds.delete_evaluation(key)
    compare = out["comparisons"]
    if task == "detection":
        res = ds.evaluate_detections(
            "predictions", gt_field="ground_truth", eval_key=eval_key, compute_mAP=True, iscrowd="iscrowd"
        )
        out["fiftyone_mAP"] = float(res.mAP())
        compare.append(_pair("box mAP (COCO 0.5:0.95)", res.mAP(), report["detection"]["coco_stats"][0]))
        if with_masks and "segmentation" in report:
            masks = ds.evaluate_detections(
                "predictions",
                gt_field="ground_truth",
                eval_key=eval_key + "_masks",
                compute_mAP=True,
                iscrowd="iscrowd",
                use_masks=True,
            )
            compare.append(
                _pair("mask mAP (COCO 0.5:0.95)", masks.mAP(), report["segmentation"]["coco_stats"][0])
            )
        if with_points:
            cat = next(c for c in gt["categories"] if c.get("keypoints"))
            edges = [[int(a) - 1, int(b) - 1] for a, b in cat.get("skeleton") or []]
            skeleton = fo.KeypointSkeleton(labels=list(cat["keypoints"]), edges=edges)
            ds.skeletons = {"gt_keypoints": skeleton, "pred_keypoints": skeleton}
    elif task == "semantic":
        targets = {i + 1: names[cid] for cid, i in index.items()}
        ds.mask_targets = {"ground_truth": targets, "predictions": targets}
        res = ds.evaluate_segmentations(  # the targets leave out 0: void truth, or nothing predicted
            "predictions", gt_field="ground_truth", eval_key=eval_key, mask_targets=targets
        )
        compare.append(
            _pair("pixel accuracy", res.metrics()["accuracy"], report["semantic"]["pixel_accuracy"])
        )
    elif task == "classification":
        res = ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key=eval_key)
        compare.append(_pair("accuracy", res.metrics()["accuracy"], report["classification"]["accuracy"]))
    else:
        out["note"] = "FiftyOne has no point-regression evaluation: sort the samples by error_px in the App"
    ds.save()
    return out


def _pair(metric: str, theirs: float, ours: float | None) -> dict[str, Any]:
    ours_f = None if ours is None else float(ours)
    return {
        "metric": metric,
        "fiftyone": float(theirs),
        "dataforge": ours_f,
        "difference": None if ours_f is None else float(theirs) - ours_f,
    }


def duplicates_to_fiftyone(name: str, store: Any, result: Any) -> dict[str, Any]:
    """The images of ``result``'s duplicate clusters (:class:`dataforge.dedupe.DedupeResult`) as the
    FiftyOne dataset ``name``: per sample ``dup_cluster`` (0 is the largest cluster), ``dup_kind``,
    ``dup_size``, ``dup_keep`` (the lowest id of its cluster), ``dup_spans_splits``, ``split`` and
    ``dataforge_id``; saved views ``duplicates`` (by cluster) and ``leaks`` (the clusters that span
    splits). A dataset of that name written by an earlier ``dedupe`` is replaced; any other is
    refused."""
    fo = _fo()
    from fiftyone import ViewField as F

    if fo.dataset_exists(name):
        old = fo.load_dataset(name)
        if old.info.get("dataforge") != "dedupe":
            raise UsageError(
                f"FiftyOne dataset {name!r} exists and was not written by dataforge dedupe",
                hint="give the duplicates their own dataset: --fiftyone ANOTHER_NAME",
            )
        old.delete()
    ds = fo.Dataset(name)
    ds.persistent = True
    ds.info["dataforge"] = "dedupe"
    ds.info["store"] = str(store.root.resolve())
    ds.info["threshold_bits"] = result.threshold
    by_id = store.index.image_by_id
    samples = []
    for rank, c in enumerate(result.clusters):
        spans = len({by_id[i].get("split") for i in c.image_ids}) > 1
        for iid in c.image_ids:
            img = by_id[iid]
            samples.append(
                fo.Sample(
                    filepath=str((store.images_dir / img["file_name"]).resolve()),
                    metadata=fo.ImageMetadata(width=img["width"], height=img["height"]),
                    dataforge_id=iid,
                    split=img.get("split") or "",
                    dup_cluster=rank,
                    dup_kind=c.kind,
                    dup_size=len(c.image_ids),
                    dup_keep=iid == c.image_ids[0],
                    dup_spans_splits=spans,
                )
            )
    if samples:
        ds.add_samples(samples, progress=False)
    ds.save_view("duplicates", ds.sort_by("dup_cluster"))
    ds.save_view("leaks", ds.match(F("dup_spans_splits")).sort_by("dup_cluster"))
    ds.save()
    return {
        "name": name,
        "samples": len(samples),
        "clusters": len(result.clusters),
        "view": "duplicates",
        "views": ["duplicates", "leaks"],
    }
