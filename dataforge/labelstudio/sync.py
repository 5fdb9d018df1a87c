"""``dataforge labelstudio push`` / ``pull``.

Push: find or create the project (labeling config from the store's categories: RectangleLabels and
Choices), let the server serve the store's images as local files, and import one task per image
that is not in the project yet (``data.dataforge_id`` is the store's image id, so pushing twice
creates no duplicates), with model predictions as pre-annotations when a predictions file is given.

Pull: page through the project's tasks; for each task of this store, the latest non-cancelled
annotation replaces the image's boxes and image-level labels. Percent boxes become pixels with the
image's real size (checked against ``original_width/height``); labels must be store categories;
rotated boxes and boxes outside the image are refused. Everything is checked before anything is
written, then one atomic store write records annotator, time and Label Studio ids in each image's
lineage and tags it ``labelstudio:annotated`` (or ``labelstudio:skipped`` when the only
annotations were skipped). Tasks whose annotation has not changed since the last pull are left
alone, so pulling twice changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dataforge.boxes import xywh_inside_image, xywh_percent_to_xyxy
from dataforge.errors import DataError, UsageError
from dataforge.formats.labelstudio_json import choices_region, label_config, latest_annotation, rect_region
from dataforge.labelstudio.client import LabelStudio
from dataforge.store import Store

BATCH = 500


def _rel_to_root(store: Store, document_root: Path) -> str:
    images = store.images_dir.resolve()
    root = document_root.resolve()
    if not (images == root or root in images.parents):
        raise UsageError(
            f"the store's images ({images}) are not under the Label Studio document root ({root})",
            hint="set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (server and --document-root) to a folder "
            "that contains the store",
        )
    return os.path.relpath(images, root).replace(os.sep, "/")


def _config_labels(config: str) -> set[str]:
    import xml.etree.ElementTree as ET

    try:
        view = ET.fromstring(config)
    except ET.ParseError:
        return set()
    return {e.get("value", "") for tag in ("Label", "Choice") for e in view.iter(tag)}


def push(
    store_path: Path,
    project: str,
    client: LabelStudio,
    *,
    document_root: Path,
    where: str | None = None,
    predictions: list[dict[str, Any]] | None = None,
    model_version: str = "dataforge",
    with_annotations: bool = False,
) -> dict[str, Any]:
    store = Store.open(store_path)
    images = store.select(where)
    rel = _rel_to_root(store, document_root)
    names = store.index.category_names
    proj = client.find_project(project)
    created = proj is None
    if proj is None:
        proj = client.create_project(project, label_config([c["name"] for c in store.data["categories"]]))
        client.add_local_storage(proj["id"], str(store.images_dir.resolve()))
    pid = int(proj["id"])
    missing = sorted(
        {c["name"] for c in store.data["categories"]} - _config_labels(proj.get("label_config") or "")
    )
    if missing:
        raise DataError(
            f"Label Studio project {proj.get('title')!r} ({pid}): its labeling config lacks the store's "
            f"categories {missing}",
            hint="push to a new project, or add those labels in Label Studio",
        )
    existing = {t.get("data", {}).get("dataforge_id") for t in client.tasks(pid)}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for p in predictions or []:
        by_image.setdefault(p["image_id"], []).append(p)
    tasks = []
    for img in images:
        if img["id"] in existing:
            continue
        task: dict[str, Any] = {
            "data": {
                "image": "/data/local-files/?d=" + quote(f"{rel}/{img['file_name']}"),
                "dataforge_id": img["id"],
            }
        }
        preds = by_image.get(img["id"])
        if preds:
            w, h = img["width"], img["height"]
            task["predictions"] = [
                {
                    "model_version": model_version,
                    "score": max(p["score"] for p in preds),
                    "result": [
                        rect_region(p["bbox"], names[p["category_id"]], (w, h), f"p{i}", p["score"])
                        for i, p in enumerate(preds)
                    ],
                }
            ]
        if with_annotations:
            w, h = img["width"], img["height"]
            result = [
                rect_region(a["bbox"], names[a["category_id"]], (w, h), f"g{a['id']}")
                for a in store.index.anns_by_image.get(img["id"], [])
            ]
            if img.get("labels"):
                result.append(choices_region([names[c] for c in img["labels"]], "class"))
            if result:
                task["annotations"] = [{"result": result, "was_cancelled": False, "ground_truth": True}]
        tasks.append(task)
    ids: list[int] = []
    for i in range(0, len(tasks), BATCH):
        ids += client.import_tasks(pid, tasks[i : i + BATCH])
    return {
        "project": pid,
        "created": created,
        "pushed": len(ids),
        "already_there": len(images) - len(tasks),
        "requests": client.requests,
    }


def pull(store_path: Path, project: str, client: LabelStudio) -> dict[str, Any]:
    store = Store.open(store_path)
    proj = client.find_project(project)
    if proj is None:
        raise UsageError(f"no Label Studio project {project!r} at {client.url}")
    pid = int(proj["id"])
    by_id = store.index.image_by_id
    cat_by_name = {c["name"]: c["id"] for c in store.data["categories"]}
    state = store.data.get("dataforge", {}).get("labelstudio", {}).get(str(pid), {})
    seen = dict(state.get("pulled", {}))  # image id -> annotation id + updated_at already applied
    changes: dict[int, dict[str, Any]] = {}
    skipped: list[int] = []
    for task in client.tasks(pid):
        iid = (task.get("data") or {}).get("dataforge_id")
        where = f"task {task.get('id')}"
        if iid not in by_id:
            raise DataError(
                f"Label Studio {where}: dataforge_id {iid!r} is not an image of {store_path}",
                hint="was this project pushed from another store?",
            )
        ann = latest_annotation(task)
        if ann is None:
            if any(a.get("was_cancelled") for a in task.get("annotations") or []):
                skipped.append(iid)
            continue
        stamp = f"{ann.get('id')}@{ann.get('updated_at')}"
        if seen.get(str(iid)) == stamp:
            continue
        img = by_id[iid]
        changes[iid] = _convert(ann, img, cat_by_name, where) | {
            "lineage": {
                "project": pid,
                "task_id": task.get("id"),
                "annotation_id": ann.get("id"),
                "completed_by": ann.get("completed_by"),
                "updated_at": ann.get("updated_at"),
            },
            "stamp": stamp,
        }
    details: dict[str, Any] = {"project": pid, "updated": len(changes), "skipped": len(skipped)}
    with Store.edit(store_path, "labelstudio-pull", details=details) as s:
        ids = {a["id"] for a in s.annotations}
        next_id = max(ids, default=0) + 1
        keep = [a for a in s.annotations if a["image_id"] not in changes]
        for iid, ch in sorted(changes.items()):
            for box in ch["boxes"]:
                keep.append({"id": next_id, "image_id": iid, **box})
                next_id += 1
            s.set_labels(iid, ch["labels"])
            s.set_lineage(iid, "labelstudio", ch["lineage"])
            seen[str(iid)] = ch["stamp"]
        s.remove_tags(changes, ["labelstudio:skipped"])
        s.add_tags(changes, ["labelstudio:annotated"])
        s.add_tags(skipped, ["labelstudio:skipped"])
        s.set_annotations(keep)
        s.set_tool_state("labelstudio", str(pid), {"pulled": seen})
    return {**details, "requests": client.requests}


def _convert(
    ann: dict[str, Any], img: dict[str, Any], cat_by_name: dict[str, int], where: str
) -> dict[str, Any]:
    w, h = img["width"], img["height"]
    boxes, labels = [], []
    for r in ann.get("result") or []:
        rid = f"{where} region {r.get('id', '?')}"
        if r.get("type") == "choices":
            for choice in (r.get("value") or {}).get("choices") or []:
                if choice not in cat_by_name:
                    raise DataError(
                        f"Label Studio {rid}: class {choice!r} is not a category of the store "
                        f"({', '.join(cat_by_name)})"
                    )
                labels.append(cat_by_name[choice])
            continue
        if r.get("type") != "rectanglelabels":
            continue
        v = r.get("value") or {}
        if abs(float(v.get("rotation") or 0)) > 1e-9:
            raise DataError(
                f"Label Studio {rid}: the box is rotated {v.get('rotation')} degrees; dataforge stores "
                'axis-aligned boxes (use canRotate="false")'
            )
        label = (v.get("rectanglelabels") or [None])[0]
        if label not in cat_by_name:
            raise DataError(
                f"Label Studio {rid}: label {label!r} is not a category of the store "
                f"({', '.join(cat_by_name)})"
            )
        ow, oh = r.get("original_width"), r.get("original_height")
        if ow is not None and (ow, oh) != (w, h):
            raise DataError(
                f"Label Studio {rid}: annotated on a {ow}x{oh} image, but the store's image is {w}x{h}"
            )
        corners = xywh_percent_to_xyxy([v["x"], v["y"], v["width"], v["height"]], (w, h))
        x1, y1, x2, y2 = (float(c) for c in corners)
        # percent round trips are not bit-exact (20 comes back as 19.999999999999996): round
        x, y, bw, bh = round(x1, 6), round(y1, 6), round(x2 - x1, 6), round(y2 - y1, 6)
        if not (bw > 0 and bh > 0 and xywh_inside_image(x, y, bw, bh, w, h)):
            raise DataError(
                f"Label Studio {rid}: box xywh {[x, y, bw, bh]} is empty or outside the {w}x{h} image"
            )
        boxes.append(
            {
                "category_id": cat_by_name[label],
                "bbox": [x, y, bw, bh],
                "area": bw * bh,
                "iscrowd": 0,
                "segmentation": [],
            }
        )
    return {"boxes": boxes, "labels": list(dict.fromkeys(labels))}


def status(store_path: Path, project: str, client: LabelStudio) -> dict[str, Any]:
    """Tasks, annotated, skipped and pending in the project, and this store's last pull."""
    store = Store.open(store_path)
    proj = client.find_project(project)
    if proj is None:
        raise UsageError(f"no Label Studio project {project!r} at {client.url}")
    counts = {"tasks": 0, "annotated": 0, "skipped": 0, "pending": 0}
    for task in client.tasks(int(proj["id"])):
        counts["tasks"] += 1
        anns = task.get("annotations") or []
        if latest_annotation(task) is not None:
            counts["annotated"] += 1
        elif any(a.get("was_cancelled") for a in anns):
            counts["skipped"] += 1
        else:
            counts["pending"] += 1
    pulls = [
        h for h in store.history() if h.get("op") == "labelstudio-pull" and h.get("project") == proj["id"]
    ]
    return {
        "project": proj["id"],
        "title": proj.get("title"),
        **counts,
        "last_pull": pulls[-1]["time"] if pulls else None,
    }
