"""CVAT for images, XML 1.1 (import only): boxes, polygons, masks, points, polylines, skeletons, tags.

``<image name=... width=... height=... [subset=...]>`` elements hold shapes, each with ``label``,
``occluded``, ``z_order`` and ``<attribute name=...>`` children (kept in ``attributes``):

- ``<box xtl ytl xbr ybr>``: a box;
- ``<polygon points="x,y;x,y;...">``: an instance mask (COCO polygon), its box the polygon's extent;
- ``<mask rle left top width height>``: an instance mask; CVAT's ``rle`` is comma-separated run
  lengths over the ``width`` x ``height`` rectangle at ``left, top``, row-major, background first
  (stored as COCO RLE; runs that do not cover the rectangle are an error);
- ``<skeleton>`` with named ``<points label=... outside occluded>`` children: keypoints, named and
  joined as the label's ``<svg>`` in ``<meta>`` declares (``outside`` -> v = 0, ``occluded`` -> 1);
- ``<points points=...>``: keypoints named ``1..K`` (the most points any shape of that label has;
  fewer are padded with v = 0), v = 1 if occluded else 2;
- ``<polyline points=...>``: keypoints ``1..K`` joined in order by the category's skeleton, so a
  line moves through augment as its vertices do;
- ``<tag label=...>``: an image-level label.

Keypoint shapes get the extent of their labelled points as their box (at least 1 px). Ellipses and
cuboids are not imported: they are counted in a warning. Categories are the labels declared in
``<meta>`` (all of them, used or not; a skeleton's points are its keypoint names, not categories).

Images are keyed by (subset, name): a project export repeats names across subsets. They are
looked up as ``images/<subset>/<name>``, ``images/<name>`` or ``<name>`` beside the XML (or under
``--images``); the ``task_id`` attribute is not trusted. The subset becomes the split (lower case).
"CVAT for video" (tracks, interpolation mode) is refused with a message.
"""

from __future__ import annotations

import contextlib
import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ExportResult, ImportBatch
from dataforge.formats.common import problem

if TYPE_CHECKING:
    from dataforge.store import Store

OTHER_SHAPES = ("ellipse", "cuboid")
POINT_SHAPES = ("points", "polyline")


def _points(text: str) -> list[float]:
    """CVAT's ``"x,y;x,y"`` as a flat list; ValueError for anything else."""
    out: list[float] = []
    for pair in text.strip().split(";"):
        xy = pair.split(",")
        if len(xy) != 2:
            raise ValueError(f"points must be 'x,y;x,y', found {text[:40]!r}")
        out += [float(xy[0]), float(xy[1])]
    if not all(math.isfinite(v) for v in out):
        raise ValueError("a point is NaN or infinite")
    return out


def _mask(el: ET.Element, record: dict[str, Any]) -> dict[str, Any]:
    """A ``<mask>``'s RLE (row-major runs over its rectangle, background first) as COCO RLE."""
    import numpy as np

    from dataforge.masks import encode, rle_bbox

    try:
        left, top, w, h = (int(float(el.get(k, ""))) for k in ("left", "top", "width", "height"))
        runs = [int(c) for c in el.get("rle", "").split(",")]
    except ValueError:
        raise ValueError("rle, left, top, width and height must be numbers") from None
    if "width" not in record or "height" not in record:
        raise ValueError("its <image> has no width and height")
    iw, ih = record["width"], record["height"]
    if any(r < 0 for r in runs) or sum(runs) != w * h:
        raise ValueError(f"rle runs cover {sum(runs)} pixels, not width * height = {w * h}")
    if w <= 0 or h <= 0 or left < 0 or top < 0 or left + w > iw or top + h > ih:
        raise ValueError(f"its rectangle {left},{top} {w}x{h} is outside the {iw}x{ih} image")
    crop = np.repeat(np.arange(len(runs)) % 2 == 1, runs).reshape(h, w)
    full = np.zeros((ih, iw), dtype=bool)
    full[top : top + h, left : left + w] = crop
    rle = encode(full)
    return {"segmentation": rle, "bbox": rle_bbox(rle), "area": int(crop.sum()), "iscrowd": 0}


