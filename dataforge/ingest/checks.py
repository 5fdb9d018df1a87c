"""Format-independent checks on an import batch: ids, references, boxes, file names.

Each check has a vectorized fast path for the common case (a clean file) and falls back to a
per-item loop that names every problem when the fast path finds anything wrong.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dataforge.boxes import out_of_bounds, xywh_to_xyxy
from dataforge.formats.base import ErrorPolicy, ImportBatch

_NUMBER_TYPES = {int, float}


def safe_relative_name(file_name: Any) -> str | None:
    """Normalize an image ``file_name`` to a relative POSIX path, or None if it is unsafe.

    Unsafe: not a string, empty, absolute (``/x``, ``C:\\x``), containing ``..``, or NUL.
    Backslashes are treated as separators (files written on Windows).
    """
    if not isinstance(file_name, str) or not file_name or "\x00" in file_name:
        return None
    name = file_name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def is_number(v: Any) -> bool:
    return type(v) in _NUMBER_TYPES and math.isfinite(v)


def check_categories(categories: list[Any], policy: ErrorPolicy) -> dict[int, dict[str, Any]]:
    """The well-formed categories by id (each with an integer id and a name, both unique)."""
    cats: dict[int, dict[str, Any]] = {}
    names: dict[str, int] = {}
    for i, cat in enumerate(categories):
        cid = cat.get("id") if isinstance(cat, dict) else None
        name = cat.get("name") if isinstance(cat, dict) else None
        if type(cid) is not int:
            policy.problem(
                "category", f"#{i}", "bad id", f"category #{i} has no integer 'id' (found {cid!r})"
            )
            continue
        if not isinstance(name, str) or not name.strip():
            policy.problem("category", cid, "bad name", f"category {cid} has no name (found {name!r})")
            continue
        if cid in cats:
            policy.problem(
                "category",
                cid,
                "duplicate id",
                f"category id {cid} appears twice ({cats[cid]['name']!r} and {name!r})",
            )
            continue
        if name in names:
            policy.problem(
                "category",
                cid,
                "duplicate name",
                f"category name {name!r} is used by ids {names[name]} and {cid}",
            )
            continue
        why = category_keypoint_problem(cat)
        if why:
            policy.problem("category", cid, "bad keypoints", why)
            continue
        cats[cid] = cat
        names[name] = cid
    return cats


def check_images(batch: ImportBatch, policy: ErrorPolicy) -> dict[int, tuple[dict[str, Any], str]]:
    """Images by id with their safe relative file name."""
    images: dict[int, tuple[dict[str, Any], str]] = {}
    seen_names: dict[str, int] = {}
    for i, img in enumerate(batch.images):
        iid = img.get("id") if isinstance(img, dict) else None
        if isinstance(img, dict) and "_problem" in img:
            reason, message = img["_problem"]
            policy.problem("image", iid if iid is not None else f"#{i}", reason, message)
            continue
        if type(iid) is not int:
            policy.problem("image", f"#{i}", "bad id", f"image #{i} has no integer 'id' (found {iid!r})")
            continue
        if iid in images:
            policy.problem(
                "image",
                iid,
                "duplicate id",
                f"image id {iid} appears twice "
                f"({images[iid][0].get('file_name')!r} and {img.get('file_name')!r})",
            )
            continue
        raw = img.get("file_name")
        name = safe_relative_name(raw)
        if name is None:
            policy.problem(
                "image",
                iid,
                "unsafe file_name",
                f"image {iid}: file_name {raw!r} must be a relative path inside the images "
                "folder (no absolute paths, no '..')",
            )
            continue
        if name in seen_names:
            policy.problem(
                "image",
                iid,
                "duplicate file_name",
                f"image {iid}: file_name {name!r} is also used by image {seen_names[name]}",
            )
            continue
        src = img.get("_src", name)
        if src is not name and safe_relative_name(src) is None:
            policy.problem(
                "image",
                iid,
                "unsafe file_name",
                f"image {iid}: source path {src!r} must be a relative path inside the images folder",
            )
            continue
        seen_names[name] = iid
        images[iid] = (img, name)
    return images


def check_image_labels(
    images: dict[int, tuple[dict[str, Any], str]], cats: dict[int, dict[str, Any]], policy: ErrorPolicy
) -> None:
    """Image-level labels (``labels``: category ids) must name known categories; unknown ones are dropped."""
    for iid, (img, _name) in images.items():
        labels = img.get("labels")
        if labels is None:
            continue
        if not isinstance(labels, list):
            policy.problem(
                "image", iid, "bad labels", f"image {iid}: 'labels' must be a list of category ids"
            )
            img["labels"] = []
            continue
        known = [c for c in labels if c in cats]
        for c in labels:
            if c not in cats:
                policy.problem(
                    "image",
                    iid,
                    "unknown category",
                    f"image {iid}: label {c!r} is not in 'categories' (ids {sorted(cats)})",
                )
        img["labels"] = list(dict.fromkeys(known))


def _annotations_are_clean(anns: list[Any], image_ids: set[int], cat_ids: set[int]) -> np.ndarray | None:
    """One vectorized pass: the (N, 4) xywh boxes when every annotation is well-formed, else None."""
    try:
        ids = [a["id"] for a in anns]
        img = {a["image_id"] for a in anns}
        cat = {a["category_id"] for a in anns}
        bboxes = [a["bbox"] for a in anns]
    except (KeyError, TypeError):
        return None
    if not (img <= image_ids and cat <= cat_ids):
        return None
    if {type(i) for i in ids} - {int} or len(set(ids)) != len(ids):
        return None
    if any(type(b) is not list or len(b) != 4 for b in bboxes):
        return None
    if {type(v) for b in bboxes for v in b} - _NUMBER_TYPES:
        return None
    arr = np.array(bboxes, dtype=np.float64).reshape(-1, 4)
    ok = np.isfinite(arr).all() and (arr[:, 2] > 0).all() and (arr[:, 3] > 0).all()
    return arr if ok else None


def check_annotations(
    batch: ImportBatch,
    images: dict[int, Any],
    cats: dict[int, dict[str, Any]],
    policy: ErrorPolicy,
) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """The well-formed annotations, and their (N, 4) xywh boxes when the fast path computed them."""
    anns = batch.annotations
    boxes = _annotations_are_clean(anns, set(images), set(cats))
    if boxes is not None:
        return anns, boxes
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            policy.problem("annotation", f"#{i}", "not an object", f"annotation #{i} is not a JSON object")
            continue
        aid = ann.get("id")
        label = ann.get("_where") or (aid if type(aid) is int else f"#{i}")
        if "_problem" in ann:
            reason, message = ann["_problem"]
            policy.problem("annotation", label, reason, message)
            continue
        if type(aid) is int and aid != 0:
            if aid in seen:
                policy.problem("annotation", aid, "duplicate id", f"annotation id {aid} appears twice")
                continue
            seen.add(aid)
        iid = ann.get("image_id")
        if iid not in images and iid in policy.skipped_image_ids:
            policy.problem(
                "annotation",
                label,
                "its image was skipped",
                f"annotation {label}: its image {iid} was skipped",
            )
            continue
        if iid not in images:
            known = f"ids {min(images)}..{max(images)}" if images else "no images"
            policy.problem(
                "annotation",
                label,
                "missing image",
                f"annotation {label} refers to image_id {iid!r}, which is not in 'images' ({known})",
            )
            continue
        cid = ann.get("category_id")
        if cid not in cats:
            policy.problem(
                "annotation",
                label,
                "unknown category",
                f"annotation {label} (image {iid}) refers to category_id {cid!r}, which is not in "
                f"'categories' (ids {sorted(cats)})",
            )
            continue
        bbox = ann.get("bbox")
        if bbox is None and isinstance(ann.get("segmentation"), list) and ann["segmentation"]:
            bbox = polygon_bbox(ann["segmentation"])
            if bbox is not None:
                ann["bbox"] = bbox
            else:  # no box, and the polygons it would come from are malformed: say what is wrong
                from dataforge.masks import BAD_SEGMENTATION, segmentation_problem

                # the image's size is not known yet: the bounds are checked with the mask later
                why = segmentation_problem(ann["segmentation"], 1 << 30, 1 << 30)
                if why:
                    policy.problem("annotation", label, BAD_SEGMENTATION, f"{label}: {why}")
                    continue
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
            policy.problem(
                "annotation",
                label,
                "bad bbox",
                f"annotation {label} (image {iid}): bbox must be [x, y, width, height] numbers, "
                f"found {bbox!r}",
            )
            continue
        if bbox[2] <= 0 or bbox[3] <= 0:
            policy.problem(
                "annotation",
                label,
                "zero or negative size box",
                f"annotation {label} (image {iid}): box {bbox} has zero or negative width/height",
            )
            continue
        out.append(ann)
    return out, None


def normalized_to_absolute(anns: list[dict[str, Any]], size_of: dict[int, tuple[int, int]]) -> None:
    """Fill ``bbox`` (absolute xywh) from ``_bbox_norm`` now that the real image sizes are known.

    Boxes whose numbers are unusable keep no ``bbox``, so :func:`check_annotations` reports them.
    """
    for a in anns:
        norm = a.get("_bbox_norm")
        if norm is None or a.get("image_id") not in size_of:
            continue
        kind, v = norm
        if not (isinstance(v, list) and len(v) == 4 and all(is_number(x) for x in v)):
            a["bbox"] = v
            continue
        w, h = size_of[a["image_id"]]
        poly = a.pop("_polygon_norm", None)  # YOLO-seg: one normalized polygon
        if poly is not None:
            a["segmentation"] = [[round(v * (w if k % 2 == 0 else h), 4) for k, v in enumerate(poly)]]
        points = a.pop("_keypoints_norm", None)  # YOLO-pose: normalized (x, y, v) triplets
        if points is not None:
            a["keypoints"] = [
                round(v * w, 4) if k % 3 == 0 else round(v * h, 4) if k % 3 == 1 else v
                for k, v in enumerate(points)
            ]
            a["num_keypoints"] = sum(1 for v in points[2::3] if v > 0)
        if kind == "cxcywh":
            a["bbox"] = [(v[0] - v[2] / 2) * w, (v[1] - v[3] / 2) * h, v[2] * w, v[3] * h]
        else:  # normalized xyxy
            a["bbox"] = [v[0] * w, v[1] * h, (v[2] - v[0]) * w, (v[3] - v[1]) * h]


def without_images(
    anns: list[dict[str, Any]], boxes: np.ndarray | None, dropped: set[int], policy: ErrorPolicy
) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """Drop (and report) the annotations of images that were skipped."""
    if not dropped:
        return anns, boxes
    keep = []
    for i, a in enumerate(anns):
        if a["image_id"] in dropped:
            label = a.get("id", f"#{i}")
            policy.problem(
                "annotation",
                label,
                "its image was skipped",
                f"annotation {label}: its image {a['image_id']} was skipped",
            )
        else:
            keep.append(i)
    return [anns[i] for i in keep], (boxes[keep] if boxes is not None else None)


def outside_image(
    anns: list[dict[str, Any]],
    size_of: dict[int, tuple[int, int]],
    tolerance: float,
    boxes: np.ndarray | None = None,
) -> list[int]:
    """Indices of annotations whose xywh box leaves its image by more than ``tolerance`` px."""
    if not anns:
        return []
    if boxes is None:
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    sizes = np.array([size_of[a["image_id"]] for a in anns], dtype=np.float64).reshape(-1, 2)
    return [int(i) for i in np.flatnonzero(out_of_bounds(xywh_to_xyxy(boxes), sizes, tolerance))]


#: how far a mask may stick out of its annotation's box (px): polygon vertices rounded by the tool
MASK_OUTSIDE_BOX_TOLERANCE_PX = 1.0


def shape_problem(
    ann: dict[str, Any], width: int, height: int, category: dict[str, Any] | None
) -> tuple[str, str] | None:
    """What is wrong with an annotation's mask or keypoints, as ``(reason, message)``, or None.

    The segmentation's own checks (:func:`dataforge.masks.segmentation_problem`), the keypoints'
    (:func:`dataforge.keypoints.keypoint_problem`, against the category's point names), and the
    box must enclose the mask (within :data:`MASK_OUTSIDE_BOX_TOLERANCE_PX`)."""
    seg, kps = ann.get("segmentation"), ann.get("keypoints")
    if seg in (None, [], {}) and kps is None:
        return None  # a box only: the common case, before any import
    from dataforge.keypoints import BAD_KEYPOINTS, keypoint_problem
    from dataforge.masks import BAD_SEGMENTATION, has_mask, is_rle, segmentation_problem

    label = ann.get("_where") or f"annotation {ann.get('id')} (image {ann.get('image_id')})"
    if seg not in (None, [], {}):
        why = segmentation_problem(seg, width, height)
        if why:
            return BAD_SEGMENTATION, f"{label}: {why}"
        bbox = ann.get("bbox")
        if has_mask(seg) and isinstance(bbox, list) and len(bbox) == 4:
            if is_rle(seg):
                from pycocotools import mask as mask_api

                from dataforge.masks import to_rle

                mx, my, mw, mh = (float(v) for v in mask_api.toBbox(to_rle(seg, height, width)))
            else:
                mx, my, mw, mh = polygon_bbox(seg) or bbox
            x, y, w, h = bbox
            t = MASK_OUTSIDE_BOX_TOLERANCE_PX
            if mw > 0 and (mx < x - t or my < y - t or mx + mw > x + w + t or my + mh > y + h + t):
                return (
                    "box does not enclose mask",
                    f"{label}: the mask spans xywh [{mx:g}, {my:g}, {mw:g}, {mh:g}], outside its box {bbox}",
                )
    if kps is not None:
        names = category.get("keypoints") if category else None
        why = keypoint_problem(kps, ann.get("num_keypoints"), names or None, width, height)
        if why:
            return BAD_KEYPOINTS, f"{label}: {why}"
    return None


def category_keypoint_problem(cat: dict[str, Any]) -> str | None:
    """A keypoint category's ``skeleton`` must join its points (1-based) and its ``flip_idx`` pair them."""
    from dataforge.keypoints import flip_permutation

    names = cat.get("keypoints")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return f"category {cat.get('name')!r}: keypoints must be a list of point names"
    for edge in cat.get("skeleton") or []:
        if not (
            isinstance(edge, list)
            and len(edge) == 2
            and all(type(v) is int and 1 <= v <= len(names) for v in edge)
        ):
            return f"category {cat.get('name')!r}: skeleton edge {edge!r} must be two point numbers in 1..{len(names)}"
    if cat.get("flip_idx") is not None:
        try:
            flip_permutation(names, cat["flip_idx"])
        except ValueError as exc:
            return f"category {cat.get('name')!r}: {exc}"
    return None


def polygon_bbox(segmentation: list[Any]) -> list[float] | None:
    xs: list[float] = []
    ys: list[float] = []
    for poly in segmentation:
        if not isinstance(poly, list) or len(poly) < 6 or not all(is_number(v) for v in poly):
            return None
        xs.extend(poly[0::2])
        ys.extend(poly[1::2])
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def assign_ids(wanted: list[Any], used: set[int], *, allow_zero: bool = True) -> tuple[list[int], int]:
    """Keep each wanted id that is free; give the rest max+1, max+2, ... Returns (ids, how many changed).

    Two passes, so that one collision does not push later ids out of their place.
    """
    wanted_set = set(wanted)
    if (
        len(wanted_set) == len(wanted)
        and not ({type(w) for w in wanted_set} - {int})
        and (allow_zero or 0 not in wanted_set)
        and wanted_set.isdisjoint(used)
    ):
        return list(wanted), 0  # the common case: nothing collides
    taken = set(used)
    out: list[int | None] = []
    for w in wanted:
        ok = type(w) is int and (allow_zero or w != 0) and w not in taken
        out.append(w if ok else None)
        if ok:
            taken.add(w)
    nxt = max(taken, default=0) + 1
    changed = 0
    for i, v in enumerate(out):
        if v is None:
            out[i] = nxt
            taken.add(nxt)
            nxt += 1
            changed += 1
    return [int(v) for v in out if v is not None], changed
