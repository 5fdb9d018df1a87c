"""Pascal VOC XML: ``Annotations/*.xml`` + ``JPEGImages/`` + ``ImageSets/Main/<split>.txt``.

Import reads one image per XML file (an image listed in ``ImageSets`` without an XML is reported
and not imported: its annotations are unknown, not empty). It also reads the flat layout Roboflow
writes (XML next to each image, one folder per split). ``difficult``, ``truncated``, ``occluded``,
``pose``, parts and actions are kept in the annotation's ``attributes``. Splits come from
``ImageSets/Main/<split>.txt`` (blank and ``#`` lines ignored; ``default.txt`` means no split) or
from the folder name.

Coordinates: by default as written, which is what CVAT, Datumaro and Roboflow write and read, so
round trips with them are exact. ``--option coordinates=devkit`` applies the VOC devkit's 1-based
convention instead (``x_min = xmin - 1`` on import, ``xmin = x_min + 1`` on export).

Masks (``--option masks=true``; ``objects`` or ``classes`` for one kind): ``SegmentationObject/
<stem>.png`` gives object k (the k-th ``<object>`` of the XML) its instance mask; ``SegmentationClass/
<stem>.png`` gives one semantic region (``"semantic": true``) per class present, background included.
Both are palette PNGs (index = instance number / class value; RGB files are read through the VOC
colours); 255 is void (object boundaries) and belongs to no mask. Class values follow
``labelmap.txt`` (Datumaro, CVAT) when present, else the 21 VOC classes. An instance number with no
``<object>``, a class value outside the table or a mask of the wrong size is a one-line error naming
the PNG.

Export writes ``Annotations/``, ``JPEGImages/`` (subfolders flattened to ``a__b.jpg``),
``ImageSets/Main/<split>.txt`` and ``labels.txt`` (the category table). VOC has no crowd flag:
``iscrowd`` is not written. When the exported images have masks, it also writes
``SegmentationObject/`` (instance masks, in object order), ``SegmentationClass/`` (the semantic regions,
or the instances' classes when there are none), ``ImageSets/Segmentation/`` and ``labelmap.txt``.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from xml.sax.saxutils import escape

from dataforge.boxes import xywh_to_xyxy_floats
from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ExportResult, ImportBatch
from dataforge.formats.common import copy_store_images, flat_name, prepare_out_dir, problem, rel

if TYPE_CHECKING:
    from dataforge.store import Store

FLAGS = ("difficult", "truncated", "occluded")
_VOC_ROOT = re.compile(rb"<annotation[\s>]")
COORDINATES = ("as-written", "devkit")
MASK_MODES = {"false": (), "true": ("objects", "classes"), "objects": ("objects",), "classes": ("classes",)}
VOC_CLASSES = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def _text(el: ET.Element | None, tag: str) -> str | None:
    if el is None:
        return None
    child = el.find(tag)
    return child.text.strip() if child is not None and child.text is not None else None


def _box(el: ET.Element | None) -> list[float] | None:
    if el is None:
        return None
    try:
        return [float(_text(el, k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax")]
    except ValueError:
        return None


def _read_split_lists(root: Path) -> dict[str, str | None]:
    """Image stem -> split, from ImageSets/Main/<split>.txt (not the <class>_<split>.txt files)."""
    main = root / "ImageSets" / "Main"
    out: dict[str, str | None] = {}
    if not main.is_dir():
        return out
    for f in sorted(main.glob("*.txt")):
        split = f.stem
        if "_" in split:  # aeroplane_train.txt: per-class flags, not a split list
            continue
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                # The whole line is the image's stem (stems may contain spaces).
                out.setdefault(line, None if split == "default" else split)
    return out


def _palette_colors(n: int = 256) -> dict[tuple[int, int, int], int]:
    from dataforge.masks import voc_palette

    p = voc_palette(n)
    return {(p[3 * i], p[3 * i + 1], p[3 * i + 2]): i for i in range(n)}


class _MaskReader:
    """VOC's mask PNGs for an import: ``SegmentationObject/<stem>.png`` gives the XML's objects their
    instance masks, ``SegmentationClass/<stem>.png`` adds semantic regions. The class table is
    ``labelmap.txt`` (Datumaro, CVAT: value = line order, its colours for RGB PNGs) or the 21 VOC
    classes in the VOC colours; both are read once."""

    def __init__(self, root: Path, kinds: tuple[str, ...]) -> None:
        self.root, self.kinds = root, kinds
        self.palette = _palette_colors()
        if (root / "labelmap.txt").is_file():
            from dataforge.formats.label_maps import ClassTable

            table = ClassTable.read(root / "labelmap.txt")
            self.names, self.class_colors = table.names, table.colors or self.palette
            self.table_name = "labelmap.txt"
        else:
            self.names, self.class_colors = dict(enumerate(VOC_CLASSES)), self.palette
            self.table_name = "the 21 VOC classes"

    def read(
        self,
        stem: str,
        record: dict[str, Any],
        objects: list[dict[str, Any]],
        anns: list[dict[str, Any]],
        cats: dict[str, int],
    ) -> None:
        """Attach masks to ``objects`` (the image's, in XML order) and add its semantic regions to
        ``anns``; a problem goes on ``record``."""
        from dataforge.formats.label_maps import semantic_regions
        from dataforge.masks import VOID, instance_map_regions, present_values, read_label_map

        size = (record.get("height"), record.get("width"))
        for kind in self.kinds:
            folder = "SegmentationObject" if kind == "objects" else "SegmentationClass"
            png = self.root / folder / f"{stem}.png"
            if not png.is_file():
                continue
            where = f"{folder}/{stem}.png"
            try:
                label_map = read_label_map(png, self.palette if kind == "objects" else self.class_colors)
            except (OSError, ValueError) as exc:
                record["_problem"] = problem("bad mask", f"{where}: cannot read the mask ({exc})")
                return
            if size[0] and label_map.shape != size:
                record["_problem"] = problem(
                    "mask size differs from image",
                    f"{where}: the mask is {label_map.shape[1]}x{label_map.shape[0]} but the XML says the "
                    f"image is {size[1]}x{size[0]}",
                )
                return
            if kind == "objects":
                for k, rle, area in instance_map_regions(label_map, VOID):
                    if k > len(objects) or k < 0:
                        record["_problem"] = problem(
                            "mask without object",
                            f"{where}: instance {'colour' if k < 0 else k} has no <object> in "
                            f"Annotations/{stem}.xml ({len(objects)} objects)",
                        )
                        return
                    objects[k - 1]["segmentation"] = rle
                    objects[k - 1]["area"] = area
                    objects[k - 1]["_where"] += f" (mask {where} instance {k})"
                continue
            values = present_values(label_map)
            unknown = [v for v in values if v not in self.names and v != VOID]
            if unknown:
                record["_problem"] = problem(
                    "label value not in the class table",
                    f"{where}: class values {', '.join(map(str, unknown[:5]))} are not in {self.table_name}",
                )
                return
            anns += semantic_regions(
                label_map,
                [v for v in values if v in self.names],
                record["id"],
                len(anns) + 1,
                lambda v: cats.setdefault(self.names[v], len(cats) + 1),
                where,
            )


class _ImageFinder:
    """Where an XML's image is when it is not where VOC puts it (``JPEGImages/`` or beside the
    XML): LabelImg writes ``<folder>images</folder>`` and ``<path>`` from the author's machine,
    with the XMLs in ``annotations/``. Tried in order: ``--images``; ``<folder>`` relative to the
    dataset root; ``JPEGImages/``; ``images/``; the XML's folder; each with ``<filename>`` and
    then the base name of ``<path>``. The images must lie under one folder (``base``: ``--images``,
    else the dataset root, or its parent when ``<folder>`` is a sibling of the XMLs' folder), so
    that the import can refuse names that leave it."""

    def __init__(self, root: Path, images: Path | None) -> None:
        self.root, self.images = root, images
        self.base = images if images is not None else root

    def find(self, doc: Any, filename: str, usual_dir: Path, xml: Path) -> tuple[Path, str] | None:
        """``(the image's path, the rule)``, or None when the usual place has it (or nothing does)."""
        if (usual_dir / filename).is_file() and self.images is None:
            return None
        names = [filename]
        path_tag = _text(doc, "path")
        if path_tag:
            base_name = path_tag.replace("\\", "/").rsplit("/", 1)[-1]
            if base_name and base_name != filename:
                names.append(base_name)
        folder = _text(doc, "folder")
        dirs: list[tuple[str, Path]] = []
        if self.images is not None:
            dirs += [
                ("--images", usual_dir if _inside(usual_dir, self.images) else self.images),
                ("--images", self.images),
            ]
        else:
            if folder:
                if not (self.root / folder).is_dir() and (self.root.parent / folder).is_dir():
                    self.base = self.root.parent  # annotations/ was given; images/ is beside it
                dirs.append((f"<folder> {folder}/", self.base / folder))
            dirs += [
                ("JPEGImages/", self.root / "JPEGImages"),
                ("images/", self.base / "images"),
                ("the XML's folder", xml.parent),
            ]
        for rule, d in dirs:
            for k, name in enumerate(names):
                cand = d / name
                if cand.is_file() and _inside(cand, self.base):
                    return cand, rule + (" by <path>'s file name" if k else "")
        return None


def _inside(path: Path, folder: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top + os.sep)


class VocFormat:
    name: ClassVar[str] = "voc"
    description: ClassVar[str] = (
        "Pascal VOC XML (Annotations/, JPEGImages/, ImageSets/Main/), or XML beside images"
    )
    can_import: ClassVar[bool] = True
    can_export: ClassVar[bool] = True
    carries: ClassVar[frozenset[str]] = frozenset({"masks", "semantic"})

    def detect(self, path: Path) -> bool:
        if path.is_file():
            return path.suffix.lower() == ".xml" and _VOC_ROOT.search(path.read_bytes()[:512]) is not None
        if not path.is_dir():
            return False
        if (path / "Annotations").is_dir():  # subfolders too (one per sequence or subset)
            return next((path / "Annotations").rglob("*.xml"), None) is not None
        xmls = sorted(path.glob("*.xml"))[:1] or sorted(path.glob("*/*.xml"))[:1]
        return bool(xmls) and _VOC_ROOT.search(xmls[0].read_bytes()[:512]) is not None

    def read(
        self,
        path: Path,
        *,
        images: Path | None = None,
        coordinates: str = "as-written",
        masks: Any = "false",
        **options: Any,
    ) -> ImportBatch:
        if options:
            raise UsageError(f"voc import: unknown options {sorted(options)} (known: coordinates, masks)")
        mask_kinds = MASK_MODES.get(str(masks).lower())
        if mask_kinds is None:
            raise UsageError(f"voc import: masks must be one of {', '.join(MASK_MODES)}, not {masks!r}")
        if coordinates not in COORDINATES:
            raise UsageError(
                f"voc import: coordinates must be one of {', '.join(COORDINATES)}, not {coordinates!r}"
            )
        root = path if path.is_dir() else path.parent
        warnings: list[str] = []
        if (root / "Annotations").is_dir():
            xmls = sorted((root / "Annotations").rglob("*.xml"))
            image_dir = images or root / "JPEGImages"
            splits: dict[str, str | None] = _read_split_lists(root)
            listed = set(splits)
            stems = {rel(x, root / "Annotations")[:-4] for x in xmls}
            for stem in sorted(listed - stems):
                warnings.append(
                    f"{stem}: listed in ImageSets/Main but has no Annotations/{stem}.xml; not imported "
                    "(its objects are unknown)"
                )
        else:
            xmls = sorted(root.rglob("*.xml")) if path.is_dir() else [path]
            image_dir = images or root
            splits = {}
        finder = _ImageFinder(root, images)
        found_by: dict[str, int] = {}
        found_at: dict[int, Path] = {}
        cats: dict[str, int] = {}
        imgs: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        shift = 1.0 if coordinates == "devkit" else 0.0
        masks = _MaskReader(root, mask_kinds) if mask_kinds and (root / "Annotations").is_dir() else None
        for i, xml in enumerate(xmls, start=1):
            where = rel(xml, root)
            record: dict[str, Any] = {"id": i}
            imgs.append(record)
            try:
                doc = ET.parse(xml).getroot()
            except ET.ParseError as exc:
                line, col = exc.position
                record["file_name"] = where
                record["_problem"] = problem(
                    "malformed XML", f"{where}:{line}: malformed XML (column {col}): {str(exc).split(':')[0]}"
                )
                continue
            if doc.tag != "annotation":
                record["file_name"] = where
                record["_problem"] = problem(
                    "malformed XML", f"{where}: root element is <{doc.tag}>, not <annotation>"
                )
                continue
            filename = _text(doc, "filename") or xml.stem + ".jpg"
            if (root / "Annotations").is_dir():
                sub = os.path.dirname(rel(xml, root / "Annotations"))
                src_dir = image_dir / sub if sub else image_dir
                stem = rel(xml, root / "Annotations")[:-4]
            else:
                src_dir = xml.parent
                stem = xml.stem
            src = src_dir / filename
            record["file_name"] = rel(src, image_dir) if str(src).startswith(str(image_dir)) else filename
            record["_src"] = rel(src, image_dir) if str(src).startswith(str(image_dir)) else filename
            hit = finder.find(doc, filename, src_dir, xml)
            if hit is not None:  # found by a rule: read from there (the store name stays)
                found_at[i], rule = hit
                found_by[rule] = found_by.get(rule, 0) + 1
            size = doc.find("size")
            w, h = _text(size, "width"), _text(size, "height")
            if w and h and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0:
                record["width"], record["height"] = int(w), int(h)
            split = splits.get(stem)
            if stem not in splits and not (root / "Annotations").is_dir() and xml.parent != root:
                split = xml.parent.name
            if split:
                record["split"] = "val" if split == "valid" else split
            first_object = len(anns)
            for k, obj in enumerate(doc.findall("object"), start=1):
                label = _text(obj, "name")
                ann_where = f"{where} object {k}"
                ann: dict[str, Any] = {"id": len(anns) + 1, "image_id": i, "_where": ann_where}
                anns.append(ann)
                if not label:
                    ann["_problem"] = problem("no label", f"{ann_where}: <name> is missing or empty")
                    continue
                box = _box(obj.find("bndbox"))
                if box is None:
                    ann["_problem"] = problem("bad bbox", f"{ann_where}: <bndbox> is missing or not numbers")
                    continue
                x1, y1, x2, y2 = box[0] - shift, box[1] - shift, box[2], box[3]
                ann["bbox"] = [x1, y1, x2 - x1, y2 - y1]
                ann["category_id"] = cats.setdefault(label, len(cats) + 1)
                attrs: dict[str, Any] = {}
                for flag in FLAGS:
                    v = _text(obj, flag)
                    if v is not None:
                        attrs[flag] = v in ("1", "true", "True")
                pose = _text(obj, "pose")
                if pose:
                    attrs["pose"] = pose
                parts = [
                    {"name": _text(p, "name"), "bbox_xyxy": _box(p.find("bndbox"))}
                    for p in obj.findall("part")
                ]
                if parts:
                    attrs["parts"] = parts
                actions = obj.find("actions")
                if actions is not None:
                    attrs["actions"] = {a.tag: (a.text or "").strip() in ("1", "true") for a in actions}
                if attrs:
                    ann["attributes"] = attrs
            if masks is not None:
                masks.read(stem, record, anns[first_object:], anns, cats)
        categories = [{"id": c, "name": n} for n, c in cats.items()]
        if masks is not None:
            values = {n: v for v, n in masks.names.items()}
            for c in categories:
                if c["name"] in values:
                    c["label_value"] = values[c["name"]]
        if found_by:
            for record in imgs:  # relative to the images' one folder, known now that all are found
                if record["id"] in found_at:
                    record["_src"] = rel(found_at[record["id"]], finder.base)
                elif "_src" in record:
                    record["_src"] = rel(image_dir / record["_src"], finder.base)
            warnings.append("images found by: " + ", ".join(f"{rule} ({n})" for rule, n in found_by.items()))
        return ImportBatch(
            format=self.name,
            source=str(path.resolve()),
            images_root=finder.base if found_by else image_dir,
            images=imgs,
            annotations=anns,
            categories=categories,
            warnings=warnings,
            private_keys=True,
        )

    def export(
        self,
        store: Store,
        out: Path,
        *,
        image_ids: list[int],
        coordinates: str = "as-written",
        link: bool = False,
        **options: Any,
    ) -> ExportResult:
        if options:
            raise UsageError(f"voc export: unknown options {sorted(options)} (known: coordinates)")
        if coordinates not in COORDINATES:
            raise UsageError(
                f"voc export: coordinates must be one of {', '.join(COORDINATES)}, not {coordinates!r}"
            )
        shift = 1.0 if coordinates == "devkit" else 0.0
        prepare_out_dir(out)
        (out / "Annotations").mkdir()
        names = store.index.category_names
        wanted = set(image_ids)
        from dataforge.masks import has_mask

        masks = (
            _MaskWriter(out, store)
            if any(
                has_mask(a.get("segmentation")) for i in wanted for a in store.index.anns_by_image.get(i, [])
            )
            else None
        )
        used: set[str] = set()
        copies = []
        splits: dict[str, list[str]] = {}
        n = 0
        for img in store.images:
            if img["id"] not in wanted:
                continue
            flat = flat_name(img["file_name"], used)
            stem = os.path.splitext(flat)[0]
            copies.append((img["file_name"], f"JPEGImages/{flat}"))
            splits.setdefault(img.get("split") or "default", []).append(stem)
            objs = []
            anns = store.index.anns_by_image.get(img["id"], [])
            if masks is not None:
                masks.write(img, stem, anns)
                n += sum(1 for a in anns if a.get("semantic"))  # written to SegmentationClass
                anns = [a for a in anns if not a.get("semantic")]  # regions, not objects
            for a in anns:
                x, y, x1, y1 = xywh_to_xyxy_floats(a["bbox"])
                attrs: dict[str, Any] = a["attributes"] if isinstance(a.get("attributes"), dict) else {}
                flags = "".join(f"<{f}>{int(bool(attrs.get(f, False)))}</{f}>" for f in FLAGS)
                pose = f"<pose>{escape(str(attrs['pose']))}</pose>" if attrs.get("pose") else ""
                objs.append(
                    f"  <object><name>{escape(names[a['category_id']])}</name>{pose}{flags}"
                    f"<bndbox><xmin>{x + shift:g}</xmin><ymin>{y + shift:g}</ymin>"
                    f"<xmax>{x1:g}</xmax><ymax>{y1:g}</ymax></bndbox></object>\n"
                )
                n += 1
            (out / "Annotations" / f"{stem}.xml").write_text(
                f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{escape(flat)}</filename>\n"
                f"  <size><width>{img['width']}</width><height>{img['height']}</height><depth>3</depth></size>\n"
                f"  <segmented>{int(masks is not None)}</segmented>\n{''.join(objs)}</annotation>\n",
                encoding="utf-8",
            )
        copy_store_images(store, out, copies, link=link)
        main = out / "ImageSets" / "Main"
        main.mkdir(parents=True)
        for split, stems in splits.items():
            (main / f"{split}.txt").write_text("".join(s + "\n" for s in stems), encoding="utf-8")
        cats = sorted(store.data["categories"], key=lambda c: c["id"])
        (out / "labels.txt").write_text("".join(c["name"] + "\n" for c in cats), encoding="utf-8")
        result = ExportResult(
            out=out,
            images=len(copies),
            annotations=n,
            files=[out / "labels.txt"],
            notes=[f"coordinates: {coordinates}", "labels.txt lists the categories in store id order"],
        )
        if masks is not None:
            masks.finish(splits, result)
        return result


class _MaskWriter:
    """VOC's mask PNGs for an export: ``SegmentationObject/`` (instance k = the k-th object),
    ``SegmentationClass/`` and the ``labelmap.txt`` whose line order gives the class values."""

    def __init__(self, out: Path, store: Store) -> None:
        from dataforge.formats.label_maps import class_values

        self.out = out
        cats = sorted(store.data["categories"], key=lambda c: c["id"])
        self.value_of = class_values(cats, VOC_CLASSES)
        names = {v: store.index.category_names[cid] for cid, v in self.value_of.items()}
        voc = all(v < len(VOC_CLASSES) and VOC_CLASSES[v] == n for v, n in names.items())
        top = len(VOC_CLASSES) - 1 if voc else max(names, default=0)
        # labelmap.txt gives values by line order: a value no category has gets a placeholder
        self.names = [
            names.get(v, VOC_CLASSES[v] if voc else "background" if v == 0 else f"_unused_{v}")
            for v in range(top + 1)
        ]
        self.dropped = 0
        for d in ("SegmentationObject", "SegmentationClass"):
            (out / d).mkdir()

    def write(self, img: dict[str, Any], stem: str, anns: list[dict[str, Any]]) -> None:
        from dataforge.formats.label_maps import class_map
        from dataforge.masks import VOID, has_mask, paint_label_map, write_label_map

        h, w = img["height"], img["width"]
        objects = [a for a in anns if not a.get("semantic")]
        regions = [
            (a["segmentation"], k) for k, a in enumerate(objects, start=1) if has_mask(a.get("segmentation"))
        ]
        if any(k >= VOID for _, k in regions):
            self.dropped += sum(1 for _, k in regions if k >= VOID)
            regions = [(seg, k) for seg, k in regions if k < VOID]
        instance_map, _ = paint_label_map(regions, h, w, 0)
        write_label_map(self.out / "SegmentationObject" / f"{stem}.png", instance_map)
        painted = class_map(anns, self.value_of, h, w)
        write_label_map(self.out / "SegmentationClass" / f"{stem}.png", painted.values)

    def finish(self, splits: dict[str, list[str]], result: ExportResult) -> None:
        from dataforge.masks import voc_palette

        seg = self.out / "ImageSets" / "Segmentation"
        seg.mkdir(parents=True)
        for split, stems in splits.items():
            (seg / f"{split}.txt").write_text("".join(s + "\n" for s in stems), encoding="utf-8")
        p = voc_palette()
        (self.out / "labelmap.txt").write_text(
            "# label:color_rgb:parts:actions\n"
            + "".join(f"{n}:{p[3 * v]},{p[3 * v + 1]},{p[3 * v + 2]}::\n" for v, n in enumerate(self.names)),
            encoding="utf-8",
        )
        result.files.append(self.out / "labelmap.txt")
        result.notes.append(
            "masks: SegmentationObject/ (instance k = object k), SegmentationClass/, labelmap.txt"
        )
        if self.dropped:
            result.dropped["instance masks past the 254th object of an image (VOC's instance PNG)"] = (
                self.dropped
            )


__all__ = ["DataError", "VocFormat"]
