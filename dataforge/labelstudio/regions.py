"""Label Studio results <-> store objects, for ``labelstudio push`` and ``pull``.

One Label Studio annotation (or prediction) is a list of regions: ``rectanglelabels`` (a box),
``polygonlabels`` and ``brushlabels`` (an instance mask: COCO polygons, or an RLE exactly as
painted), ``keypointlabels`` (a named point; it joins the object of its ``parentID`` region, or
else the one keypoint instance of the category whose points they are) and ``choices`` (image-level
labels). The region parsers are the Label Studio JSON importer's, so a pull reads a region exactly
as an import of the same export would. Every region is checked against the store (its categories,
their point names, the image's size, shapes inside the image); a problem is a :class:`DataError`
naming the task and region, never a silently dropped or wrong object.

Semantic regions (a class's pixels, ``"semantic": true``) are pushed as brush regions whose id
starts with ``sem-``; a pulled brush region with such an id is a semantic region again. Every other
mask is an instance.
"""

from __future__ import annotations

from typing import Any

from dataforge.errors import DataError
from dataforge.formats.labelstudio_json import (
    LabelStudioJsonFormat,
    _finish_keypoints,
    _keypoint_instances,
    _mask_region,
    brush_region,
    choices_region,
    keypoint_region,
    polygon_region,
    rect_region,
)

SEMANTIC_PREFIX = "sem-"
#: the region types a pull reads; any other is refused (dataforge would drop it)
READ = ("rectanglelabels", "polygonlabels", "brushlabels", "keypointlabels", "choices")


