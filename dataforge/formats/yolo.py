"""YOLO: normalized ``class cx cy w h`` label files, one per image.

Import understands three layouts:

* Ultralytics: a ``data.yaml`` with ``names`` (list or ``{id: name}``) and ``train``/``val``/``test``
  entries (image folders, list files, or lists of those) resolved against ``path`` or the yaml's
  folder; labels are found by replacing the last ``images`` folder of an image's path with
  ``labels``. Paths that do not resolve (Roboflow writes ``../valid/images``) fall back to the
  usual ``<split>/images`` and ``images/<split>`` folders, with a warning.
* Darknet: ``obj.data`` naming ``names`` and ``train``/``valid`` list files; list entries such as
  ``data/obj_train_data/1.jpg`` are resolved relative to the ``obj.data`` folder (dropping the
  ``data/`` prefix Darknet itself adds); labels sit next to images.
* A folder with ``obj.names`` (or ``classes.txt``) and ``images/<split>/`` + ``labels/<split>/`` (or
  ``Images/`` + ``Annotations/``).

Class ids are 0-based indices into the names list: category id = class id. An image without a
label file has no objects. Label lines are boxes ``class cx cy w h``, Ultralytics -seg polygons
``class x1 y1 x2 y2 x3 y3 ...`` (one part per line) or, when ``data.yaml`` has ``kpt_shape: [K, D]``,
-pose lines ``class cx cy w h`` + K points of D = 2 (``x y``) or 3 (``x y v``) numbers; its
``flip_idx`` and ``kpt_names`` go to the categories.

Export writes the Ultralytics layout: ``images/<split>/``, ``labels/<split>/``, and a ``data.yaml``
whose names list is the store's categories in id order (YOLO ids 0..K-1). ``--option task=``
``detect`` | ``segment`` | ``pose`` (default ``auto``: pose when a category has keypoints, segment
when an annotation has a mask). Segment lines are polygons: RLE masks become their outer contours
and multi-part masks one polygon joined by zero-width bridges, each counted as approximated; an
annotation without a mask is written as its box's outline (counted). Pose writes ``kpt_shape: [K,
3]``, ``flip_idx`` and ``kpt_names``; every keypoint category must have the same K.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from dataforge.boxes import xywh_to_cxcywh_norm_floats
from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ExportResult, ImportBatch
from dataforge.formats.common import (
    copy_store_images,
    flat_name,
    is_image,
    list_images,
    prepare_out_dir,
    problem,
    read_text,
    rel,
)

if TYPE_CHECKING:
    from dataforge.store import Store

SPLIT_KEYS = ("train", "val", "valid", "test")


def _names_from_yaml(doc: Any, path: Path) -> list[str]:
    names = doc.get("names") if isinstance(doc, dict) else None
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except ValueError:
            raise DataError(
                f"{path}: 'names' keys must be class ids, found {list(names)[:5]}", source=str(path)
            ) from None
        if ids != list(range(len(ids))):
            raise DataError(f"{path}: 'names' ids must be 0..{len(ids) - 1}, found {ids}", source=str(path))
        return [str(names[k] if k in names else names[str(k)]) for k in ids]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise DataError(
        f"{path}: no 'names' list in the YOLO yaml",
        source=str(path),
        hint="data.yaml needs names: [cat, dog, ...]",
    )


def _read_names_file(path: Path) -> list[str]:
    return [ln.strip() for ln in read_text(path, what="names file").splitlines() if ln.strip()]


def _label_path_for(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder in the path becomes ``labels``; .txt suffix."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


class YoloFormat:
    name: ClassVar[str] = "yolo"
    description: ClassVar[str] = "YOLO txt labels (Ultralytics data.yaml, or Darknet obj.data/obj.names)"
    can_import: ClassVar[bool] = True
    can_export: ClassVar[bool] = True
    #: -seg holds masks, -pose keypoints: the export counts what its task leaves out
    carries: ClassVar[frozenset[str]] = frozenset({"masks", "keypoints"})

    def detect(self, path: Path) -> bool:
        if path.is_file():
            return (
                path.suffix in (".yaml", ".yml") and "names" in path.read_text(errors="replace")[:65536]
            ) or path.name == "obj.data"
        if not path.is_dir():
            return False
        if (path / "obj.data").is_file() or (path / "obj.names").is_file():
            return True
        return any(self.detect(p) for p in path.glob("*.yaml"))

    # -- import ----------------------------------------------------------------------------
    def read(self, path: Path, *, images: Path | None = None, **options: Any) -> ImportBatch:
        if options:
            raise UsageError(f"yolo import: unknown options {sorted(options)}")
        warnings: list[str] = []
        self._pose: _Pose | None = None
        if path.is_dir():
            yamls = sorted(path.glob("data.yaml")) or sorted(p for p in path.glob("*.y*ml") if self.detect(p))
            if (path / "obj.data").is_file():
                root, names, entries = self._darknet(path / "obj.data", warnings)
            elif yamls:
                root, names, entries = self._ultralytics(yamls[0], warnings)
            elif (path / "obj.names").is_file() or (path / "classes.txt").is_file():
                root, names, entries = self._names_layout(path, warnings)
            else:
                raise DataError(
                    f"{path}: no data.yaml, obj.data or obj.names: not a YOLO dataset", source=str(path)
                )
        elif path.name == "obj.data":
            root, names, entries = self._darknet(path, warnings)
        else:
            root, names, entries = self._ultralytics(path, warnings)
        found: dict[int, str] | None = None
        if images is not None:
            found = self._elsewhere(entries, root, images, warnings)
        return self._batch(path, root, names, entries, warnings, images, found)

    @staticmethod
    def _elsewhere(
        entries: list[tuple[str | None, Path]], root: Path, images: Path, warnings: list[str]
    ) -> dict[int, str]:
        """With ``--images``: each listed image's place under ``images`` (its index -> the path
        there), found by the listed path's tail: ``obj_train_data/a.jpg`` in a CVAT list is looked
        for as ``obj_train_data/a.jpg``, then ``a.jpg``. The label files stay where the list puts
        them. Images found nowhere keep their listed name, and the import reports them missing."""
        out: dict[int, str] = {}
        missing = 0
        for i, (_split, img_path) in enumerate(entries, start=1):
            try:
                parts = img_path.relative_to(root).parts
            except ValueError:  # an absolute path from the exporter's machine
                parts = img_path.parts[1:] if img_path.is_absolute() else img_path.parts
            parts = tuple(p for p in parts if p not in ("..", "."))
            tails = ["/".join(parts[k:]) for k in range(len(parts))]
            hit = next((t for t in tails if (images / t).is_file()), None)
            out[i] = hit if hit is not None else tails[-1]
            missing += hit is None
        if entries:
            warnings.append(
                f"images read from {images}, matched by the listed paths' tails"
                + (f"; {missing} of {len(entries)} not found there" if missing else "")
            )
        return out

    def _ultralytics(
        self, yml: Path, warnings: list[str]
    ) -> tuple[Path, list[str], list[tuple[str | None, Path]]]:
        try:
            doc = yaml.safe_load(read_text(yml, what="YOLO yaml"))
        except yaml.YAMLError as exc:
            raise DataError(f"{yml}: malformed YAML: {exc}".replace("\n", " "), source=str(yml)) from None
        names = _names_from_yaml(doc, yml)
        base = yml.parent
        if isinstance(doc.get("path"), str):
            p = Path(doc["path"])
            base = p if p.is_absolute() else (yml.parent / p)
            if not base.is_dir():
                warnings.append(f"{yml}: path {doc['path']!r} does not exist; using the yaml's folder")
                base = yml.parent
        entries: list[tuple[str | None, Path]] = []
        for key in SPLIT_KEYS:
            value = doc.get(key)
            if value is None:
                continue
            split = "val" if key == "valid" else key
            for item in value if isinstance(value, list) else [value]:
                found = self._resolve_split(base, str(item), split)
                if found is None:
                    warnings.append(
                        f"{yml}: {key}: {item!r} does not exist (also tried {split}/images and "
                        f"images/{split}); no {split} images imported"
                    )
                    continue
                if str(found) != str(base / item):
                    warnings.append(f"{yml}: {key}: {item!r} does not exist; using {rel(found, base)}")
                entries.extend((split, p) for p in self._images_of(found, base))
        self._pose = _pose_layout(doc, yml, len(names))
        return base, names, entries

    @staticmethod
    def _resolve_split(base: Path, item: str, split: str) -> Path | None:
        stripped = item
        while stripped.startswith("../"):
            stripped = stripped[3:]
        for cand in (base / item, base / stripped, base / split / "images", base / "images" / split):
            if cand.exists():
                return cand
        return None

    @staticmethod
    def _images_of(found: Path, base: Path) -> list[Path]:
        if found.is_dir():
            return list_images(found)
        out = []
        for line in read_text(found, what="image list").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                p = Path(line)
                out.append(
                    p if p.is_absolute() else (found.parent / p if (found.parent / p).exists() else base / p)
                )
        return out

    def _darknet(
        self, obj_data: Path, warnings: list[str]
    ) -> tuple[Path, list[str], list[tuple[str | None, Path]]]:
        root = obj_data.parent
        conf: dict[str, str] = {}
        for line in read_text(obj_data, what="obj.data").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                conf[key.strip()] = value.strip()

        def local(p: str) -> Path:
            cand = root / p
            if not cand.exists() and p.startswith("data/"):
                cand = root / p[len("data/") :]
            return cand

        names_file = local(conf.get("names", "obj.names"))
        if not names_file.is_file():
            raise DataError(f"{obj_data}: names file {conf.get('names')!r} not found", source=str(obj_data))
        names = _read_names_file(names_file)
        entries: list[tuple[str | None, Path]] = []
        for key, split in (("train", "train"), ("valid", "val"), ("test", "test")):
            if key not in conf:
                continue
            lst = local(conf[key])
            if not lst.is_file():
                warnings.append(f"{obj_data}: {key} list {conf[key]!r} not found; no {split} images imported")
                continue
            for line in read_text(lst, what="image list").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    entries.append((split, local(line)))
        return root, names, entries

    def _names_layout(
        self, root: Path, warnings: list[str]
    ) -> tuple[Path, list[str], list[tuple[str | None, Path]]]:
        names_file = root / "obj.names" if (root / "obj.names").is_file() else root / "classes.txt"
        names = _read_names_file(names_file)
        entries: list[tuple[str | None, Path]] = []
        if (root / "images").is_dir():
            splits = [d for d in sorted((root / "images").iterdir()) if d.is_dir()]
            if splits:
                for d in splits:
                    entries.extend((d.name, p) for p in list_images(d))
            else:
                entries.extend((None, p) for p in list_images(root / "images"))
        elif (root / "Images").is_dir():
            entries.extend((None, p) for p in list_images(root / "Images"))
        return root, names, entries

    def _label_file(self, image: Path) -> Path | None:
        for cand in (_label_path_for(image), image.with_suffix(".txt")):
            if cand.is_file():
                return cand
        if "Images" in image.parts:  # Images/ + Annotations/
            parts = list(image.parts)
            parts[len(parts) - 1 - parts[::-1].index("Images")] = "Annotations"
            cand = Path(*parts).with_suffix(".txt")
            if cand.is_file():
                return cand
        return None

    def _batch(
        self,
        source: Path,
        root: Path,
        names: list[str],
        entries: list[tuple[str | None, Path]],
        warnings: list[str],
        images_dir: Path | None = None,
        found: dict[int, str] | None = None,
    ) -> ImportBatch:
        """``found``: each image's path under ``images_dir`` (``--images``), else they are read
        where the dataset lists them."""
        images: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        for i, (split, img_path) in enumerate(entries, start=1):
            src = found[i] if found is not None else rel(img_path, root)
            name = f"{split}/{img_path.name}" if split else src
            record: dict[str, Any] = {"id": i, "file_name": name, "_src": src}
            if split:
                record["split"] = split
            if not is_image(img_path):
                record["_problem"] = problem("not an image", f"{src}: not an image file name")
            images.append(record)
            label = self._label_file(img_path)
            if label is not None:
                anns.extend(self._parse_label_file(label, root, i, names, len(anns), self._pose))
        cats: list[dict[str, Any]] = [{"id": k, "name": n} for k, n in enumerate(names)]
        if self._pose is not None:
            for c in cats:
                c["keypoints"] = list(self._pose.names_of(c["id"]))
                if self._pose.flip_idx is not None:
                    c["flip_idx"] = list(self._pose.flip_idx)
        return ImportBatch(
            format=self.name,
            source=str(source.resolve()),
            images_root=images_dir if found is not None and images_dir is not None else root,
            images=_dedupe_names(images),
            annotations=anns,
            categories=cats,
            warnings=warnings,
            private_keys=True,
        )

    @staticmethod
    def _parse_label_file(
        label: Path, root: Path, image_id: int, names: list[str], first: int, pose: _Pose | None = None
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        where_file = rel(label, root)
        try:
            text = label.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return [
                {
                    "id": first + 1,
                    "image_id": image_id,
                    "category_id": None,
                    "_where": where_file,
                    "_problem": problem("unreadable label file", f"{where_file}: cannot read ({exc})"),
                }
            ]
        for n, line in enumerate(text.splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            where = f"{where_file}:{n}"
            ann: dict[str, Any] = {"id": first + len(out) + 1, "image_id": image_id, "_where": where}
            out.append(ann)
            if pose is not None:
                want = 5 + pose.k * pose.dims
                bad = len(parts) != want
                expected = f"{want} values 'class cx cy w h' + {pose.k} points of {pose.dims} (kpt_shape)"
            else:
                bad = len(parts) != 5 and (len(parts) < 7 or len(parts) % 2 == 0)
                expected = "5 values 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...'"
            if bad:
                ann["_problem"] = problem(
                    "malformed label line",
                    f"{where}: expected {expected}, found {len(parts)} values: {line.strip()[:80]!r}",
                )
                continue
            try:
                cls = int(parts[0])
                values = [float(v) for v in parts[1:]]
            except ValueError:
                ann["_problem"] = problem(
                    "malformed label line", f"{where}: not numbers: {line.strip()[:80]!r}"
                )
                continue
            if not 0 <= cls < len(names):
                ann["_problem"] = problem(
                    "unknown category", f"{where}: class id {cls} is past the names list ({len(names)} names)"
                )
                continue
            ann["category_id"] = cls
            if pose is not None:
                ann["_bbox_norm"] = ["cxcywh", values[:4]]
                ann["_keypoints_norm"] = pose.triplets(values[4:])
            elif len(values) == 4:
                ann["_bbox_norm"] = ["cxcywh", values]
            else:
                xs, ys = values[0::2], values[1::2]
                ann["_bbox_norm"] = ["xyxy", [min(xs), min(ys), max(xs), max(ys)]]
                ann["_polygon_norm"] = values
        return out

    # -- export ----------------------------------------------------------------------------
    def export(self, store: Store, out: Path, *, image_ids: list[int], **options: Any) -> ExportResult:
        link = bool(options.pop("link", False))
        task = str(options.pop("task", "auto"))
        if options:
            raise UsageError(f"yolo export: unknown options {sorted(options)} (known: task, link)")
        cats = sorted(store.data["categories"], key=lambda c: c["id"])
        task, k_points = _export_task(store, cats, task)
        prepare_out_dir(out)
        yolo_id = {c["id"]: i for i, c in enumerate(cats)}
        labels = _LabelWriter(task, k_points, {c["id"]: c for c in cats})
        wanted = set(image_ids)
        images = [img for img in store.images if img["id"] in wanted]
        splits: dict[str, int] = {}
        n_boxes = 0
        dropped = 0
        copies: list[tuple[str, str]] = []
        used: set[str] = set()
        for img in images:
            split = img.get("split") or "train"
            splits[split] = splits.get(split, 0) + 1
            flat = flat_name(img["file_name"], used)
            copies.append((img["file_name"], f"images/{split}/{flat}"))
            lines = []
            w, h = img["width"], img["height"]
            for a in store.index.anns_by_image.get(img["id"], []):
                if a["bbox"][2] <= 0 or a["bbox"][3] <= 0:
                    dropped += 1
                    continue
                lines.append(f"{yolo_id[a['category_id']]} " + labels.line(a, w, h))
                n_boxes += 1
            label = out / "labels" / split / (os.path.splitext(flat)[0] + ".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
        copy_store_images(store, out, copies, link=link)
        doc: dict[str, Any] = {
            "path": ".",
            **{s: f"images/{s}" for s in sorted(splits)},
            "nc": len(cats),
            "names": [c["name"] for c in cats],
        }
        if task == "pose":
            doc.update(labels.pose_yaml(cats))
        (out / "data.yaml").write_text(
            "# written by dataforge: YOLO class id = index in names (store category ids "
            + ", ".join(f"{c['id']}->{yolo_id[c['id']]}" for c in cats)
            + ")\n"
            + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
            encoding="utf-8",
        )
        return ExportResult(
            out=out,
            images=len(images),
            annotations=n_boxes,
            files=[out / "data.yaml"],
            dropped={**({"degenerate boxes": dropped} if dropped else {}), **labels.dropped},
            approximated=dict(labels.approximated),
            notes=[f"task: {task}", "class ids 0..K-1 in store category-id order, listed in data.yaml"],
            category_ids=dict(yolo_id),
        )


@dataclass(frozen=True)
class _Pose:
    """A YOLO-pose layout from ``data.yaml``: ``kpt_shape`` ``[k, dims]``, ``flip_idx``, ``kpt_names``."""

    k: int
    dims: int
    flip_idx: list[int] | None
    names: dict[int, list[str]]

    def names_of(self, class_id: int) -> list[str]:
        return self.names.get(class_id) or [str(i + 1) for i in range(self.k)]

    def triplets(self, values: list[float]) -> list[float]:
        """Normalized ``x, y, v`` triplets; with 2 dims a point at (0, 0) is unlabelled, the rest visible
        (Ultralytics' reading); ``v`` kept as written otherwise (checked on import: 0, 1 or 2)."""
        out: list[float] = []
        for i in range(self.k):
            x, y = values[i * self.dims], values[i * self.dims + 1]
            v: float = values[i * self.dims + 2] if self.dims == 3 else (0 if x == 0 and y == 0 else 2)
            v = int(v) if float(v).is_integer() else v
            out += [0, 0, 0] if v == 0 else [x, y, v]
        return out


def _pose_layout(doc: dict[str, Any], yml: Path, n_classes: int) -> _Pose | None:
    shape = doc.get("kpt_shape")
    if shape is None:
        return None
    if not (
        isinstance(shape, list)
        and len(shape) == 2
        and all(type(v) is int for v in shape)
        and shape[0] > 0
        and shape[1] in (2, 3)
    ):
        raise DataError(
            f"{yml}: kpt_shape must be [number of keypoints, 2 or 3], found {shape!r}", source=str(yml)
        )
    k, dims = shape
    flip = doc.get("flip_idx")
    if flip is not None and not (isinstance(flip, list) and len(flip) == k):
        raise DataError(f"{yml}: flip_idx must list {k} keypoint indices, found {flip!r}", source=str(yml))
    raw = doc.get("kpt_names")
    names: dict[int, list[str]] = {}
    if isinstance(raw, dict):
        names = {int(c): [str(n) for n in v] for c, v in raw.items() if isinstance(v, list)}
    elif isinstance(raw, list):
        names = {c: [str(n) for n in raw] for c in range(n_classes)}
    for c, v in names.items():
        if len(v) != k:
            raise DataError(
                f"{yml}: kpt_names of class {c} lists {len(v)} names, kpt_shape says {k}", source=str(yml)
            )
    return _Pose(k=k, dims=dims, flip_idx=flip, names=names)


def _export_task(store: Store, cats: list[dict[str, Any]], task: str) -> tuple[str, int]:
    """The task to export (``auto`` resolved) and the keypoint count of a pose export."""
    if task not in ("auto", "detect", "segment", "pose"):
        raise UsageError(f"yolo export: task must be auto, detect, segment or pose, not {task!r}")
    ks = sorted({len(c["keypoints"]) for c in cats if c.get("keypoints")})
    if task == "auto":
        task = (
            "pose" if ks else "segment" if any(a.get("segmentation") for a in store.annotations) else "detect"
        )
    if task == "pose":
        if not ks:
            raise UsageError("yolo export: task=pose, but no category has keypoints")
        if len(ks) > 1:
            raise UsageError(
                f"yolo export: YOLO-pose has one kpt_shape, but the keypoint categories have {ks} points",
                hint="export one keypoint category at a time (--where 'category == ...')",
            )
    return task, ks[0] if task == "pose" else 0


class _LabelWriter:
    """One annotation's label line after the class id, for the export's task; counts what it had to
    approximate (a mask as polygons) or fill in (a box as a polygon, points of a category without)."""

    def __init__(self, task: str, k: int, cats: dict[int, dict[str, Any]]) -> None:
        self.task, self.k, self.cats = task, k, cats
        self.approximated: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()

    def line(self, a: dict[str, Any], w: int, h: int) -> str:
        if a.get("segmentation") and self.task != "segment":
            self.dropped[f"annotations' masks (YOLO {self.task} lines hold none; task=segment does)"] += 1
        if a.get("keypoints") and self.task != "pose":
            self.dropped[f"annotations' keypoints (YOLO {self.task} lines hold none; task=pose does)"] += 1
        cx, cy, nw, nh = xywh_to_cxcywh_norm_floats(a["bbox"], (w, h))
        box = f"{cx:.6f} {cy:.6f} {nw:.6f} {nh:.6f}"
        if self.task == "pose":
            kps = a.get("keypoints")
            if not kps:
                self.approximated["pose lines without keypoints (all points v=0)"] += 1
                kps = [0] * (3 * self.k)
            pts = " ".join(
                f"{kps[i] / w:.6f} {kps[i + 1] / h:.6f} {int(kps[i + 2])}" if kps[i + 2] > 0 else "0 0 0"
                for i in range(0, 3 * self.k, 3)
            )
            return f"{box} {pts}"
        if self.task == "segment":
            poly = self._polygon(a, w, h)
            return " ".join(f"{poly[i] / (w if i % 2 == 0 else h):.6f}" for i in range(len(poly)))
        return box

    def _polygon(self, a: dict[str, Any], w: int, h: int) -> list[float]:
        from dataforge.masks import decode, has_holes, has_mask, is_rle, polygons

        seg = a.get("segmentation")
        if not has_mask(seg):
            self.approximated["boxes written as polygons (no mask)"] += 1
            x, y, bw, bh = a["bbox"]
            return [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
        if is_rle(seg):
            mask = decode(seg, h, w)
            parts = polygons(mask)
            self.approximated[
                "RLE masks traced as polygons" + (" (holes filled)" if has_holes(mask) else "")
            ] += 1
        else:
            parts = [list(map(float, p)) for p in seg or []]
        if len(parts) > 1:
            self.approximated["multi-part masks joined into one polygon"] += 1
        return _join_parts(parts)

    def pose_yaml(self, cats: list[dict[str, Any]]) -> dict[str, Any]:
        from dataforge.keypoints import flip_permutation

        first = next(c for c in cats if c.get("keypoints"))
        return {
            "kpt_shape": [self.k, 3],
            "flip_idx": flip_permutation(first["keypoints"], first.get("flip_idx")),
            "kpt_names": {i: list(c.get("keypoints") or first["keypoints"]) for i, c in enumerate(cats)},
        }


def _join_parts(parts: list[list[float]]) -> list[float]:
    """Several polygons as one (Ultralytics' convention for a multi-part object): each further part
    is spliced in at the vertex pair nearest to what is joined so far, entered and left along the
    same zero-width bridge. pycocotools rasterizes the result to the parts' own pixels (a property
    test checks it on random multi-part masks)."""
    import numpy as np

    out: np.ndarray = np.asarray(parts[0], dtype=np.float64).reshape(-1, 2)
    for part in parts[1:]:
        p = np.asarray(part, dtype=np.float64).reshape(-1, 2)
        d = ((out[:, None, :] - p[None, :, :]) ** 2).sum(axis=-1)
        i, j = np.unravel_index(int(d.argmin()), d.shape)
        ring = np.roll(p, -int(j), axis=0)
        out = np.concatenate([out[: i + 1], ring, ring[:1], out[i:]])
    return [float(v) for v in out.reshape(-1)]


def _dedupe_names(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    for img in images:
        name = img["file_name"]
        if name in seen:
            seen[name] += 1
            stem, ext = os.path.splitext(name)
            img["file_name"] = f"{stem}~{seen[name]}{ext}"
        else:
            seen[name] = 1
    return images


__all__ = ["YoloFormat"]