def _points_box(ann: dict[str, Any]) -> None:
    """A keypoint shape's box: the extent of its labelled points, at least 1 px each way."""
    kps = ann["keypoints"]
    xs = [kps[i] for i in range(0, len(kps), 3) if kps[i + 2] > 0]
    ys = [kps[i + 1] for i in range(0, len(kps), 3) if kps[i + 2] > 0]
    if not xs:
        ann["bbox"] = None  # no labelled point: check_annotations reports it
        return
    x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    ann["bbox"] = [x0 - (w - (x1 - x0)) / 2, y0 - (h - (y1 - y0)) / 2, w, h]


def _finish_points(ann: dict[str, Any], k: int) -> None:
    """A points/polyline shape as K keypoints (padded with unlabelled ones)."""
    pts, v = ann["_points"], ann.pop("_v")
    kps: list[float] = []
    for i in range(k):
        kps += [pts[2 * i], pts[2 * i + 1], v] if 2 * i < len(pts) else [0.0, 0.0, 0]
    ann["keypoints"] = kps
    ann["num_keypoints"] = sum(1 for x in kps[2::3] if x > 0)
    _points_box(ann)


def _skeleton_layout(label_el: ET.Element, doc: ET.Element) -> tuple[list[str], list[list[int]]]:
    """A skeleton label's point names (its sub-labels, in order) and edges (1-based, from the
    ``data-node-from``/``data-node-to`` lines of its ``<svg>``)."""
    name = (label_el.findtext("name") or "").strip()
    names = [
        (sub.findtext("name") or "").strip()
        for sub in doc.iter("label")
        if (sub.findtext("parent") or "").strip() == name
    ]
    svg = label_el.findtext("svg") or ""
    node_names = dict(re.findall(r'data-node-id="(\d+)"[^>]*?data-label-name="([^"]*)"', svg))
    edges = []
    for a, b in re.findall(r'data-node-from="(\d+)"[^>]*?data-node-to="(\d+)"', svg):
        na, nb = node_names.get(a), node_names.get(b)
        if na in names and nb in names:
            edges.append([names.index(na) + 1, names.index(nb) + 1])
    return names, edges