def object_regions(
    obj: dict[str, Any],
    label: str,
    size_wh: tuple[int, int],
    rid: str,
    point_names: list[str] | None,
    score: float | None = None,
) -> tuple[list[dict[str, Any]], set[str]]:
    """One store object (or prediction: absolute pixels, COCO fields) as Label Studio regions: its
    mask as a polygon (one part) or brush region (else: exact), or its box as a rectangle; its
    labelled points as keypoint regions, children of it. Also which controls they use."""
    from dataforge.masks import decode, has_mask, is_rle

    w, h = size_wh
    seg: Any = obj.get("segmentation")
    kinds: set[str] = set()
    if has_mask(seg) and not is_rle(seg) and len(seg) == 1:
        region = polygon_region(seg[0], label, size_wh, rid)
        kinds.add("polygon")
    elif has_mask(seg):
        rid = SEMANTIC_PREFIX + rid if obj.get("semantic") else rid
        region = brush_region(decode(seg, h, w), label, size_wh, rid)
        kinds.add("brush")
    else:
        region = rect_region(obj["bbox"], label, size_wh, rid)
        kinds.add("box")
    if score is not None:
        region["score"] = score
    regions = [region]
    kps = obj.get("keypoints")
    if kps and point_names:
        for k in range(len(kps) // 3):
            x, y, v = kps[3 * k : 3 * k + 3]
            if v > 0 or score is not None:  # a prediction's third number is a score, not v
                regions.append(keypoint_region(x, y, point_names[k], size_wh, f"{rid}-kp{k + 1}", rid))
        kinds.add("keypoint")
    return regions, kinds


def annotation_objects(
    ann: dict[str, Any], img: dict[str, Any], categories: list[dict[str, Any]], where: str
) -> tuple[list[dict[str, Any]], list[int]]:
    """The store objects (COCO fields, absolute pixels, no ids) and the image-level category ids of
    one Label Studio annotation of store image ``img``."""
    from dataforge.ingest.checks import normalized_to_absolute, shape_problem
    from dataforge.masks import area, has_mask

    w, h = int(img["width"]), int(img["height"])
    by_name = {c["name"]: int(c["id"]) for c in categories}
    by_id = {int(c["id"]): c for c in categories}
    cats = dict(by_name)  # the parsers add a name they meet: an unknown label (checked below)
    point_names = {int(c["id"]): list(c["keypoints"]) for c in categories if c.get("keypoints")}
    known_points = {cid: len(names) for cid, names in point_names.items()}
    record: dict[str, Any] = {"width": w, "height": h}
    objects: list[dict[str, Any]] = []
    owners: dict[Any, dict[str, Any]] = {}
    points: list[dict[str, Any]] = []
    labels: list[int] = []
    for region in ann.get("result") or []:
        rid = f"{where} region {region.get('id', '?')}" if isinstance(region, dict) else f"{where} region ?"
        kind = region.get("type") if isinstance(region, dict) else None
        if kind not in READ:
            raise DataError(
                f"Label Studio {rid}: a {kind!r} region, which dataforge does not store "
                f"(it reads {', '.join(READ)})",
                hint="remove it in Label Studio, or pull with --on-error skip to leave this task out",
            )
        ow, oh = region.get("original_width"), region.get("original_height")
        if ow is not None and (ow, oh) != (w, h):
            raise DataError(
                f"Label Studio {rid}: annotated on a {ow}x{oh} image, but the store's image is {w}x{h}"
            )
        if kind == "choices":
            for choice in (region.get("value") or {}).get("choices") or []:
                if choice not in by_name:
                    raise DataError(
                        f"Label Studio {rid}: class {choice!r} is not a category of the store ({', '.join(by_name)})"
                    )
                labels.append(by_name[choice])
            continue
        if kind == "keypointlabels":
            points.append(region)
            continue
        parse = LabelStudioJsonFormat._box if kind == "rectanglelabels" else _mask_region
        obj = parse(region, int(img["id"]), rid, 0, cats, record)
        if kind == "brushlabels" and str(region.get("id", "")).startswith(SEMANTIC_PREFIX):
            obj["semantic"] = True
        objects.append(obj)
        owners[region.get("id")] = obj
    if points:
        single = [c["name"] for c in categories if c.get("keypoints")]
        objects += _keypoint_instances(
            points,
            owners,
            int(img["id"]),
            where,
            0,
            cats,
            point_names,
            single[0] if len(single) == 1 else None,
        )
    out: list[dict[str, Any]] = []
    for obj in objects:
        label = obj.get("_where", where)
        if "_problem" in obj:
            raise DataError(f"Label Studio {obj['_problem'][1]}")
        cid = obj.get("category_id")
        if cid not in by_id:
            name = next((n for n, i in cats.items() if i == cid), cid)
            raise DataError(
                f"Label Studio {label}: label {name!r} is not a category of the store ({', '.join(by_name)})"
            )
        if "_points" in obj:
            names = point_names.get(cid)
            if names is None or cid not in known_points:
                raise DataError(
                    f"Label Studio {label}: keypoints on a {by_id[cid]['name']!r} object, a category without points"
                )
            if len(names) > known_points[cid]:
                extra = names[known_points[cid] :]
                del names[known_points[cid] :]
                region_id = next(
                    r.get("id")
                    for r in points
                    if extra[0] in ((r.get("value") or {}).get("keypointlabels") or [])
                )
                raise DataError(
                    f"Label Studio {where} region {region_id}: point {extra[0]!r} is not a point of "
                    f"{by_id[cid]['name']!r} ({', '.join(names)})"
                )
            _finish_keypoints(obj, names)
    normalized_to_absolute(objects, {int(img["id"]): (w, h)})
    for obj in objects:
        label = obj.pop("_where", where)
        bbox = obj.get("bbox")
        x, y, bw, bh = (round(float(v), 6) for v in bbox) if isinstance(bbox, list) else (0, 0, 0, 0)
        if not (bw > 0 and bh > 0 and x >= -0.5 and y >= -0.5 and x + bw <= w + 0.5 and y + bh <= h + 0.5):
            raise DataError(
                f"Label Studio {label}: box xywh {[x, y, bw, bh]} is empty or outside the {w}x{h} image"
            )
        obj["bbox"] = [x, y, bw, bh]
        problem = shape_problem({**obj, "_where": label}, w, h, by_id[obj["category_id"]])
        if problem:
            raise DataError(f"Label Studio {problem[1]}")
        seg = obj.get("segmentation")
        entry: dict[str, Any] = {
            "category_id": obj["category_id"],
            "bbox": obj["bbox"],
            "area": float(area(seg, h, w)) if has_mask(seg) else bw * bh,
            "iscrowd": 0,
            "segmentation": seg if has_mask(seg) else [],
        }
        for key in ("keypoints", "num_keypoints", "semantic", "score"):
            if key in obj:
                entry[key] = obj[key]
        out.append(entry)
    return out, list(dict.fromkeys(labels))


def store_regions(
    objects: list[dict[str, Any]],
    labels: list[int],
    categories: list[dict[str, Any]],
    size_wh: tuple[int, int],
    prefix: str,
    *,
    scored: bool = False,
) -> tuple[list[dict[str, Any]], set[str]]:
    """An image's store objects (or predictions, ``scored``) and image labels as one Label Studio
    result list, and the controls it uses."""
    by_id = {int(c["id"]): c for c in categories}
    result: list[dict[str, Any]] = []
    kinds: set[str] = set()
    for i, obj in enumerate(objects):
        cat = by_id[int(obj["category_id"])]
        rid = f"{prefix}{obj.get('id', i)}"
        regions, used = object_regions(
            obj, cat["name"], size_wh, rid, cat.get("keypoints"), obj.get("score") if scored else None
        )
        result += regions
        kinds |= used
    if labels:
        result.append(choices_region([by_id[c]["name"] for c in labels], f"{prefix}img"))
    return result, kinds
