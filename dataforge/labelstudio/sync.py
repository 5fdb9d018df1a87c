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

from dataforge.errors import DataError, UsageError
from dataforge.formats.labelstudio_json import label_config, latest_annotation
from dataforge.labelstudio.client import LabelStudio
from dataforge.labelstudio.regions import annotation_objects, store_regions
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


def _config_controls(config: str) -> tuple[set[str], set[str]]:
    """The labels (Label, Choice values) and the control names of a labeling config."""
    import xml.etree.ElementTree as ET

    try:
        view = ET.fromstring(config)
    except ET.ParseError:
        return set(), set()
    labels = {e.get("value", "") for tag in ("Label", "Choice") for e in view.iter(tag)}
    return labels, {e.get("name", "") for e in view.iter() if e.get("toName")}


#: the control (``from_name``) each kind of region is written for (:func:`label_config`'s names)
CONTROLS = {"box": "label", "polygon": "polygon", "brush": "brush", "keypoint": "kp"}


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
    predictions_source: str = "predictions",
) -> dict[str, Any]:
    """Push the selected images as tasks; ``predictions`` (detection results with boxes, masks or
    keypoints, semantic results, or classification results as the top class) become pre-annotations with their scores, ``with_annotations``
    the store's objects become ground-truth annotations. The project is created with the controls
    those regions need; an existing project's config must have them (and every category)."""
    store = Store.open(store_path)
    images = store.select(where)
    rel = _rel_to_root(store, document_root)
    categories = store.data["categories"]
    by_image = _checked_predictions(store, predictions, predictions_source)
    proj = client.find_project(project)
    existing = (
        set()
        if proj is None
        else {t.get("data", {}).get("dataforge_id") for t in client.tasks(int(proj["id"]))}
    )
    tasks = []
    kinds: set[str] = set()
    for img in images:
        if img["id"] in existing:
            continue
        size = (int(img["width"]), int(img["height"]))
        task: dict[str, Any] = {
            "data": {
                "image": "/data/local-files/?d=" + quote(f"{rel}/{img['file_name']}"),
                "dataforge_id": img["id"],
            }
        }
        preds = by_image.get(img["id"])
        if preds:
            classes = [int(p["label"]) for p in preds if "label" in p]
            objects = [p for p in preds if "label" not in p]
            result, used = store_regions(objects, classes, categories, size, "p", scored=True)
            kinds |= used
            scores = [p["score"] for p in preds if "score" in p]
            task["predictions"] = [
                {
                    "model_version": model_version,
                    "result": result,
                    **({"score": max(scores)} if scores else {}),
                }
            ]
        if with_annotations:
            objects = store.index.anns_by_image.get(img["id"], [])
            result, used = store_regions(list(objects), list(img.get("labels") or []), categories, size, "g")
            kinds |= used
            if result:
                task["annotations"] = [{"result": result, "was_cancelled": False, "ground_truth": True}]
        tasks.append(task)
    points = sorted({str(k) for c in categories for k in c.get("keypoints") or []})
    created = proj is None
    if proj is None:
        config = label_config(
            [c["name"] for c in categories],
            polygons="polygon" in kinds,
            brushes="brush" in kinds,
            keypoints=points if "keypoint" in kinds else None,
        )
        proj = client.create_project(project, config)
        client.add_local_storage(proj["id"], str(store.images_dir.resolve()))
    pid = int(proj["id"])
    labels, controls = _config_controls(proj.get("label_config") or "")
    missing = sorted({c["name"] for c in categories} - labels)
    missing_points = sorted(set(points) - labels) if "keypoint" in kinds else []
    lacking = sorted(CONTROLS[k] for k in kinds if CONTROLS[k] not in controls)
    if missing or missing_points or lacking:
        what = [f"the store's categories {missing}"] if missing else []
        what += [f"the point labels {missing_points}"] if missing_points else []
        what += [f"the controls {lacking} (for {', '.join(sorted(kinds))} regions)"] if lacking else []
        raise DataError(
            f"Label Studio project {proj.get('title')!r} ({pid}): its labeling config lacks "
            + " and ".join(what),
            hint="push to a new project (dataforge writes the config it needs), or add them in Label Studio",
        )
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


def _checked_predictions(
    store: Store, predictions: list[dict[str, Any]] | None, source: str
) -> dict[int, list[dict[str, Any]]]:
    """Predictions checked against the store as ``dataforge evaluate`` checks them (one-line errors
    naming the entry), by image id. Semantic results become semantic regions."""
    from dataforge.evaluation.predictions import (
        check_detections,
        check_semantic,
        is_classification,
        is_semantic,
    )
    from dataforge.evaluation.regression import is_regression

    if not predictions:
        return {}
    gt = {"images": store.images, "annotations": [], "categories": store.data["categories"]}
    if is_classification(predictions):
        return _checked_classes(store, predictions, source)
    if is_regression(predictions):
        raise UsageError(
            f"{source}: point-regression results (keypoints without scores) are not pre-annotations",
            hint="push detections (boxes, masks, keypoints with scores) or semantic results",
        )
    if is_semantic(predictions):
        checked = [{**p, "semantic": True} for p in check_semantic(predictions, gt, source)]
    else:
        checked = check_detections(predictions, gt, source)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for p in checked:
        by_image.setdefault(p["image_id"], []).append(p)
    return by_image


