"""Open Images box annotations: ``<subset>-annotations-bbox.csv`` + class descriptions + images.

The box CSV has one row per box, a header of ``ImageID, Source, LabelName, Confidence, XMin,
XMax, YMin, YMax, IsOccluded, IsTruncated, IsGroupOf, IsDepiction, IsInside`` (and the V6 click
columns, ignored); coordinates are fractions of the image's size; ``LabelName`` is a MID
(``/m/01yrx``) that ``class-descriptions-boxable.csv`` (``MID,name`` rows, with or without a
``LabelName,DisplayName`` header) names. Files as the Open Images download, FiftyOne and Datumaro
lay them out: the CSVs at the top or in ``annotations/``, named with an ``oidv6-``/``oidv7-``
prefix or none; the images ``<ImageID>.jpg`` in ``images/<subset>/``, ``<subset>/``, ``images/``,
``data/`` (FiftyOne) or the top, or ``--images``.

Import: a category per MID, named by the descriptions when they are there (the MID is kept as the
category's ``mid``), else by the MID itself (and the report says so); ``IsGroupOf`` -> ``iscrowd``;
the other flags (``-1``: unknown, left out), ``Source`` and ``Confidence`` in the annotation's
``attributes``; the split from the file's subset (train, validation -> val, test).

Export writes ``<subset>-annotations-bbox.csv`` per split (train, validation, test; images without
a split: ``default``), ``class-descriptions-boxable.csv`` (a category's ``mid``, else its name as
the label) and ``images/<subset>/<ImageID>.<ext>`` (the ID: the file's base name; a clash within a
subset gets ``~2``). Masks and
keypoints are not part of the format (counted as dropped).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dataforge.boxes import xywh_to_xyxy_floats
from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ExportResult, ImportBatch
from dataforge.formats.common import (
    IMAGE_EXTENSIONS,
    copy_store_images,
    flat_name,
    prepare_out_dir,
    problem,
    read_text,
)

if TYPE_CHECKING:
    from dataforge.store import Store

BOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")
FLAGS = ("IsOccluded", "IsTruncated", "IsDepiction", "IsInside")
HEADER = [
    "ImageID",
    "Source",
    "LabelName",
    "Confidence",
    "XMin",
    "XMax",
    "YMin",
    "YMax",
    "IsOccluded",
    "IsTruncated",
    "IsGroupOf",
    "IsDepiction",
    "IsInside",
]
DESCRIPTIONS = (
    "class-descriptions-boxable.csv",
    "oidv7-class-descriptions-boxable.csv",
    "oidv6-class-descriptions.csv",
)
SUBSETS = {"train": "train", "validation": "val", "val": "val", "test": "test"}


def _header(path: Path) -> list[str]:
    """The first row of a CSV, for detection (undecodable bytes replaced: the reader reports them)."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        try:
            return next(csv.reader(f), [])
        except csv.Error:
            return []


def _rows(path: Path, what: str) -> list[list[str]]:
    try:
        return list(csv.reader(io.StringIO(read_text(path, what=what))))
    except csv.Error as exc:
        raise DataError(f"{path.name}: not a readable CSV ({exc})", source=str(path)) from None


def is_box_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv" and set(BOX_COLUMNS) <= set(_header(path))


def subset_of(csv_path: Path) -> str:
    """``oidv6-train-annotations-bbox.csv`` -> ``train``; ``validation-annotations-bbox.csv`` ->
    ``validation``; any other name: its stem."""
    stem = csv_path.stem
    for prefix in ("oidv6-", "oidv7-", "oidv4-"):
        stem = stem.removeprefix(prefix)
    return stem.split("-annotations")[0]


