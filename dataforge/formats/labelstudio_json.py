"""Label Studio JSON export (a list of tasks) — import, and export as importable tasks.

Import: each task is one image. The image is the task's ``data.image`` (else the first string
value of ``data``): ``/data/local-files/?d=<path>`` (the path, URL-decoded), ``/data/upload/<n>/<file>``
or any URL (the file name), or a plain path; it is looked up under ``--images`` (default: the
JSON's folder), by path and then by file name. The **latest non-cancelled annotation** (by
``updated_at``, then id) is imported: ``rectanglelabels`` regions become boxes (percent of the
image, converted with the image's real size; ``original_width/height`` are checked against it),
``polygonlabels`` instance masks (percent points), ``brushlabels`` instance masks (Label Studio's
brush RLE: a bit-packed run-length code of the RGBA mask at ``original_width x original_height``;
alpha > 0 is the mask), and ``choices`` image-level labels. ``keypointlabels`` regions are single
points named by their label: those whose ``parentID`` is a rectangle, polygon or brush region
become that instance's keypoints;
the others of a task form one instance of the category named by ``--option keypoint_category``
(default: the control's ``from_name``). A category's keypoint names are in order of first
appearance; Label Studio has no visibility flag, so every point is v = 2. Rotated rectangles are
refused (Label Studio's own converters get them wrong for non-square images; dataforge stores
axis-aligned boxes). Other region types are counted in a warning. Task, annotation and annotator
ids are kept in ``source.labelstudio``.

Export: ``tasks.json`` (importable by Label Studio: ``data.image``, ``data.dataforge_id``, and the
store's labels as one annotation per task: boxes as rectangles; one-part polygons as polygons; other
masks (several parts, holes, RLE) as brush regions, exactly; keypoints as keypoint regions whose
``parentID`` is their box or mask region, hidden points (v = 1) written as visible and counted as approximated),
``label_config.xml`` for the project, and the images under ``images/``. Image URLs are
``/data/local-files/?d=<url_prefix><file_name>`` (``--option url_prefix=...``, default
``images/``): serve the export folder as local files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, quote, unquote, urlparse
from xml.sax.saxutils import quoteattr

import numpy as np

from dataforge.boxes import xywh_to_xyxy, xywh_to_xyxy_floats, xyxy_to_xywh_percent
from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ExportResult, ImportBatch
from dataforge.formats.common import copy_store_images, prepare_out_dir, problem
from dataforge.jsonio import load_json, write_json

if TYPE_CHECKING:
    from dataforge.store import Store


def image_ref(task_data: dict[str, Any]) -> str | None:
    """The image reference of a task: ``data.image`` or its first string value."""
    value = task_data.get("image")
    if not isinstance(value, str):
        value = next((v for v in task_data.values() if isinstance(v, str)), None)
    return value


def ref_to_path(ref: str) -> str:
    """``/data/local-files/?d=a/b%20c.jpg`` -> ``a/b c.jpg``; upload and http URLs -> the file name."""
    parsed = urlparse(ref)
    if parsed.path.rstrip("/").endswith("/data/local-files") or "d" in parse_qs(parsed.query):
        d = parse_qs(parsed.query).get("d")
        if d:
            return d[0]
    if parsed.scheme in ("http", "https", "s3", "gs") or ref.startswith("/data/"):
        return unquote(os.path.basename(parsed.path))
    return unquote(ref)


def latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    anns = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not anns:
        return None
    return max(anns, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


class LabelStudioJsonFormat:
    name: ClassVar[str] = "labelstudio"
    description: ClassVar[str] = (
        "Label Studio JSON tasks (latest annotation; percent boxes; choices as labels)"
    )
    can_import: ClassVar[bool] = True
    can_export: ClassVar[bool] = True
    image_labels: ClassVar[bool] = True  # image-level labels (see formats.accounting)
    carries: ClassVar[frozenset[str]] = frozenset({"masks", "keypoints"})

    def detect(self, path: Path) -> bool:
        if not (path.is_file() and path.suffix.lower() == ".json"):
            return False
        with open(path, "rb") as f:
            head = f.read(4096).lstrip()
        return head[:1] == b"[" and (
            b'"data"' in head and (b'"annotations"' in head or b'"predictions"' in head or b'"image"' in head)
        )

    def read(
        self, path: Path, *, images: Path | None = None, keypoint_category: str | None = None, **options: Any
    ) -> ImportBatch:
        if options:
            raise UsageError(
                f"labelstudio import: unknown options {sorted(options)} (known: keypoint_category)"
            )
        tasks = load_json(path, what="Label Studio JSON export")
        if not isinstance(tasks, list):
            raise DataError(
                f"{path.name}: expected a list of tasks, found a {type(tasks).__name__}", source=str(path)
            )
        root = images or path.parent
        cats: dict[str, int] = {}
        imgs: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        other: dict[str, int] = {}
        keypoint_names: dict[int, list[str]] = {}  # category id -> point names, in order of appearance
        for i, task in enumerate(tasks):
            where = f"{path.name} task {task.get('id', f'#{i}') if isinstance(task, dict) else f'#{i}'}"
            image_id = len(imgs) + 1
            record: dict[str, Any] = {"id": image_id}
            imgs.append(record)
            data = task.get("data") if isinstance(task, dict) else None
            ref = image_ref(data) if isinstance(data, dict) else None
            if ref is None:
                record["file_name"] = f"task-{i}"
                record["_problem"] = problem("no image", f"{where}: no image reference in 'data'")
                continue
            rel_path = ref_to_path(ref)
            src = (
                rel_path
                if (root / rel_path).is_file() or not (root / os.path.basename(rel_path)).is_file()
                else os.path.basename(rel_path)
            )
            record["file_name"] = src
            record["_src"] = src
            ann = latest_annotation(task)
            record["source_labelstudio"] = {
                k: v
                for k, v in {
                    "task_id": task.get("id"),
                    "annotation_id": ann.get("id") if ann else None,
                    "completed_by": ann.get("completed_by") if ann else None,
                    "updated_at": ann.get("updated_at") if ann else None,
                }.items()
                if v is not None
            }
            if ann is None:
                continue
            labels: list[int] = []
            boxes: dict[Any, dict[str, Any]] = {}
            points: list[dict[str, Any]] = []
            for region in ann.get("result") or []:
                rtype = region.get("type") if isinstance(region, dict) else None
                region_where = f"{where} region {region.get('id', '?') if isinstance(region, dict) else '?'}"
                if rtype == "rectanglelabels":
                    box = self._box(region, image_id, region_where, len(anns) + 1, cats, record)
                    anns.append(box)
                    boxes[region.get("id")] = box
                elif rtype in ("polygonlabels", "brushlabels"):
                    shape = _mask_region(region, image_id, region_where, len(anns) + 1, cats, record)
                    anns.append(shape)
                    boxes[region.get("id")] = shape  # keypoints may name it as their parent too
                elif rtype == "keypointlabels":
                    points.append(region)
                elif rtype == "choices":
                    for choice in (region.get("value") or {}).get("choices") or []:
                        labels.append(cats.setdefault(str(choice), len(cats) + 1))
                elif rtype:
                    other[rtype] = other.get(rtype, 0) + 1
            if labels:
                record["labels"] = labels
            if points:
                anns += _keypoint_instances(
                    points, boxes, image_id, where, len(anns) + 1, cats, keypoint_names, keypoint_category
                )
        for a in anns:  # points in their category's name order, now that every name is known
            if "_points" in a:
                _finish_keypoints(a, keypoint_names[a["category_id"]])
        for img in imgs:  # lineage rides in the image record; ingest puts it under 'labelstudio'
            if "source_labelstudio" in img:
                img["labelstudio"] = img.pop("source_labelstudio")
        warnings = (
            [
                f"{path.name}: not imported (dataforge imports rectangles, polygons, brushes, keypoints "
                "and choices): " + ", ".join(f"{n} {k}" for k, n in sorted(other.items()))
            ]
            if other
            else []
        )
        return ImportBatch(
            format=self.name,
            source=str(path.resolve()),
            images_root=root,
            images=imgs,
            annotations=anns,
            categories=[
                {
                    "id": c,
                    "name": n,
                    **({"keypoints": keypoint_names[c], "skeleton": []} if c in keypoint_names else {}),
                }
                for n, c in cats.items()
            ],
            warnings=warnings,
            private_keys=True,
            dropped={f"{k} regions (dataforge has no such type)": n for k, n in sorted(other.items())},
        )

    @staticmethod
    def _box(
        region: dict[str, Any],
        image_id: int,
        where: str,
        ann_id: int,
        cats: dict[str, int],
        record: dict[str, Any],
    ) -> dict[str, Any]:
        ann: dict[str, Any] = {"id": ann_id, "image_id": image_id, "_where": where}
        value = region.get("value") or {}
        names = value.get("rectanglelabels") or []
        rotation = value.get("rotation") or 0
        if not names:
            ann["_problem"] = problem("no label", f"{where}: rectangle without a label")
            return ann
        if isinstance(rotation, (int, float)) and abs(rotation) > 1e-9:
            ann["_problem"] = problem(
                "rotated box",
                f"{where}: the box is rotated {rotation:g} degrees; dataforge "
                'stores axis-aligned boxes (set canRotate="false" in the labeling config)',
            )
            return ann
        try:
            x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        except (KeyError, TypeError, ValueError):
            ann["_problem"] = problem("bad bbox", f"{where}: x, y, width, height must be numbers")
            return ann
        ann["category_id"] = cats.setdefault(str(names[0]), len(cats) + 1)
        ann["_bbox_norm"] = ["xyxy", [v / 100 for v in xywh_to_xyxy_floats((x, y, w, h))]]  # percent
        _size(region, record)
        if isinstance(region.get("score"), (int, float)):
            ann["score"] = region["score"]
        return ann

    def export(
        self,
        store: Store,
        out: Path,
        *,
        image_ids: list[int],
        url_prefix: str = "images/",
        link: bool = False,
        **options: Any,
    ) -> ExportResult:
        if options:
            raise UsageError(f"labelstudio export: unknown options {sorted(options)} (known: url_prefix)")
        prepare_out_dir(out)
        names = store.index.category_names
        wanted = set(image_ids)
        images = [img for img in store.images if img["id"] in wanted]
        from dataforge.masks import decode

        names_of_points = {
            c["id"]: [str(k) for k in c.get("keypoints") or []] for c in store.data["categories"]
        }
        tasks = []
        n = hidden = 0
        kinds: set[str] = set()
        point_labels: set[str] = set()
        for img in images:
            w, h = img["width"], img["height"]
            result: list[dict[str, Any]] = []
            for a in store.index.anns_by_image.get(img["id"], []):
                label, rid = names[a["category_id"]], f"df-{a['id']}"
                seg = a.get("segmentation")
                if seg and isinstance(seg, list) and len(seg) == 1:
                    result.append(polygon_region(seg[0], label, (w, h), rid))
                    kinds.add("polygon")
                elif seg:
                    result.append(brush_region(decode(seg, h, w), label, (w, h), rid))
                    kinds.add("brush")
                else:
                    result.append(rect_region(a["bbox"], label, (w, h), rid))
                if a.get("keypoints"):
                    point_names = names_of_points[a["category_id"]]
                    kps = a["keypoints"]
                    for k in range(len(kps) // 3):
                        x, y, v = kps[3 * k : 3 * k + 3]
                        if v > 0:
                            result.append(
                                keypoint_region(x, y, point_names[k], (w, h), f"{rid}-kp{k + 1}", rid)
                            )
                            hidden += v == 1
                    kinds.add("keypoint")
                    point_labels.update(point_names)
                n += 1
            if img.get("labels"):
                result.append(choices_region([names[c] for c in img["labels"]], f"df-img-{img['id']}"))
            task: dict[str, Any] = {
                "data": {
                    "image": "/data/local-files/?d=" + quote(url_prefix + img["file_name"]),
                    "dataforge_id": img["id"],
                }
            }
            if result:
                task["annotations"] = [{"result": result, "was_cancelled": False}]
            tasks.append(task)
        write_json(out / "tasks.json", tasks)
        (out / "label_config.xml").write_text(
            label_config(
                [c["name"] for c in store.data["categories"]],
                polygons="polygon" in kinds,
                brushes="brush" in kinds,
                keypoints=sorted(point_labels),
            ),
            encoding="utf-8",
        )
        copy_store_images(
            store, out, [(img["file_name"], f"images/{img['file_name']}") for img in images], link=link
        )
        return ExportResult(
            out=out,
            images=len(images),
            annotations=n,
            files=[out / "tasks.json", out / "label_config.xml"],
            notes=[f"image URLs: /data/local-files/?d={url_prefix}<file_name>"],
            approximated={
                "hidden keypoints (v=1, written as visible: Label Studio has no visibility)": hidden
            }
            if hidden
            else {},
        )


def rect_region(
    bbox_xywh: list[float], label: str, size_wh: tuple[int, int], region_id: str, score: float | None = None
) -> dict[str, Any]:
    """A ``rectanglelabels`` result for an absolute-pixel COCO box (Label Studio wants percent)."""
    px, py, pw, ph = (float(v) for v in xyxy_to_xywh_percent(xywh_to_xyxy(bbox_xywh), size_wh))
    region: dict[str, Any] = {
        "id": region_id,
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": size_wh[0],
        "original_height": size_wh[1],
        "image_rotation": 0,
        "value": {"x": px, "y": py, "width": pw, "height": ph, "rotation": 0, "rectanglelabels": [label]},
    }
    if score is not None:
        region["score"] = score
    return region


def choices_region(labels: list[str], region_id: str) -> dict[str, Any]:
    """An image-level ``choices`` result (the ``class`` control of :func:`label_config`)."""
    return {
        "id": region_id,
        "from_name": "class",
        "to_name": "image",
        "type": "choices",
        "value": {"choices": labels},
    }


def label_config(
    categories: list[str],
    *,
    boxes: bool = True,
    choices: bool = True,
    polygons: bool = False,
    brushes: bool = False,
    keypoints: list[str] | None = None,
) -> str:
    """A labeling config for the store's categories: RectangleLabels and/or Choices, and the
    polygon, brush and keypoint controls the exported regions use."""
    labels = "".join(f"    <Label value={quoteattr(c)}/>\n" for c in categories)
    parts = ['<View>\n  <Image name="image" value="$image"/>\n']
    if boxes:
        parts.append(
            f'  <RectangleLabels name="label" toName="image" canRotate="false">\n{labels}'
            "  </RectangleLabels>\n"
        )
    if polygons:
        parts.append(f'  <PolygonLabels name="polygon" toName="image">\n{labels}  </PolygonLabels>\n')
    if brushes:
        parts.append(f'  <BrushLabels name="brush" toName="image">\n{labels}  </BrushLabels>\n')
    if keypoints:
        points = "".join(f"    <Label value={quoteattr(k)}/>\n" for k in keypoints)
        parts.append(f'  <KeyPointLabels name="kp" toName="image">\n{points}  </KeyPointLabels>\n')
    if choices:
        opts = "".join(f"    <Choice value={quoteattr(c)}/>\n" for c in categories)
        parts.append(f'  <Choices name="class" toName="image" choice="multiple">\n{opts}  </Choices>\n')
    parts.append("</View>\n")
    return "".join(parts)


# -- masks and keypoints -------------------------------------------------------------------------


def _size(region: dict[str, Any], record: dict[str, Any]) -> tuple[int, int] | None:
    """A region's ``original_width, original_height`` (also the image's stated size), if given."""
    ow, oh = region.get("original_width"), region.get("original_height")
    if type(ow) is int and type(oh) is int and ow > 0 and oh > 0:
        if "width" not in record:
            record["width"], record["height"] = ow, oh  # checked against the real image by the import
        return ow, oh
    return None


def _mask_region(
    region: dict[str, Any],
    image_id: int,
    where: str,
    ann_id: int,
    cats: dict[str, int],
    record: dict[str, Any],
) -> dict[str, Any]:
    """A ``polygonlabels`` (percent points) or ``brushlabels`` (Label Studio RLE) region."""
    ann: dict[str, Any] = {"id": ann_id, "image_id": image_id, "_where": where, "iscrowd": 0}
    value: dict[str, Any] = region["value"] if isinstance(region.get("value"), dict) else {}
    kind = region["type"]
    names = value.get(kind) or []
    if not names:
        ann["_problem"] = problem("no label", f"{where}: {kind[:-6]} without a label")
        return ann
    ann["category_id"] = cats.setdefault(str(names[0]), len(cats) + 1)
    size = _size(region, record)
    if kind == "polygonlabels":
        pts = value.get("points")
        try:
            flat = [float(v) / 100 for p in pts for v in p]  # type: ignore[union-attr]
            if any(len(p) != 2 for p in pts):  # type: ignore[union-attr]
                raise ValueError
        except (TypeError, ValueError):
            ann["_problem"] = problem(
                "bad segmentation", f"{where}: points must be [[x, y], ...] percent numbers"
            )
            return ann
        if len(flat) < 6 or not all(math.isfinite(v) for v in flat):
            ann["_problem"] = problem(
                "bad segmentation",
                f"{where}: a polygon needs at least 3 finite points, found {len(flat) // 2}",
            )
            return ann
        xs, ys = flat[0::2], flat[1::2]
        ann["_polygon_norm"] = flat
        ann["_bbox_norm"] = ["xyxy", [min(xs), min(ys), max(xs), max(ys)]]
        return ann
    if size is None:
        ann["_problem"] = problem(
            "bad segmentation", f"{where}: a brush region needs original_width and original_height"
        )
        return ann
    try:
        mask = ls_rle_decode(value.get("rle"), *size)
    except ValueError as exc:
        ann["_problem"] = problem("bad segmentation", f"{where}: brush RLE: {exc}")
        return ann
    from dataforge.masks import encode, rle_bbox

    rle = encode(mask)
    ann["segmentation"], ann["area"], ann["_size"] = rle, int(mask.sum()), size
    ann["bbox"] = rle_bbox(rle) if ann["area"] else None
    if not ann["area"]:
        ann["_problem"] = problem("bad segmentation", f"{where}: the brush mask is empty")
    return ann


def _keypoint_instances(
    points: list[dict[str, Any]],
    boxes: dict[Any, dict[str, Any]],
    image_id: int,
    where: str,
    first_id: int,
    cats: dict[str, int],
    keypoint_names: dict[int, list[str]],
    keypoint_category: str | None,
) -> list[dict[str, Any]]:
    """Group a task's keypoint regions into instances: by ``parentID`` (a rectangle of the task), the
    rest into one instance; each instance gets ``_points`` ``{name: (x%, y%)}``."""
    new: list[dict[str, Any]] = []
    loose: dict[str, dict[str, Any]] = {}
    for region in points:
        value: dict[str, Any] = region["value"] if isinstance(region.get("value"), dict) else {}
        labels = value.get("keypointlabels") or []
        rwhere = f"{where} region {region.get('id', '?')}"
        parent = boxes.get(region.get("parentID"))
        if parent is not None and "category_id" in parent:
            owner = parent
        else:
            cat_name = keypoint_category or str(region.get("from_name") or "keypoints")
            if cat_name not in loose:
                loose[cat_name] = {
                    "id": first_id + len(new),
                    "image_id": image_id,
                    "category_id": cats.setdefault(cat_name, len(cats) + 1),
                    "_where": f"{where} keypoints",
                    "iscrowd": 0,
                }
                new.append(loose[cat_name])
            owner = loose[cat_name]
        if "_problem" in owner:
            continue
        try:
            x, y = float(value["x"]) / 100, float(value["y"]) / 100
            if not (labels and math.isfinite(x) and math.isfinite(y)):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            owner["_problem"] = problem(
                "bad keypoints", f"{rwhere}: a keypoint needs x, y numbers and a label"
            )
            continue
        name = str(labels[0])
        pts = owner.setdefault("_points", {})
        if name in pts:
            owner["_problem"] = problem(
                "bad keypoints",
                f"{rwhere}: a second {name!r} point in one instance (give each a parentID box)",
            )
            continue
        pts[name] = (x, y)
        names = keypoint_names.setdefault(owner["category_id"], [])
        if name not in names:
            names.append(name)
    return new


def _finish_keypoints(ann: dict[str, Any], names: list[str]) -> None:
    """``_points`` as normalized ``x, y, v`` triplets in the category's name order; a loose
    instance's box is its points' extent."""
    pts = ann.pop("_points")
    flat: list[float] = []
    for n in names:
        flat += [pts[n][0], pts[n][1], 2] if n in pts else [0.0, 0.0, 0]
    if "_bbox_norm" not in ann and "bbox" in ann:  # a brush mask: absolute already, its size known
        w, h = ann["_size"]
        ann["keypoints"] = [
            round(v * w, 4) if k % 3 == 0 else round(v * h, 4) if k % 3 == 1 else v
            for k, v in enumerate(flat)
        ]
        ann["num_keypoints"] = sum(1 for v in flat[2::3] if v > 0)
        return
    ann["_keypoints_norm"] = flat
    if "_bbox_norm" not in ann:
        xs, ys = [p[0] for p in pts.values()], [p[1] for p in pts.values()]
        pad = 1e-3  # a lone point's box: 0.1% of the image round it
        x0, x1 = (min(xs), max(xs)) if max(xs) > min(xs) else (min(xs) - pad, min(xs) + pad)
        y0, y1 = (min(ys), max(ys)) if max(ys) > min(ys) else (min(ys) - pad, min(ys) + pad)
        ann["_bbox_norm"] = ["xyxy", [x0, y0, x1, y1]]


def polygon_region(poly: list[float], label: str, size_wh: tuple[int, int], region_id: str) -> dict[str, Any]:
    """A ``polygonlabels`` result for an absolute-pixel COCO polygon (percent points)."""
    w, h = size_wh
    return {
        "id": region_id,
        "from_name": "polygon",
        "to_name": "image",
        "type": "polygonlabels",
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {
            "points": [[poly[i] / w * 100, poly[i + 1] / h * 100] for i in range(0, len(poly), 2)],
            "polygonlabels": [label],
        },
    }


def brush_region(mask: Any, label: str, size_wh: tuple[int, int], region_id: str) -> dict[str, Any]:
    """A ``brushlabels`` result holding a mask exactly (Label Studio's RLE)."""
    return {
        "id": region_id,
        "from_name": "brush",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": size_wh[0],
        "original_height": size_wh[1],
        "image_rotation": 0,
        "value": {"format": "rle", "rle": ls_rle_encode(mask), "brushlabels": [label]},
    }


def keypoint_region(
    x: float, y: float, name: str, size_wh: tuple[int, int], region_id: str, parent: str
) -> dict[str, Any]:
    """A ``keypointlabels`` result (percent), the child of its instance's rectangle."""
    w, h = size_wh
    return {
        "id": region_id,
        "from_name": "kp",
        "to_name": "image",
        "type": "keypointlabels",
        "parentID": parent,
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {"x": x / w * 100, "y": y / h * 100, "width": 0.5, "keypointlabels": [name]},
    }


#: the run-length field widths (bits) dataforge writes; Label Studio reads any the header declares
_LS_RLE_SIZES = (3, 4, 8, 16)


def ls_rle_decode(rle: Any, width: int, height: int) -> np.ndarray:
    """Label Studio's brush RLE (a list of byte values) as an ``(H, W)`` bool mask (alpha > 0).

    The bit stream: 32 bits the value count (``W * H * 4``, RGBA), 5 bits word size - 1, four 4-bit
    run-field widths - 1; then blocks: 1 bit (1 = a run of one value, 0 = literal values), 2 bits
    which field width, that many bits the count - 1, then one value (run) or count values."""
    if not isinstance(rle, list) or not all(type(b) is int and 0 <= b <= 255 for b in rle) or len(rle) < 7:
        raise ValueError("'rle' must be a list of byte values")
    bits = np.unpackbits(np.asarray(rle, dtype=np.uint8))
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > len(bits):
            raise ValueError("truncated")
        v = 0
        for b in bits[pos : pos + n]:
            v = (v << 1) | int(b)
        pos += n
        return v

    num = read(32)
    if num != width * height * 4:
        raise ValueError(f"it holds {num} values, not width * height * 4 = {width * height * 4}")
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.uint8)
    i = 0
    while i < num:
        is_run = read(1)
        j = i + 1 + read(sizes[read(2)])
        if j > num:
            raise ValueError("runs overrun the image")
        if is_run:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    return out.reshape(height, width, 4)[..., 3] > 0


def ls_rle_encode(mask: Any) -> list[int]:
    """An ``(H, W)`` mask as Label Studio's brush RLE (RGBA, 255 where the mask is), in runs."""
    flat = np.repeat(np.asarray(mask, dtype=bool).reshape(-1), 4)
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    starts = np.concatenate([[0], edges])
    lengths = np.diff(np.concatenate([starts, [len(flat)]]))
    header = f"{len(flat):032b}{8 - 1:05b}" + "".join(f"{s - 1:04b}" for s in _LS_RLE_SIZES)
    parts = [header]
    top = 1 << _LS_RLE_SIZES[-1]
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        value = 255 if flat[start] else 0
        while length > 0:
            n = min(length, top)
            which = next(k for k, s in enumerate(_LS_RLE_SIZES) if n - 1 < (1 << s))
            parts.append(f"1{which:02b}{n - 1:0{_LS_RLE_SIZES[which]}b}{value:08b}")
            length -= n
    bitstring = "".join(parts)
    bitstring += "0" * (-len(bitstring) % 8)
    return np.packbits(np.frombuffer(bitstring.encode(), dtype=np.uint8) - 48).tolist()
