"""Put a store's images, ground truth and predictions into FiftyOne, and run FiftyOne's evaluation.

The dataset is persistent and keyed by image file path, so running again updates it. Per sample:
``ground_truth`` and ``predictions`` (``fo.Detections`` with FiftyOne's relative ``[x, y, w, h]``
boxes, converted by ``dataforge.boxes``), ``tags`` (the store's), ``split``, ``dataforge_id``,
``sha256`` and ``source_format``. FiftyOne's ``evaluate_detections`` then runs with
``eval_key`` (per-object ``tp``/``fp``/``fn`` in the App, ``load_evaluation_results``) and
``compute_mAP=True``; its mAP is reported beside dataforge's COCO AP.

Why the two can differ: FiftyOne's COCO method has no area ranges and applies ``max_preds`` per
class; COCOeval applies maxDets 100 per image and category and evaluates crowd regions with the
``area`` field. On ordinary data they agree to the third decimal or better.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dataforge.boxes import xywh_to_xyxy, xyxy_to_xywh_rel
from dataforge.errors import ComponentError


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


def _detections(
    fo: Any, anns: list[dict[str, Any]], names: dict[int, str], size_wh: tuple[int, int], *, scored: bool
) -> Any:
    dets = []
    for a in anns:
        rel = xyxy_to_xywh_rel(xywh_to_xyxy(a["bbox"]), size_wh).tolist()
        kw: dict[str, Any] = {"label": names[a["category_id"]], "bounding_box": rel}
        if scored:
            kw["confidence"] = float(a["score"])
        else:
            kw["iscrowd"] = int(a.get("iscrowd", 0) or 0)
            kw["dataforge_id"] = a.get("id")
        dets.append(fo.Detection(**kw))
    return fo.Detections(detections=dets)


def to_fiftyone(
    name: str,
    gt: dict[str, Any],
    predictions: list[dict[str, Any]],
    images_dir: Path,
    *,
    eval_key: str = "eval",
) -> dict[str, Any]:
    fo = _fo()
    names = {c["id"]: c["name"] for c in gt["categories"]}
    gt_by: dict[int, list[dict[str, Any]]] = {}
    for a in gt["annotations"]:
        gt_by.setdefault(a["image_id"], []).append(a)
    pr_by: dict[int, list[dict[str, Any]]] = {}
    for p in predictions:
        pr_by.setdefault(p["image_id"], []).append(p)
    ds = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name)
    ds.persistent = True
    schema = ds.get_field_schema()
    for field_name, kind in (
        ("split", fo.StringField),
        ("dataforge_id", fo.IntField),
        ("sha256", fo.StringField),
        ("source_format", fo.StringField),
    ):
        if field_name not in schema:  # declared, so that None values (no split) are allowed
            ds.add_sample_field(field_name, kind)
    existing = {s.filepath: s for s in ds} if len(ds) else {}
    new = []
    for img in gt["images"]:
        path = str((images_dir / img["file_name"]).resolve())
        size = (img["width"], img["height"])
        sample = existing.get(path) or fo.Sample(filepath=path)
        sample["metadata"] = fo.ImageMetadata(width=img["width"], height=img["height"])
        sample["ground_truth"] = _detections(fo, gt_by.get(img["id"], []), names, size, scored=False)
        sample["predictions"] = _detections(fo, pr_by.get(img["id"], []), names, size, scored=True)
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
    if eval_key in ds.list_evaluations():
        ds.delete_evaluation(eval_key)
    results = ds.evaluate_detections(
        "predictions", gt_field="ground_truth", eval_key=eval_key, compute_mAP=True, iscrowd="iscrowd"
    )
    return {
        "dataset": name,
        "samples": len(ds),
        "eval_key": eval_key,
        "fiftyone_mAP": float(results.mAP()),
        "note": "FiftyOne's COCO-style mAP has no area ranges and applies max_preds per class; see the "
        "conventions in dataforge.evaluation.fiftyone_export",
    }
