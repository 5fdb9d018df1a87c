"""CSV: one row per box (detection) or one row per image (classification).

Import finds the columns by their header (case-insensitive), or by ``--option columns=...``:

* image: ``filename``, ``file_name``, ``image``, ``image_name``, ``image_path``, ``path``, ``file``
* class: ``class``, ``label``, ``label_name``, ``category``, ``class_name``, ``name``
* box, one of: ``xmin ymin xmax ymax`` | ``x1 y1 x2 y2`` | ``x y w h`` / ``x1 y1 w h`` (width/height) |
  ``bbox`` (a string: ``"[x1, y1, x2, y2]"``, ``"x1,y1,x2,y2"`` or ``"x1 y1 x2 y2"``; xyxy)
* optional: ``width``, ``height`` (checked against the image), ``split``

With no box columns the file is classification: the class becomes an image-level label. A row
whose box cells are empty is an image without objects. ``--option columns=image:img,label:cls,
xmin:left,ymin:top,xmax:right,ymax:bottom`` maps other headers. A ``bbox`` string is read as
corners (x1, y1, x2, y2) unless some of the file's boxes are not valid as corners while all are valid
as x, y, width, height (COCO's order, and Kaggle's: ``[834.0, 222.0, 56.0, 36.0]``), which the
report then says; ``--option box=xyxy|xywh`` decides instead. Image names without an extension are matched to a file
with that stem. Images are looked up in ``--images``, else ``images/`` beside the CSV, else the
CSV's folder.

Export writes ``annotations.csv`` with ``filename,width,height,class,xmin,ymin,xmax,ymax,split``
(one row per box; an image without boxes gets one row with empty class and box) and, when images
carry image-level labels, ``labels.csv`` with ``filename,class,split``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dataforge.boxes import xywh_to_xyxy_floats
from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ExportResult, ImportBatch
from dataforge.formats.common import IMAGE_EXTENSIONS, copy_store_images, prepare_out_dir, problem

if TYPE_CHECKING:
    from dataforge.store import Store

ALIASES: dict[str, tuple[str, ...]] = {
    "image": ("filename", "file_name", "image", "image_name", "image_path", "path", "file", "image_id"),
    "label": ("class", "label", "label_name", "category", "class_name", "name"),
    "xmin": ("xmin", "x_min", "x1", "left"),
    "ymin": ("ymin", "y_min", "y1", "top"),
    "xmax": ("xmax", "x_max", "x2", "right"),
    "ymax": ("ymax", "y_max", "y2", "bottom"),
    "x": ("x", "bbox_x", "box_x"),  # bbox_x...: makesense.ai's CSV export
    "y": ("y", "bbox_y", "box_y"),
    "w": ("w", "box_width", "bbox_width"),
    "h": ("h", "box_height", "bbox_height"),
    "bbox": ("bbox", "box", "bounding_box"),
    "width": ("width", "image_width", "img_width"),
    "height": ("height", "image_height", "img_height"),
    "split": ("split", "subset"),
}
_NUM = re.compile(r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|-?\.\d+")


def _map_columns(header: list[str], override: str | None, where: str) -> dict[str, int]:
    lower = [h.strip().lower() for h in header]
    cols: dict[str, int] = {}
    for role, names in ALIASES.items():
        for n in names:
            if n in lower and lower.index(n) not in cols.values():
                cols[role] = lower.index(n)
                break
    if "xmin" in cols and "xmax" not in cols and "w" in cols:  # x1, y1, w, h
        cols["x"], cols["y"] = cols.pop("xmin"), cols.pop("ymin", -1)
    if "w" not in cols and "width" in cols and "xmax" not in cols and ("x" in cols or "xmin" in cols):
        cols["w"], cols["h"] = cols.pop("width"), cols.pop("height", -1)  # x, y, width, height boxes
        if "xmin" in cols:
            cols["x"], cols["y"] = cols.pop("xmin"), cols.pop("ymin", -1)
    for pair in (override or "").split(","):
        if not pair.strip():
            continue
        role, sep, col = pair.partition(":")
        if not sep or role.strip() not in ALIASES:
            raise UsageError(
                f"--option columns: expected ROLE:HEADER pairs with roles {', '.join(ALIASES)}, "
                f"found {pair!r}"
            )
        if col.strip().lower() not in lower:
            raise DataError(
                f"{where}: --option columns names {col.strip()!r}, which is not a column "
                f"(columns: {', '.join(header)})",
                source=where,
            )
        cols[role.strip()] = lower.index(col.strip().lower())
    if "image" not in cols:
        raise DataError(
            f"{where}: no image column (looked for {', '.join(ALIASES['image'])}; columns: "
            f"{', '.join(header)})",
            source=where,
            hint="name it with --option columns=image:YOUR_COLUMN",
        )
    return {k: v for k, v in cols.items() if v >= 0}


#: CSV files that are class tables of label-map datasets (the masks format), not box lists
CLASS_TABLES = frozenset({"classes.csv", "class_dict.csv", "objectinfo150.csv"})


def _box_tables(folder: Path) -> list[Path]:
    return [f for f in sorted(folder.glob("*.csv")) if f.name.lower() not in CLASS_TABLES]


class CsvFormat:
    name: ClassVar[str] = "csv"
    description: ClassVar[str] = "CSV, one row per box (or per image for classification); columns by header"
    can_import: ClassVar[bool] = True
    can_export: ClassVar[bool] = True
    image_labels: ClassVar[bool] = True  # image-level labels (see formats.accounting)

    def detect(self, path: Path) -> bool:
        from dataforge.formats.open_images import is_box_csv

        if path.is_file():
            return path.suffix.lower() == ".csv" and not is_box_csv(path)  # Open Images has its own
        tables = _box_tables(path) if path.is_dir() else []
        return bool(tables) and not (path / "Annotations").is_dir() and not any(is_box_csv(p) for p in tables)

    def read(
        self,
        path: Path,
        *,
        images: Path | None = None,
        columns: str | None = None,
        box: str = "auto",
        label: str | None = None,
        **options: Any,
    ) -> ImportBatch:
        if options:
            raise UsageError(f"csv import: unknown options {sorted(options)} (known: columns, box, label)")
        if box not in ("auto", "xyxy", "xywh"):
            raise UsageError(f"csv import: box must be auto, xyxy or xywh, not {box!r}")
        warnings: list[str] = []
        files = [path] if path.is_file() else _box_tables(path)
        if not files:
            raise DataError(f"{path}: no .csv files", source=str(path))
        base = files[0].parent
        root = images or (base / "images" if (base / "images").is_dir() else base)
        stems: dict[str, str] | None = None
        cats: dict[str, int] = {}
        by_name: dict[str, dict[str, Any]] = {}
        anns: list[dict[str, Any]] = []
        for f in files:
            where = f.name
            try:
                text = f.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})", source=str(f)
                ) from None
            rows = list(csv.reader(io.StringIO(text)))
            if not rows:
                continue
            cols = _map_columns(rows[0], columns, where)
            has_box = (
                "bbox" in cols
                or {"xmin", "ymin", "xmax", "ymax"} <= cols.keys()
                or {"x", "y", "w", "h"} <= cols.keys()
            )
            if has_box and "label" not in cols and label is None:
                raise DataError(
                    f"{where}: boxes but no class column (looked for {', '.join(ALIASES['label'])}; "
                    f"columns: {', '.join(rows[0])})",
                    source=str(f),
                    hint="name it with --option columns=label:HEADER, or give every box one class with "
                    "--option label=NAME (a one-class set such as Kaggle's wheat heads)",
                )
            partial = sorted(cols.keys() & {"xmin", "ymin", "xmax", "ymax", "x", "y", "w", "h"})
            if partial and not has_box:  # never read a box list as image labels
                raise DataError(
                    f"{where}: box columns are incomplete ({', '.join(rows[0][cols[r]] for r in partial)}); "
                    "a box needs xmin, ymin, xmax, ymax, or x, y, width, height",
                    source=str(f),
                    hint="name the missing ones with --option columns=ROLE:HEADER",
                )
            file_split = f.stem.split("-")[0] if f.stem.split("-")[0] in ("train", "val", "test") else None
            strings: list[tuple[dict[str, Any], list[float]]] = []  # bbox-string boxes, read below
            for line_no, row in enumerate(rows[1:], start=2):
                if not any(c.strip() for c in row):
                    continue
                loc = f"{where}:{line_no}"
                if len(row) < len(rows[0]):
                    raise DataError(
                        f"{loc}: expected {len(rows[0])} columns, found {len(row)}",
                        source=str(f),
                        hint="fix the row, or remove it",
                    )
                name = row[cols["image"]].strip().replace("\\", "/")
                if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                    if stems is None:
                        stems = _stems(_all_files(root))
                    name = stems.get(name, name)
                img = by_name.get(name)
                if img is None:
                    img = {"id": len(by_name) + 1, "file_name": name}
                    by_name[name] = img
                    split = row[cols["split"]].strip() if "split" in cols else file_split
                    if split:
                        img["split"] = split
                    for key in ("width", "height"):
                        if key in cols and row[cols[key]].strip().isdigit():
                            img[key] = int(row[cols[key]])
                label_cell = row[cols["label"]].strip() if "label" in cols else (label or "")
                if not has_box:
                    if label_cell:
                        img.setdefault("labels", []).append(cats.setdefault(label_cell, len(cats) + 1))
                    continue
                values = self._box(row, cols, box)
                if values is None and not label_cell:
                    continue  # an image without objects
                ann: dict[str, Any] = {"id": len(anns) + 1, "image_id": img["id"], "_where": loc}
                anns.append(ann)
                if not label_cell:
                    ann["_problem"] = problem("no label", f"{loc}: the class cell is empty")
                elif values is None:
                    ann["_problem"] = problem("bad bbox", f"{loc}: the box cells are empty or not numbers")
                else:
                    ann["category_id"] = cats.setdefault(label_cell, len(cats) + 1)
                    x1, y1, a, b = values
                    if "bbox" in cols and box == "auto":
                        strings.append((ann, values))
                        continue
                    ann["bbox"] = (
                        [x1, y1, a, b]
                        if box == "xywh" or {"x", "w"} <= cols.keys()
                        else [x1, y1, a - x1, b - y1]
                    )
            if strings:
                as_corners = all(v[2] > v[0] and v[3] > v[1] for _, v in strings)
                as_sizes = all(v[2] > 0 and v[3] > 0 for _, v in strings)
                wh = not as_corners and as_sizes
                if wh:  # COCO's and Kaggle's [x, y, width, height]
                    bad = sum(1 for _, v in strings if not (v[2] > v[0] and v[3] > v[1]))
                    warnings.append(
                        f"{where}: bbox read as [x, y, width, height]: {bad} of {len(strings)} boxes are "
                        "not valid as corners (--option box=xyxy|xywh to say which)"
                    )
                for ann, (x1, y1, a, b) in strings:
                    ann["bbox"] = [x1, y1, a, b] if wh else [x1, y1, a - x1, b - y1]
        return ImportBatch(
            format=self.name,
            source=str(path.resolve()),
            images_root=root,
            images=list(by_name.values()),
            annotations=anns,
            categories=[{"id": c, "name": n} for n, c in cats.items()],
            warnings=warnings,
            private_keys=True,
        )

    @staticmethod
    def _box(row: list[str], cols: dict[str, int], box: str) -> list[float] | None:
        if "bbox" in cols:
            nums = _NUM.findall(row[cols["bbox"]])
        elif "xmin" in cols:
            nums = [row[cols[k]].strip() for k in ("xmin", "ymin", "xmax", "ymax")]
        else:
            nums = [row[cols[k]].strip() for k in ("x", "y", "w", "h")]
        if len(nums) != 4 or not all(nums):
            return None
        try:
            return [float(v) for v in nums]
        except ValueError:
            return None

    def export(
        self, store: Store, out: Path, *, image_ids: list[int], link: bool = False, **options: Any
    ) -> ExportResult:
        if options:
            raise UsageError(f"csv export: unknown options {sorted(options)}")
        prepare_out_dir(out)
        names = store.index.category_names
        wanted = set(image_ids)
        rows: list[list[Any]] = [
            ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax", "split"]
        ]
        label_rows: list[list[Any]] = [["filename", "class", "split"]]
        images = [img for img in store.images if img["id"] in wanted]
        n = 0
        for img in images:
            anns = store.index.anns_by_image.get(img["id"], [])
            split = img.get("split") or ""
            for a in anns:
                rows.append(
                    [
                        img["file_name"],
                        img["width"],
                        img["height"],
                        names[a["category_id"]],
                        *(repr(v) for v in xywh_to_xyxy_floats(a["bbox"])),
                        split,
                    ]
                )
                n += 1
            if not anns:
                rows.append([img["file_name"], img["width"], img["height"], "", "", "", "", "", split])
            for c in img.get("labels") or []:
                label_rows.append([img["file_name"], names[c], split])
        with open(out / "annotations.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
        files = [out / "annotations.csv"]
        if len(label_rows) > 1:
            with open(out / "labels.csv", "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows(label_rows)
            files.append(out / "labels.csv")
        copy_store_images(
            store, out, [(img["file_name"], f"images/{img['file_name']}") for img in images], link=link
        )
        return ExportResult(out=out, images=len(images), annotations=n, files=files)


def _stems(files: list[str]) -> dict[str, str]:
    """Image name without extension -> its file: by relative path, and by base name where that is
    unique (Kaggle's ``image_id`` names ``train/<id>.jpg`` by its id alone)."""
    images = [p for p in files if os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS]
    out = {os.path.splitext(p)[0]: p for p in images}
    bases: dict[str, list[str]] = {}
    for p in images:
        bases.setdefault(os.path.splitext(os.path.basename(p))[0], []).append(p)
    for stem, paths in bases.items():
        if len(paths) == 1:
            out.setdefault(stem, paths[0])
    return out


def _all_files(root: Path) -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            out.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return out