class OpenImagesFormat:
    name: ClassVar[str] = "openimages"
    description: ClassVar[str] = "Open Images box CSVs (ImageID, LabelName MIDs, normalized XMin..YMax)"
    can_import: ClassVar[bool] = True
    can_export: ClassVar[bool] = True
    carries: ClassVar[frozenset[str]] = frozenset()

    def box_files(self, path: Path) -> list[Path]:
        if path.is_file():
            return [path] if is_box_csv(path) else []
        cands = [*sorted(path.glob("*.csv")), *sorted(path.glob("annotations/*.csv"))]
        return [p for p in cands if is_box_csv(p)]

    def detect(self, path: Path) -> bool:
        return bool(self.box_files(path))

    def read(self, path: Path, *, images: Path | None = None, **options: Any) -> ImportBatch:
        if options:
            raise UsageError(f"openimages import: unknown options {sorted(options)}")
        files = self.box_files(path)
        if not files:
            raise DataError(
                f"{path}: no Open Images box CSV (a header with {', '.join(BOX_COLUMNS)})", source=str(path)
            )
        root = path if path.is_dir() else path.parent
        if root.name == "annotations" and path.is_file():
            root = root.parent
        names = self._descriptions(root, files[0].parent)
        warnings: list[str] = []
        base = images if images is not None else root
        cats: dict[str, int] = {}
        imgs: dict[tuple[str, str], dict[str, Any]] = {}
        anns: list[dict[str, Any]] = []
        for f in files:
            subset = subset_of(f)
            folder = self._image_folder(base, subset)
            rows = _rows(f, "Open Images CSV")
            col = {h: i for i, h in enumerate(rows[0])}
            for line_no, row in enumerate(rows[1:], start=2):
                if not any(c.strip() for c in row):
                    continue
                where = f"{f.name}:{line_no}"
                if len(row) < len(rows[0]):
                    raise DataError(
                        f"{where}: expected {len(rows[0])} columns, found {len(row)}", source=str(f)
                    )
                image_id = row[col["ImageID"]].strip()
                if not image_id:
                    raise DataError(f"{where}: ImageID is empty", source=str(f))
                img = imgs.get((subset, image_id))
                if img is None:
                    src = self._image_name(base, folder, image_id)
                    name = f"{subset}/{os.path.basename(src)}"  # one folder per subset in the store
                    img = {"id": len(imgs) + 1, "file_name": name, "_src": src}
                    if SUBSETS.get(subset):
                        img["split"] = SUBSETS[subset]
                    imgs[(subset, image_id)] = img
                mid = row[col["LabelName"]].strip()
                ann: dict[str, Any] = {
                    "id": len(anns) + 1,
                    "image_id": img["id"],
                    "_where": where,
                    "iscrowd": 0,
                }
                anns.append(ann)
                try:
                    x0, x1, y0, y1 = (float(row[col[k]]) for k in ("XMin", "XMax", "YMin", "YMax"))
                except ValueError:
                    ann["_problem"] = problem("bad bbox", f"{where}: XMin, XMax, YMin, YMax must be numbers")
                    continue
                if not mid:
                    ann["_problem"] = problem("no label", f"{where}: LabelName is empty")
                    continue
                ann["category_id"] = cats.setdefault(mid, len(cats) + 1)
                ann["_bbox_norm"] = ["xyxy", [x0, y0, x1, y1]]
                attrs: dict[str, Any] = {}
                for flag in ("IsGroupOf", *FLAGS):
                    v = row[col[flag]].strip() if flag in col else ""
                    if v in ("0", "1"):
                        if flag == "IsGroupOf":
                            ann["iscrowd"] = int(v)
                        else:
                            attrs[flag] = v == "1"
                for key in ("Source", "Confidence"):
                    if key in col and row[col[key]].strip():
                        attrs[key] = row[col[key]].strip()
                if attrs:
                    ann["attributes"] = attrs
        unnamed = [m for m in cats if m not in names]
        if unnamed:
            warnings.append(
                f"{len(unnamed)} classes have no description (no class-descriptions file names them): "
                f"named by their MID ({', '.join(unnamed[:3])}{', ...' if len(unnamed) > 3 else ''})"
            )
        shown = [names.get(m, m) for m in cats]
        twice = {n for n in shown if shown.count(n) > 1}  # two MIDs, one display name: keep both apart
        categories = [
            {"id": c, "name": f"{n} ({m})" if n in twice else n, "mid": m}
            for (m, c), n in zip(cats.items(), shown, strict=True)
        ]
        return ImportBatch(
            format=self.name,
            source=str(path.resolve()),
            images_root=base,
            images=list(imgs.values()),
            annotations=anns,
            categories=categories,
            warnings=warnings,
            private_keys=True,
        )

    @staticmethod
    def _descriptions(root: Path, csv_dir: Path) -> dict[str, str]:
        """MID -> display name, from the first class-descriptions file beside the CSVs or the root."""
        for folder in dict.fromkeys([csv_dir, root, root / "annotations", root / "metadata"]):
            for name in DESCRIPTIONS:
                p = folder / name
                if p.is_file():
                    rows = _rows(p, "class descriptions")
                    if rows and [c.strip() for c in rows[0][:2]] == ["LabelName", "DisplayName"]:
                        rows = rows[1:]
                    return {r[0].strip(): r[1].strip() for r in rows if len(r) >= 2}
        return {}

    @staticmethod
    def _image_folder(base: Path, subset: str) -> Path:
        for cand in (base / "images" / subset, base / subset, base / "images", base / "data"):
            if cand.is_dir():
                return cand
        return base

    @staticmethod
    def _image_name(base: Path, folder: Path, image_id: str) -> str:
        """``<ImageID>.<ext>`` in ``folder``, relative to ``base`` (``.jpg`` when none is there)."""
        for ext in (".jpg", *sorted(IMAGE_EXTENSIONS - {".jpg"})):
            if (folder / (image_id + ext)).is_file():
                return os.path.relpath(folder / (image_id + ext), base).replace(os.sep, "/")
        return os.path.relpath(folder / (image_id + ".jpg"), base).replace(os.sep, "/")

    def export(
        self, store: Store, out: Path, *, image_ids: list[int], link: bool = False, **options: Any
    ) -> ExportResult:
        if options:
            raise UsageError(f"openimages export: unknown options {sorted(options)}")
        prepare_out_dir(out)
        wanted = set(image_ids)
        labels = {c["id"]: str(c.get("mid") or c["name"]) for c in store.data["categories"]}
        rows: dict[str, list[list[Any]]] = {}
        copies: list[tuple[str, str]] = []
        used: dict[str, set[str]] = {}
        n = 0
        for img in store.images:
            if img["id"] not in wanted:
                continue
            subset = {"train": "train", "val": "validation", "test": "test"}.get(
                img.get("split") or "", "default"
            )
            flat = flat_name(os.path.basename(img["file_name"]), used.setdefault(subset, set()))
            image_id, ext = os.path.splitext(flat)
            copies.append((img["file_name"], f"images/{subset}/{image_id}{ext}"))
            w, h = img["width"], img["height"]
            table = rows.setdefault(subset, [])
            for a in store.index.anns_by_image.get(img["id"], []):
                if a.get("semantic"):
                    continue
                x0, y0, x1, y1 = xywh_to_xyxy_floats(a["bbox"])
                attrs = a.get("attributes") or {}
                flags = [int(bool(attrs[f])) if f in attrs else -1 for f in FLAGS]
                table.append(
                    [
                        image_id,
                        attrs.get("Source", "dataforge"),
                        labels[a["category_id"]],
                        attrs.get("Confidence", 1),
                        *(repr(v) for v in (x0 / w, x1 / w, y0 / h, y1 / h)),
                        flags[0],
                        flags[1],
                        int(bool(a.get("iscrowd"))),
                        flags[2],
                        flags[3],
                    ]
                )
                n += 1
        files = []
        for subset, table in sorted(rows.items()):
            path = out / f"{subset}-annotations-bbox.csv"
            with open(path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows([HEADER, *table])
            files.append(path)
        desc = out / "class-descriptions-boxable.csv"
        with open(desc, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([[labels[c["id"]], c["name"]] for c in store.data["categories"]])
        files.append(desc)
        copy_store_images(store, out, copies, link=link)
        return ExportResult(
            out=out,
            images=len(copies),
            annotations=n,
            files=files,
            notes=["ImageID: the file's base name without extension (a clash within a subset gets ~2, ~3)"],
            category_ids=dict(labels),
        )