class CvatFormat:
    name: ClassVar[str] = "cvat"
    description: ClassVar[str] = (
        "CVAT for images XML 1.1 (boxes, polygons, masks, points, polylines, skeletons, tags; import only)"
    )
    can_import: ClassVar[bool] = True
    can_export: ClassVar[bool] = False

    def detect(self, path: Path) -> bool:
        files = [path] if path.is_file() else sorted(path.glob("*.xml")) if path.is_dir() else []
        for f in files:
            if f.suffix.lower() == ".xml":
                head = f.read_bytes()[:2048]
                if b"<annotations" in head and b"<version>1.1</version>" in head:
                    return True
        return False

    def read(self, path: Path, *, images: Path | None = None, **options: Any) -> ImportBatch:
        if options:
            raise UsageError(f"cvat import: unknown options {sorted(options)}")
        if path.is_dir():
            xmls = [f for f in sorted(path.glob("*.xml")) if self.detect(f)]
            if len(xmls) != 1:
                raise DataError(
                    f"{path}: expected one CVAT XML file, found {len(xmls)}",
                    source=str(path),
                    hint="pass the XML file itself",
                )
            path = xmls[0]
        try:
            doc = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise DataError(
                f"{path.name}:{exc.position[0]}: malformed XML ({exc})", source=str(path)
            ) from None
        if doc.tag != "annotations":
            raise DataError(f"{path.name}: root element is <{doc.tag}>, not <annotations>", source=str(path))
        version = (doc.findtext("version") or "").strip()
        if version != "1.1":
            raise DataError(
                f"{path.name}: CVAT XML version {version or '?'}; dataforge reads 1.1", source=str(path)
            )
        if doc.find("track") is not None:
            raise DataError(
                f"{path.name}: this is a 'CVAT for video' export (tracks); dataforge imports "
                "'CVAT for images' exports",
                source=str(path),
                hint="in CVAT, export the task as 'CVAT for images 1.1'",
            )
        root = images or path.parent
        declared: list[str] = []
        skeletons: dict[str, tuple[list[str], list[list[int]]]] = {}
        for label_el in doc.iter("label"):
            name = (label_el.findtext("name") or "").strip()
            if (label_el.findtext("parent") or "").strip():
                continue  # a skeleton's point: a keypoint name, not a category
            if (label_el.findtext("type") or "").strip() == "skeleton":
                skeletons[name] = _skeleton_layout(label_el, doc)
            if name and name not in declared:
                declared.append(name)
        cats = {n: i + 1 for i, n in enumerate(declared)}
        point_shapes: dict[str, dict[str, int]] = {}  # label -> {"points" | "polyline": most points}
        imgs: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        other: Counter[str] = Counter()
        for el in doc.findall("image"):
            image_id = len(imgs) + 1
            name = el.get("name", "")
            subset = el.get("subset")
            where = f"{path.name} image {name!r}" + (f" ({subset})" if subset else "")
            src = self._find(root, name, subset)
            record: dict[str, Any] = {
                "id": image_id,
                "file_name": f"{subset}/{name}" if subset else name,
                "_src": src,
            }
            if subset:
                record["split"] = subset.lower()
            w, h = el.get("width"), el.get("height")
            if w and h and w.isdigit() and h.isdigit():
                record["width"], record["height"] = int(w), int(h)
            imgs.append(record)
            labels = []
            for child in el:
                if child.tag == "tag":
                    label = child.get("label", "")
                    if label not in cats:
                        cats[label] = len(cats) + 1
                    labels.append(cats[label])
                elif child.tag == "box":
                    anns.append(self._box(child, image_id, where, len(anns) + 1, cats))
                elif child.tag in ("polygon", "mask", "skeleton", *POINT_SHAPES):
                    ann = self._shape(child, record, where, len(anns) + 1, cats, skeletons)
                    anns.append(ann)
                    if child.tag in POINT_SHAPES and "_points" in ann:
                        most = point_shapes.setdefault(ann["_label"], {})
                        most[child.tag] = max(most.get(child.tag, 0), len(ann["_points"]) // 2)
                elif child.tag in OTHER_SHAPES:
                    other[child.tag] += 1
            if labels:
                record["labels"] = labels
        warnings = []
        dropped = {f"{k}s (dataforge has no such shape)": n for k, n in sorted(other.items())}
        approximated = {}
        if other:
            warnings.append(
                f"{path.name}: not imported (dataforge has no such shapes): "
                + ", ".join(f"{n} {k}" for k, n in sorted(other.items()))
            )
        categories: list[dict[str, Any]] = [{"id": c, "name": n} for n, c in cats.items()]
        for cat in categories:
            name = cat["name"]
            if name in skeletons:
                cat["keypoints"], cat["skeleton"] = skeletons[name]
            elif name in point_shapes:
                kinds = point_shapes[name]
                if len(kinds) > 1:
                    warnings.append(
                        f"{path.name}: label {name!r} is used for both points and polylines; "
                        "both are read as its keypoints"
                    )
                k = max(kinds.values())
                cat["keypoints"] = [str(i + 1) for i in range(k)]
                cat["skeleton"] = [[i, i + 1] for i in range(1, k)] if "polyline" in kinds else []
                for ann in anns:
                    if ann.get("_label") == name and "_points" in ann:
                        _finish_points(ann, k)
        for ann in anns:
            ann.pop("_points", None)
            ann.pop("_label", None)
        if point_shapes:
            approximated["points and polylines (read as keypoints named 1..K)"] = sum(
                1
                for a in anns
                if a.get("keypoints") and a.get("category_id") in {cats.get(n) for n in point_shapes}
            )
            warnings.append(
                f"{path.name}: points and polylines imported as keypoints named 1..K "
                f"({', '.join(sorted(point_shapes))}); polylines keep their order in the skeleton"
            )
        return ImportBatch(
            format=self.name,
            source=str(path.resolve()),
            images_root=root,
            images=imgs,
            annotations=anns,
            categories=categories,
            warnings=warnings,
            private_keys=True,
            dropped=dropped,
            approximated=approximated,
        )

    @staticmethod
    def _find(root: Path, name: str, subset: str | None) -> str:
        for cand in ([f"images/{subset}/{name}"] if subset else []) + [f"images/{name}", name]:
            if (root / cand).is_file():
                return cand
        return f"images/{subset}/{name}" if subset else f"images/{name}"

    @staticmethod
    def _box(el: ET.Element, image_id: int, where: str, ann_id: int, cats: dict[str, int]) -> dict[str, Any]:
        label = el.get("label", "")
        ann: dict[str, Any] = {"id": ann_id, "image_id": image_id, "_where": f"{where} box {label!r}"}
        try:
            x1, y1, x2, y2 = (float(el.get(k, "")) for k in ("xtl", "ytl", "xbr", "ybr"))
        except ValueError:
            ann["_problem"] = problem(
                "bad bbox", f"{where}: box {label!r} has missing or non-numeric corners"
            )
            return ann
        if not label:
            ann["_problem"] = problem("no label", f"{where}: a box has an empty label")
            return ann
        if label not in cats:
            cats[label] = len(cats) + 1
        ann["category_id"] = cats[label]
        ann["bbox"] = [x1, y1, x2 - x1, y2 - y1]
        attrs: dict[str, Any] = {a.get("name", ""): (a.text or "") for a in el.findall("attribute")}
        if el.get("occluded") is not None:
            attrs["occluded"] = el.get("occluded") == "1"
        if el.get("z_order") is not None:
            attrs["z_order"] = int(el.get("z_order", "0") or 0)
        if attrs:
            ann["attributes"] = attrs
        return ann

    @staticmethod
    def _shape(
        el: ET.Element,
        record: dict[str, Any],
        where: str,
        ann_id: int,
        cats: dict[str, int],
        skeletons: dict[str, tuple[list[str], list[list[int]]]],
    ) -> dict[str, Any]:
        """A polygon, mask, skeleton, points or polyline shape as an annotation."""
        label, kind = el.get("label", ""), el.tag
        ann: dict[str, Any] = {"id": ann_id, "image_id": record["id"], "_where": f"{where} {kind} {label!r}"}
        if not label:
            ann["_problem"] = problem("no label", f"{where}: a {kind} has an empty label")
            return ann
        attrs: dict[str, Any] = {a.get("name", ""): (a.text or "") for a in el.findall("attribute")}
        if el.get("occluded") is not None:
            attrs["occluded"] = el.get("occluded") == "1"
        if el.get("z_order") is not None:
            with contextlib.suppress(ValueError):
                attrs["z_order"] = int(el.get("z_order", "0") or 0)
        if kind == "polyline":
            attrs["cvat_shape"] = "polyline"
        if attrs:
            ann["attributes"] = attrs
        cats.setdefault(label, len(cats) + 1)
        ann["category_id"] = cats[label]
        try:
            if kind == "polygon":
                ann["segmentation"] = [_points(el.get("points", ""))]  # its box: the polygon's extent
            elif kind == "mask":
                ann.update(_mask(el, record))
            elif kind == "skeleton":
                names = skeletons.get(label, ([], []))[0]
                if not names:
                    raise ValueError(f"label {label!r} is not declared as a skeleton in <meta>")
                kps = [0.0] * (3 * len(names))
                for p in el.findall("points"):
                    name = p.get("label", "")
                    if name not in names:
                        raise ValueError(f"point {name!r} is not one of the skeleton's {names}")
                    xy = _points(p.get("points", ""))
                    if len(xy) != 2:
                        raise ValueError(f"point {name!r} has {len(xy) // 2} coordinates, not 1")
                    if p.get("outside") == "1":
                        continue
                    i = names.index(name)
                    kps[3 * i : 3 * i + 3] = [xy[0], xy[1], 1 if p.get("occluded") == "1" else 2]
                ann["keypoints"] = kps
                ann["num_keypoints"] = sum(1 for v in kps[2::3] if v > 0)
                _points_box(ann)
            else:  # points, polyline: padded to the label's most points once all are read
                ann["_points"] = _points(el.get("points", ""))
                ann["_label"] = label
                ann["_v"] = 1 if el.get("occluded") == "1" else 2
        except ValueError as exc:
            ann["_problem"] = problem(f"bad {kind}", f"{where}: {kind} {label!r}: {exc}")
        return ann

    def export(self, store: Store, out: Path, *, image_ids: list[int], **options: Any) -> ExportResult:
        raise UsageError("the cvat format is import-only; export to coco or voc, which CVAT imports")
