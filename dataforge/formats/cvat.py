"""CVAT for images, XML 1.1 (import only): boxes and image tags.

``<image name=... width=... height=... [subset=...]>`` elements hold ``<box label xtl ytl xbr ybr
occluded z_order>`` (with ``<attribute name=...>`` children) and ``<tag label=...>``. Boxes become
annotations (``occluded``, ``z_order`` and the attributes kept in ``attributes``); tags become
image-level labels. Polygons, polylines, points, ellipses and masks are not imported: they are
counted in a warning. Categories are the labels declared in ``<meta>`` (all of them, used or not).

Images are keyed by (subset, name): a project export repeats names across subsets. They are
looked up as ``images/<subset>/<name>``, ``images/<name>`` or ``<name>`` beside the XML (or under
``--images``); the ``task_id`` attribute is not trusted. The subset becomes the split (lower case).
"CVAT for video" (tracks, interpolation mode) is refused with a message.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ExportResult, ImportBatch
from dataforge.formats.common import problem

if TYPE_CHECKING:
    from dataforge.store import Store

OTHER_SHAPES = ("polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton")


class CvatFormat:
    name: ClassVar[str] = "cvat"
    description: ClassVar[str] = "CVAT for images XML 1.1 (boxes and tags; import only)"
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
        for label_el in doc.iter("label"):
            name = (label_el.findtext("name") or "").strip()
            if name and name not in declared:
                declared.append(name)
        cats = {n: i + 1 for i, n in enumerate(declared)}
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
                elif child.tag in OTHER_SHAPES:
                    other[child.tag] += 1
            if labels:
                record["labels"] = labels
        warnings = []
        if other:
            warnings.append(
                f"{path.name}: not imported (dataforge imports boxes and tags): "
                + ", ".join(f"{n} {k}" for k, n in sorted(other.items()))
            )
        return ImportBatch(
            format=self.name,
            source=str(path.resolve()),
            images_root=root,
            images=imgs,
            annotations=anns,
            categories=[{"id": c, "name": n} for n, c in cats.items()],
            warnings=warnings,
            private_keys=True,
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

    def export(self, store: Store, out: Path, *, image_ids: list[int], **options: Any) -> ExportResult:
        raise UsageError("the cvat format is import-only; export to coco or voc, which CVAT imports")
