"""Semantic segmentation as label maps: ``images/`` + ``masks/`` PNGs + a class table.

The layout of ADE20K (``images/training`` + ``annotations/training``), Cityscapes-style sets and
most Kaggle segmentation sets. Each image has a PNG of the same relative path and stem under the
mask folder (``masks/``, ``annotations/``, ``labels/`` or ``gt/``; ``--option masks_dir=NAME``),
optionally with a suffix (``a.jpg`` <-> ``a_mask.png``: found from the files, or
``--option mask_suffix=_gtFine_labelIds``, with ``image_suffix=_leftImg8bit`` removed from the
image's stem first). Pixel values are class values: palette indices, 8- or 16-bit grey, or RGB
colours when the class table gives colours. A first-level folder under ``images/`` named like a
split (``train``, ``training``, ``val``, ``validation``, ``test``) becomes the image's split.

The class table, at the root (or ``--option classes=PATH``): ``classes.csv`` / ``class_dict.csv``
(a header with a name column, and a value column ``value``/``id``/``idx``/``index``, or ``r, g, b``
colours, CamVid-style; ADE's ``objectInfo150.csv`` reads as one), ``classes.json`` (a list of
names, a ``{"value": "name"}`` object, or a list of ``{"id", "name"}``), ``labelmap.txt``
(Datumaro/CVAT: ``name:r,g,b::`` lines, value = line order) or ``classes.txt`` / ``labels.txt``
(one name per line, value = line number from 0, or ``value name`` lines).

Each class present in an image becomes one COCO RLE annotation with ``"semantic": true`` (its box
the extent of its pixels); the category keeps its ``label_value``. Pixels equal to ``ignore``
(default 255, and 0 too when the table has no class 0, as ADE20K's; ``--option ignore=none`` to
turn off) are not labelled. A value outside the class
table, or a mask whose size differs from its image, is a one-line error naming the file.

Export writes ``images/``, ``masks/<stem>.png`` (a palette PNG with the VOC colours, 16-bit grey
past 255 values) and ``classes.csv`` (``value,name,r,g,b``). Semantic regions are written as they
are, unlabelled pixels 255; an image without them has its instance masks merged into their
classes' pixels over background 0 (counted as approximated: the instances are lost); boxes without a mask, keypoints, and instance masks of
images that have semantic regions are counted as dropped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ExportResult, ImportBatch
from dataforge.formats.common import (
    copy_store_images,
    is_image,
    list_images,
    prepare_out_dir,
    problem,
    read_text,
    rel,
)

if TYPE_CHECKING:
    from dataforge.store import Store

MASK_DIRS = ("masks", "annotations", "labels", "gt", "ground_truth", "SegmentationClass")
MASK_SUFFIXES = ("", "_mask", "_masks", "_label", "_labels", "_labelIds", "_gt", "_seg", "_segmentation")
CLASS_TABLES = (
    "classes.csv",
    "class_dict.csv",
    "objectInfo150.csv",
    "classes.json",
    "labelmap.txt",
    "classes.txt",
    "labels.txt",
)
SPLITS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
_NAME_COLUMNS = ("name", "class", "class_name", "label", "label_name", "category")
_VALUE_COLUMNS = ("value", "id", "idx", "index", "label_id", "class_id", "pixel_value")


class ClassTable:
    """Class value -> name (and, for colour masks, colour -> value)."""

    def __init__(self, names: dict[int, str], colors: dict[tuple[int, int, int], int] | None = None) -> None:
        self.names = names
        self.colors = colors

    @classmethod
    def read(cls, path: Path) -> ClassTable:
        text = read_text(path, what="class table")
        where = path.name
        try:
            if path.suffix.lower() == ".json":
                return cls._from_json(json.loads(text), where)
            if path.suffix.lower() == ".csv":
                return cls._from_csv(text, where)
            if path.name.lower() == "labelmap.txt" or re.search(r"^[^#\n:]*:\d+,\d+,\d+:", text, re.M):
                return cls._from_labelmap(text)
            return cls._from_lines(text, where)
        except (ValueError, KeyError, TypeError, IndexError, StopIteration) as exc:
            raise DataError(
                f"{path}: cannot read the class table: {exc or type(exc).__name__}", source=str(path)
            ) from None

    @classmethod
    def _from_json(cls, data: Any, where: str) -> ClassTable:
        names: dict[int, str] = {}
        colors: dict[tuple[int, int, int], int] = {}
        if isinstance(data, dict) and isinstance(data.get("classes"), list):
            data = data["classes"]
        if isinstance(data, dict):
            for k, v in data.items():
                names[int(k)] = str(v)
        elif isinstance(data, list):
            for i, item in enumerate(data):
                if isinstance(item, str):
                    names[i] = item
                elif isinstance(item, dict):
                    value = next((item[k] for k in _VALUE_COLUMNS if k in item), i)
                    names[int(value)] = str(next(item[k] for k in _NAME_COLUMNS if k in item))
                    color = item.get("color")
                    if isinstance(color, list) and len(color) == 3:
                        colors[(int(color[0]), int(color[1]), int(color[2]))] = int(value)
                else:
                    raise ValueError(f"entry {i} is neither a name nor an object")
        else:
            raise ValueError(f"expected a list or an object, found {type(data).__name__}")
        return cls(names, colors or None)

    @classmethod
    def _from_csv(cls, text: str, where: str) -> ClassTable:
        rows = list(csv.reader(io.StringIO(text)))
        header = [h.strip().lower() for h in rows[0]] if rows else []
        name_col = next((header.index(c) for c in _NAME_COLUMNS if c in header), None)
        if name_col is None:
            raise ValueError(
                f"no name column in the header {rows[0] if rows else []} (one of {_NAME_COLUMNS})"
            )
        value_col = next((header.index(c) for c in _VALUE_COLUMNS if c in header), None)
        rgb = [header.index(c) for c in ("r", "g", "b") if c in header]
        names: dict[int, str] = {}
        colors: dict[tuple[int, int, int], int] = {}
        for n, row in enumerate(rows[1:], start=2):
            if not row or not "".join(row).strip():
                continue
            value = int(row[value_col]) if value_col is not None else len(names)
            if value in names:
                raise ValueError(f"line {n}: value {value} appears twice")
            names[value] = row[name_col].strip()
            if len(rgb) == 3:
                colors[(int(row[rgb[0]]), int(row[rgb[1]]), int(row[rgb[2]]))] = value
        return cls(names, colors or None)

    @classmethod
    def _from_labelmap(cls, text: str) -> ClassTable:
        names: dict[int, str] = {}
        colors: dict[tuple[int, int, int], int] = {}
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, _, rest = line.partition(":")
            value = len(names)
            names[value] = name.strip()
            color = rest.split(":")[0].strip()
            if color:
                r, g, b = (int(c) for c in color.split(","))
                colors[(r, g, b)] = value
        return cls(names, colors or None)

    @classmethod
    def _from_lines(cls, text: str, where: str) -> ClassTable:
        names: dict[int, str] = {}
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        numbered = all(re.match(r"^\d+[\s:]+\S", ln) for ln in lines)
        for i, line in enumerate(lines):
            if numbered:
                value, name = re.split(r"[\s:]+", line, maxsplit=1)
                names[int(value)] = name.strip()
            else:
                names[i] = line
        return cls(names)


def _image_size(path: Path) -> tuple[int, int] | None:
    """An image's (width, height) from its header, or None if it cannot be read (the import's
    image check reports that)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _parse_ignore(value: Any) -> int | None:
    if value in (None, "none", "None", ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UsageError(f"masks import: ignore must be a pixel value or 'none', not {value!r}") from None


def class_values(categories: list[dict[str, Any]], standard: Sequence[str] = ()) -> dict[int, int]:
    """Category id -> label-map value: each category's ``label_value`` when all have distinct ones
    (not 255, which is void); else its index in ``standard`` (e.g. the VOC classes) when every name
    is there; else 1..N in id order, a category named ``background`` taking 0."""
    from dataforge.masks import VOID

    given = [c.get("label_value") for c in categories]
    if all(type(v) is int and 0 <= v != VOID for v in given) and len(set(given)) == len(given):
        return {c["id"]: int(c["label_value"]) for c in categories}
    if standard and all(c["name"] in standard for c in categories):
        return {c["id"]: list(standard).index(c["name"]) for c in categories}
    background = [c["id"] for c in categories if c["name"] == "background"]
    rest = [c["id"] for c in categories if c["id"] not in background]
    return {**dict.fromkeys(background, 0), **{cid: i + 1 for i, cid in enumerate(rest)}}


class ClassMap(NamedTuple):
    values: np.ndarray
    #: what unlabelled pixels hold: void after semantic regions, else background (0) when free
    fill: int
    #: regions painted; of them, instance masks merged into their class
    regions: int
    merged: int
    #: instance masks left out because the image has semantic regions (its class map already)
    unpainted: int
    #: pixels a later region took from an earlier one
    overlap: int


def class_map(anns: list[dict[str, Any]], value_of: dict[int, int], height: int, width: int) -> ClassMap:
    """An image's class label map: its semantic regions when it has any, else its instance masks
    merged by class, larger first so a smaller object on top keeps its pixels."""
    from dataforge.masks import VOID, has_mask, paint_label_map

    semantic = [a for a in anns if a.get("semantic") and has_mask(a.get("segmentation"))]
    instances = [a for a in anns if not a.get("semantic") and has_mask(a.get("segmentation"))]
    if semantic:
        regions, fill, unpainted = semantic, VOID, len(instances)
    else:
        regions = sorted(instances, key=lambda a: -float(a.get("area") or a["bbox"][2] * a["bbox"][3]))
        fill, unpainted = (VOID if 0 in value_of.values() else 0), 0
    painted, overlap = paint_label_map(
        [(a["segmentation"], value_of[a["category_id"]]) for a in regions], height, width, fill
    )
    merged = 0 if semantic else len(instances)
    return ClassMap(painted, fill, len(regions), merged, unpainted, overlap)


def semantic_regions(
    label_map: np.ndarray,
    values: list[int],
    image_id: int,
    first_id: int,
    category_of: Callable[[int], int],
    where: str,
) -> list[dict[str, Any]]:
    """One semantic annotation (RLE, its extent as the box) per class value of ``values`` present in
    ``label_map``; ``where`` names the PNG in messages."""
    from dataforge.masks import label_map_regions, rle_bbox

    return [
        {
            "id": first_id + k,
            "image_id": image_id,
            "category_id": category_of(value),
            "segmentation": rle,
            "area": area,
            "bbox": rle_bbox(rle),
            "iscrowd": 0,
            "semantic": True,
            "_where": f"{where} value {value}",
        }
        for k, (value, rle, area) in enumerate(label_map_regions(label_map, values))
    ]


class LabelMapsFormat:
    name: ClassVar[str] = "masks"
    description: ClassVar[str] = "semantic label maps: images/ + masks/ PNGs + a class table (ADE20K, Kaggle)"
    can_import: ClassVar[bool] = True
    can_export: ClassVar[bool] = True
    boxes: ClassVar[bool] = False  # it holds no boxes (see formats.accounting)
    carries: ClassVar[frozenset[str]] = frozenset({"masks", "semantic"})

    @staticmethod
    def _mask_dir(path: Path, masks_dir: str | None) -> Path | None:
        for name in [masks_dir] if masks_dir else MASK_DIRS:
            if (path / name).is_dir():
                return path / name
        return None

    @staticmethod
    def _class_table_path(path: Path) -> Path | None:
        return next((path / n for n in CLASS_TABLES if (path / n).is_file()), None)

    def detect(self, path: Path) -> bool:
        if not path.is_dir() or not (path / "images").is_dir():
            return False
        masks = self._mask_dir(path, None)
        if masks is None or self._class_table_path(path) is None:
            return False
        return any(f.suffix.lower() == ".png" for f in masks.rglob("*.png"))

    def read(
        self,
        path: Path,
        *,
        images: Path | None = None,
        classes: str | None = None,
        ignore: Any = "auto",
        masks_dir: str | None = None,
        mask_suffix: str | None = None,
        image_suffix: str = "",
        **options: Any,
    ) -> ImportBatch:
        if options:
            raise UsageError(
                f"masks import: unknown options {sorted(options)} "
                "(known: classes, ignore, masks_dir, mask_suffix, image_suffix)"
            )
        from dataforge.masks import VOID, present_values, read_label_map

        void = _parse_ignore(VOID if ignore == "auto" else ignore)
        if not path.is_dir():
            raise DataError(
                f"{path}: the masks format reads a folder with images/ and masks/", source=str(path)
            )
        image_dir = images or path / "images"
        mask_root = self._mask_dir(path, masks_dir)
        if mask_root is None:
            raise DataError(
                f"{path}: no mask folder (looked for {', '.join([masks_dir] if masks_dir else MASK_DIRS)})",
                source=str(path),
                hint="pass --option masks_dir=NAME",
            )
        table_path = Path(classes) if classes else self._class_table_path(path)
        if table_path is None or not table_path.is_file():
            raise DataError(
                f"{path}: no class table ({', '.join(CLASS_TABLES)})",
                source=str(path),
                hint="write classes.txt (one class name per line, the first is value 0) or pass "
                "--option classes=PATH",
            )
        table = ClassTable.read(table_path)
        if void is not None:
            table.names.pop(void, None)  # a table may name its void value ("unlabeled: 255")
        if not table.names:
            raise DataError(f"{table_path}: the class table names no classes", source=str(table_path))
        warnings = []
        unlabelled: set[int] = set() if void is None else {void}
        if ignore == "auto" and 0 not in table.names and table.colors is None:
            unlabelled.add(0)  # ADE20K: classes 1..150, 0 = not labelled
            warnings.append(
                f"{table_path.name} has no class 0: pixels of value 0 are read as not labelled "
                "(--option ignore=N to choose)"
            )
        mask_files = {rel(f, mask_root): f for f in mask_root.rglob("*") if f.is_file() and is_image(f)}
        by_stem = {os.path.splitext(k)[0]: v for k, v in mask_files.items()}
        pictures = list_images(image_dir) if image_dir.is_dir() else []
        if mask_root.resolve().is_relative_to(image_dir.resolve()):
            pictures = [p for p in pictures if not p.resolve().is_relative_to(mask_root.resolve())]
        keys = [self._key(rel(p, image_dir), image_suffix) for p in pictures]
        suffix = mask_suffix if mask_suffix is not None else self._guess_suffix(keys, by_stem)
        cat_of = {value: i + 1 for i, value in enumerate(sorted(table.names))}
        cats = [{"id": cat_of[v], "name": name, "label_value": v} for v, name in sorted(table.names.items())]
        imgs: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        used_masks: set[str] = set()
        for picture, key in zip(pictures, keys, strict=True):
            name = rel(picture, image_dir)
            record: dict[str, Any] = {"id": len(imgs) + 1, "file_name": name}
            imgs.append(record)
            top = name.split("/")[0] if "/" in name else ""
            if top.lower() in SPLITS:
                record["split"] = SPLITS[top.lower()]
            mask_path = by_stem.get(key + suffix)
            if mask_path is None:
                record["_problem"] = problem(
                    "no mask", f"{name}: no mask {rel(mask_root, path)}/{key}{suffix}.png for this image"
                )
                continue
            used_masks.add(key + suffix)
            where = rel(mask_path, path)
            try:
                label_map = read_label_map(mask_path, table.colors)
            except (OSError, ValueError) as exc:
                record["_problem"] = problem("bad mask", f"{where}: cannot read the label map ({exc})")
                continue
            h, w = label_map.shape
            size = _image_size(picture)
            if size is not None and size != (w, h):
                record["_problem"] = problem(
                    "mask size differs from image",
                    f"{where}: the mask is {w}x{h} but its image {name} is {size[0]}x{size[1]}",
                )
                continue
            values = present_values(label_map)
            unknown = [v for v in values if v not in table.names and v not in unlabelled]
            if unknown:
                shown = ", ".join("an RGB colour not in the table" if v < 0 else str(v) for v in unknown[:5])
                record["_problem"] = problem(
                    "label value not in the class table",
                    f"{where}: pixel values {shown} are not in the class table {table_path.name} "
                    f"(values {min(table.names)}..{max(table.names)}"
                    + (f"; ignored: {', '.join(map(str, sorted(unlabelled)))})" if unlabelled else ")"),
                )
                continue
            present = [v for v in values if v in table.names]
            anns += semantic_regions(
                label_map, present, record["id"], len(anns) + 1, cat_of.__getitem__, where
            )
        orphans = sorted(set(by_stem) - used_masks)
        if orphans:
            warnings.append(
                f"{len(orphans)} mask(s) under {rel(mask_root, path)}/ have no image, e.g. {orphans[0]}; "
                "not imported"
            )
        return ImportBatch(
            format=self.name,
            source=str(path.resolve()),
            images_root=image_dir,
            images=imgs,
            annotations=anns,
            categories=cats,
            warnings=warnings,
            private_keys=True,
        )

    @staticmethod
    def _key(name: str, image_suffix: str) -> str:
        stem = os.path.splitext(name)[0]
        if image_suffix and stem.endswith(image_suffix):
            stem = stem[: -len(image_suffix)]
        return stem

    @staticmethod
    def _guess_suffix(keys: list[str], by_stem: dict[str, Path]) -> str:
        """The mask-name suffix that matches the most images."""
        return max(MASK_SUFFIXES, key=lambda s: sum(1 for k in keys if k + s in by_stem))  # "" on ties

    def export(
        self, store: Store, out: Path, *, image_ids: list[int], link: bool = False, **options: Any
    ) -> ExportResult:
        if options:
            raise UsageError(f"masks export: unknown options {sorted(options)}")
        from dataforge.masks import has_mask, voc_palette, write_label_map

        cats = sorted(store.data["categories"], key=lambda c: c["id"])
        value_of = class_values(cats)
        names = {value_of[c["id"]]: c["name"] for c in cats}
        prepare_out_dir(out)
        wanted = set(image_ids)
        copies: list[tuple[str, str]] = []
        dropped: Counter[str] = Counter()
        fills: Counter[int] = Counter()
        merged = overlap_px = written = 0
        for img in store.images:
            if img["id"] not in wanted:
                continue
            copies.append((img["file_name"], f"images/{img['file_name']}"))
            anns = store.index.anns_by_image.get(img["id"], [])
            dropped["boxes without a mask"] += sum(1 for a in anns if not has_mask(a.get("segmentation")))
            painted = class_map(anns, value_of, img["height"], img["width"])
            dropped["instance masks of images that have semantic regions"] += painted.unpainted
            merged += painted.merged
            written += painted.regions
            overlap_px += painted.overlap
            fills[painted.fill] += 1
            target = out / "masks" / (os.path.splitext(img["file_name"])[0] + ".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            write_label_map(target, painted.values)
        if fills[0]:
            names[0] = "background"
        copy_store_images(store, out, copies, link=link)
        palette = voc_palette()
        with open(out / "classes.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["value", "name", "r", "g", "b"])
            for value, name in sorted(names.items()):
                w.writerow(
                    [value, name, *palette[3 * value : 3 * value + 3]]
                    if value < 256
                    else [value, name, "", "", ""]
                )
        result = ExportResult(
            out=out,
            images=len(copies),
            annotations=written,
            files=[out / "classes.csv"],
            dropped={k: v for k, v in dropped.items() if v},
            notes=[
                f"unlabelled pixels: {fill} ({'background' if fill == 0 else 'ignore'}) in {n} image(s)"
                for fill, n in sorted(fills.items())
            ],
        )
        if merged:
            result.approximated["instance masks (merged into their class's pixels)"] = merged
        if overlap_px:
            result.notes.append(
                f"{overlap_px} pixels claimed by two masks took the later (smaller) one's class"
            )
        return result


__all__ = ["ClassMap", "ClassTable", "LabelMapsFormat", "class_map", "class_values", "semantic_regions"]