def _checked_classes(
    store: Store, predictions: list[dict[str, Any]], source: str
) -> dict[int, list[dict[str, Any]]]:
    """Classification results as one ``{"label", "score"}`` per image: the top class (of
    ``scores``, or ``category_id``), checked against the store's images and categories."""
    from dataforge.evaluation.predictions import category_of

    names = {str(c["name"]): int(c["id"]) for c in store.data["categories"]}
    ids = set(names.values())
    out: dict[int, list[dict[str, Any]]] = {}
    for i, p in enumerate(predictions):
        iid = p.get("image_id")
        if iid not in store.index.image_by_id:
            raise DataError(f"{source}: prediction {i}: image_id {iid!r} is not in the store", source=source)
        if iid in out:
            raise DataError(f"{source}: prediction {i}: a second prediction for image {iid}", source=source)
        if isinstance(p.get("scores"), dict) and p["scores"]:
            key, score = max(p["scores"].items(), key=lambda kv: kv[1])
            cid = category_of(key, names)
        else:
            cid, score = p.get("category_id"), p.get("score", 1.0)
        if cid not in ids or not isinstance(score, (int, float)):
            raise DataError(f"{source}: prediction {i}: not a known category with a score", source=source)
        out[int(iid)] = [{"label": cid, "score": float(score)}]
    return out


def pull(store_path: Path, project: str, client: LabelStudio, *, on_error: str = "fail") -> dict[str, Any]:
    """Bring the project's latest annotations into the store. ``on_error="skip"``: a task with a
    problem (an unknown label, a shape outside the image, ...) is left out and reported, its image
    tagged ``labelstudio:invalid`` and left as it was; the other tasks are pulled. ``"fail"``: the
    first problem stops the pull and nothing is written."""
    if on_error not in ("fail", "skip"):
        raise UsageError(f"--on-error {on_error!r}: choose fail or skip")
    store = Store.open(store_path)
    proj = client.find_project(project)
    if proj is None:
        raise UsageError(f"no Label Studio project {project!r} at {client.url}")
    pid = int(proj["id"])
    by_id = store.index.image_by_id
    categories = store.data["categories"]
    state = store.data.get("dataforge", {}).get("labelstudio", {}).get(str(pid), {})
    seen = dict(state.get("pulled", {}))  # image id -> annotation id + updated_at already applied
    changes: dict[int, dict[str, Any]] = {}
    skipped: list[int] = []
    invalid: list[dict[str, Any]] = []
    for task in client.tasks(pid):
        iid = (task.get("data") or {}).get("dataforge_id")
        where = f"task {task.get('id')}"
        try:
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
            objects, labels = annotation_objects(ann, by_id[iid], categories, where)
        except DataError as exc:
            if on_error == "fail":
                raise
            bad = {"task": task.get("id"), "image_id": iid if iid in by_id else None, "problem": exc.message}
            invalid.append(bad)
            continue
        changes[iid] = {
            "objects": objects,
            "labels": labels,
            "lineage": {
                "project": pid,
                "task_id": task.get("id"),
                "annotation_id": ann.get("id"),
                "completed_by": ann.get("completed_by"),
                "updated_at": ann.get("updated_at"),
            },
            "stamp": stamp,
        }
    details: dict[str, Any] = {
        "project": pid,
        "updated": len(changes),
        "skipped": len(skipped),
        "invalid": len(invalid),
    }
    bad_images = sorted({b["image_id"] for b in invalid if b["image_id"] is not None})
    with Store.edit(store_path, "labelstudio-pull", details=details) as s:
        ids = {a["id"] for a in s.annotations}
        next_id = max(ids, default=0) + 1
        keep = [a for a in s.annotations if a["image_id"] not in changes]
        for iid, ch in sorted(changes.items()):
            for obj in ch["objects"]:
                keep.append({"id": next_id, "image_id": iid, **obj})
                next_id += 1
            s.set_labels(iid, ch["labels"])
            s.set_lineage(iid, "labelstudio", ch["lineage"])
            seen[str(iid)] = ch["stamp"]
        s.remove_tags(changes, ["labelstudio:skipped", "labelstudio:invalid"])
        s.add_tags(changes, ["labelstudio:annotated"])
        s.add_tags(skipped, ["labelstudio:skipped"])
        s.add_tags(bad_images, ["labelstudio:invalid"])
        s.set_annotations(keep)
        s.set_tool_state("labelstudio", str(pid), {"pulled": seen})
    return {**details, "invalid_tasks": invalid, "requests": client.requests}


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
