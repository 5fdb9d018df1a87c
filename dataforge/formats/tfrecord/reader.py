"""Reading TFRecord shards: where every record is (from the headers), and a range of records
parsed into image records (the image left in the file, probed and hashed) and annotations."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataforge.boxes import xyxy_norm_to_xywh_floats
from dataforge.errors import ImageError, UsageError
from dataforge.formats.base import Embedded, ImportBatch
from dataforge.formats.common import FileWindows, problem, read_text, rel
from dataforge.formats.tfrecord.example import parse_example
from dataforge.formats.tfrecord.framing import RecordError, read_record, read_span, record_spans
from dataforge.formats.tfrecord.schema import (
    BBOX_KEYS,
    CORE_KEYS,
    FORMAT_KEYS,
    IMAGE_FORMATS,
    OD_API_KEYS,
    is_tfrecord,
    parse_label_map,
    split_of,
)
from dataforge.imageio import probe_bytes, sha256_bytes

_INF = float("inf")


def _text(v: Any) -> str:
    return v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v or "")


def _damaged(where_file: str, exc: RecordError, *, after: bool) -> dict[str, Any]:
    rest = " (records after it in this file cannot be read)" if after else ""
    return {
        "file_name": f"{where_file}#{exc.index}",
        "_problem": problem("damaged record", f"{where_file}: {exc}{rest}"),
    }


@dataclass(frozen=True)
class ReadOptions:
    """How records are read: ``images``, the folder of the images records only name (with
    ``--images``); ``skip_class0``, leave out objects of class 0 (``class0=skip``)."""

    images: Path | None = None
    skip_class0: bool = False


def _stored_name(filename: str) -> str:
    """A record's image/filename as a store name: an absolute path from the exporter's machine
    (``/home/me/x.jpg``, ``C:\\data\\x.jpg``) becomes its base name."""
    flat = filename.replace("\\", "/")
    if flat.startswith("/") or (len(flat) > 1 and flat[1] == ":"):
        return flat.rsplit("/", 1)[-1]
    return flat


def _external(images: Path, filename: str, split: str | None) -> str:
    """Where, under ``images``, the image a record names is: ``<split>/<filename>``, the filename
    as written, or its base name (the exporter's folders are not this machine's), first found."""
    base = os.path.basename(filename.replace("\\", "/"))
    for cand in ([f"{split}/{filename}", f"{split}/{base}"] if split else []) + [filename, base]:
        if (images / cand).is_file():
            return cand
    return filename  # not there: the import reports the missing file by this name


def _position(data: bytes, part: bytes) -> int:
    """Where ``part`` (a value parsed out of ``data``) lies in ``data``: found by its first 64 bytes
    and checked in place, which is 5x faster than searching for all of it."""
    pos = data.find(part[:64])
    return pos if pos >= 0 and data.startswith(part, pos) else data.find(part)


def _embedded(fields: tuple[str, int, int, int, int, str]) -> Embedded:
    """An :class:`Embedded` from its fields in order (4x faster than its keyword-checking ``__new__``)."""
    return tuple.__new__(Embedded, fields)


def _record(
    data: bytes,
    offset: int,
    image_id: int,
    where_file: str,
    index: int,
    file_path: str,
    split: str | None,
    imgs: list[dict[str, Any]],
    anns: list[dict[str, Any]],
    label_map: dict[int, str],
    opts: ReadOptions | None = None,
) -> None:
    """Parse record ``index`` (at ``offset`` of ``file_path``) into an image record and its annotations.

    The image is probed and hashed here, and kept as an :class:`Embedded` reference to its bytes
    in the file; boxes are made absolute with its real size. Annotation ids count from 1 within
    ``anns``; without a label map, categories are left as ``_text``/``_label`` for the caller to
    number in order.
    """
    record: dict[str, Any] = {"id": image_id}
    imgs.append(record)
    where = f"{where_file} record {index}"
    try:
        ex = parse_example(data, CORE_KEYS if label_map else OD_API_KEYS)
    except (ValueError, UnicodeDecodeError) as exc:
        record["file_name"] = where
        record["_problem"] = problem("malformed record", f"{where}: not a tf.train.Example ({exc})")
        return
    get = ex.get
    v = get("image/source_id")
    source_id = _text(v[0]) if v else ""
    v = get("image/filename")
    filename = _text(v[0]) if v else ""
    if not filename:
        v = parse_example(data, FORMAT_KEYS).get("image/format")
        fmt = _text(v[0]).lower() if v else ""
        filename = f"{source_id or image_id}.{IMAGE_FORMATS.get(fmt, 'jpg')}"
    name = _stored_name(filename)
    record["file_name"] = f"{split}/{name}" if split else name
    v = get("image/encoded")
    encoded = v[0] if v else b""
    size: tuple[int, int] | None = None
    if encoded:
        try:
            info = probe_bytes(encoded, where=f"{where} ({filename})")
        except ImageError as exc:
            record["_problem"] = problem(exc.reason or "bad image", str(exc))
        else:
            size = info.width, info.height
            record["_embedded"] = _embedded(
                (
                    file_path,
                    offset + 12 + _position(data, encoded),
                    len(encoded),
                    *size,
                    sha256_bytes(encoded),
                )
            )
    elif opts is not None and opts.images is not None:  # the record names its image: read it there
        record["_src"] = _external(opts.images, filename, split)
    else:
        record["_problem"] = problem(
            "no embedded image",
            f"{where}: image/encoded is empty: the record names its image ({filename}) without holding "
            "it; pass --images FOLDER to read the images from there",
        )
    w, h = get("image/width"), get("image/height")
    if w and h:
        w, h = w[0], h[0]
        if type(w) is int and type(h) is int and w > 0 and h > 0:
            record["width"], record["height"] = w, h
    if split:
        record["split"] = split
    if source_id:
        record["tf_source_id"] = source_id
    cols = [get(k, ()) for k in BBOX_KEYS]
    n = max(map(len, cols))
    if n:
        labels = get("image/object/class/label", ())
        if label_map and (len(labels) < n or not all(label in label_map for label in labels)):
            get = parse_example(data, OD_API_KEYS).get  # class/text names the unknown labels
        _objects(
            cols,
            n,
            labels,
            get("image/object/class/text", ()),
            size,
            image_id,
            where,
            anns,
            label_map,
            record if opts is not None and opts.skip_class0 else None,
        )


def _objects(
    cols: list[Any],
    n: int,
    labels: Any,
    texts: Any,
    size: tuple[int, int] | None,
    image_id: int,
    where: str,
    anns: list[dict[str, Any]],
    label_map: dict[int, str],
    skip_class0: dict[str, Any] | None = None,
) -> None:
    """A record's ``n`` objects as annotations. Boxes are made absolute with the image's real
    ``size`` (probed by the caller) here, in the parsing process; what the import must report
    instead is marked: box lists of different lengths, a label outside the label map, numbers of
    another kind, an image without a size. Without a label map, categories are left as
    ``_text``/``_label`` for the caller to number. Only annotations that the import may have to
    report name their place (``_where``)."""
    same_length = all(len(c) == n for c in cols)
    next_id = len(anns) + 1
    xs0, ys0, xs1, ys1 = cols
    n_labels = len(labels)
    skipped = 0
    for k in range(n):
        label = labels[k] if k < n_labels else None
        if label == 0 and type(label) is int and skip_class0 is not None and 0 not in label_map:
            skipped += 1  # the OD API's background class, left out on request (counted)
            continue
        ann: dict[str, Any] = {"id": next_id + k - skipped, "image_id": image_id}
        anns.append(ann)
        if not same_length:
            ann["_where"] = at = f"{where} object {k}"
            ann["_problem"] = problem("bad bbox", f"{at}: bbox lists have different lengths")
            continue
        if type(label) is int and label in label_map:
            ann["category_id"] = label
        else:
            text = _text(texts[k]) if k < len(texts) else ""
            if not label_map and text and label != 0:
                ann["_text"], ann["_label"] = text, label
            else:
                ann["_where"] = at = f"{where} object {k}"
                why = (
                    "class/label 0: the TF Object Detection API keeps 0 for the implicit "
                    "background class (label maps start at 1), so no object should have it; pass "
                    "--option class0=skip to leave such objects out (they are counted)"
                    if label == 0
                    else f"class/label {label!r} ({text!r}) is not in the label map"
                )
                ann["_problem"] = problem("unknown category", f"{at}: {why}")
                continue
        x0, y0, x1, y1 = xs0[k], ys0[k], xs1[k], ys1[k]
        if size is None or not type(x0) is type(y0) is type(x1) is type(y1) is float:  # the import reports it
            ann["_where"] = f"{where} object {k}"
            ann["_bbox_norm"] = ["xyxy", [x0, y0, x1, y1]]
            continue
        x, y, bw, bh = xyxy_norm_to_xywh_floats(x0, y0, x1, y1, size)
        ann["bbox"] = [x, y, bw, bh]
        ann["area"] = area = bw * bh
        ann["iscrowd"] = 0
        ann["segmentation"] = []
        if not (bw > 0 and bh > 0 and area < _INF):  # empty or not finite: the import reports it
            ann["_where"] = f"{where} object {k}"
    if skipped and skip_class0 is not None:
        skip_class0["_class0"] = skipped


class TfrecordScan:
    """The records of a set of TFRecord files, found from their headers; parsed by range."""

    format = "tfrecord"

    def __init__(self, source: str, root: Path, label_map: dict[int, str]) -> None:
        self.source = source
        self.images_root = root
        self.label_map = label_map
        self.tasks: list[tuple[int, int, int, int]] = []  # (file number, record number, offset, length)
        self.sources: list[tuple[str, str, str | None]] = []  # (path, name in messages, split)
        self.damaged: list[dict[str, Any]] = []  # a problem image for each file whose framing breaks
        self.opts = ReadOptions()

    @property
    def n(self) -> int:
        return len(self.tasks)

    @property
    def categories(self) -> list[dict[str, Any]] | None:
        """The label map's; without one, categories come from ``class/text`` as records are read."""
        return [{"id": k, "name": v} for k, v in sorted(self.label_map.items())] if self.label_map else None

    @property
    def direct(self) -> bool:
        """Whether the records can go the direct way: no damaged file, every image embedded (no
        ``--images``), nothing to count aside (class 0)."""
        return not self.damaged and self.opts.images is None and not self.opts.skip_class0

    def where(self, k: int) -> str:
        """Record ``k`` as messages name it: ``train.tfrecord record 12``."""
        fi, index, _, _ = self.tasks[k]
        return f"{self.sources[fi][1]} record {index}"

    def parse_range(self, start: int, stop: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Records ``start..stop-1`` (see :class:`RecordScan`), read through 4 MiB windows of their files."""
        imgs: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        tasks, sources, label_map = self.tasks, self.sources, self.label_map
        with FileWindows() as windows:
            for k in range(start, stop):
                fi, index, offset, length = tasks[k]
                file_path, where_file, split = sources[fi]
                try:
                    data = read_record(windows[file_path], offset, length, index)
                except RecordError as exc:
                    imgs.append({"id": k + 1, **_damaged(where_file, exc, after=False)})
                    continue
                _record(
                    data, offset, k + 1, where_file, index, file_path, split, imgs, anns, label_map, self.opts
                )
        return imgs, anns

    def example(self, k: int) -> tuple[dict[str, Any], list[dict[str, Any]], bytes]:
        """Record ``k`` alone, read once (random access, for training): its image record and
        annotations as :meth:`parse_range` makes them, and its encoded image (``b""`` when the
        record is damaged or holds none)."""
        fi, index, offset, length = self.tasks[k]
        file_path, where_file, split = self.sources[fi]
        fd = os.open(file_path, os.O_RDONLY)
        try:
            data = read_span(fd, offset, length, index)
        except RecordError as exc:
            return {"id": k + 1, **_damaged(where_file, exc, after=False)}, [], b""
        finally:
            os.close(fd)
        imgs: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        _record(
            data, offset, k + 1, where_file, index, file_path, split, imgs, anns, self.label_map, self.opts
        )
        emb = imgs[0].get("_embedded")
        if emb is None:
            return imgs[0], anns, b""
        start = emb.offset - offset - 12  # the image's place in the record's data
        return imgs[0], anns, data[start : start + emb.length]

    def batch(self, parts: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]) -> ImportBatch:
        imgs: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        for part_imgs, part_anns in parts:
            imgs.extend(part_imgs)
            base = len(anns)
            if base:
                for a in part_anns:
                    a["id"] += base
            anns.extend(part_anns)
        for n, bad in enumerate(self.damaged, len(self.tasks) + 1):  # a damaged header ends its file
            imgs.append({"id": n, **bad})
        class0 = sum(img.pop("_class0", 0) for img in imgs)
        warnings = (
            [f"{self.source}: {class0} objects of class 0 (the OD API's background) left out (class0=skip)"]
            if class0
            else []
        )
        text_ids: dict[str, int] = {}
        if not self.label_map:  # categories come from class/text, numbered in order of appearance
            for a in anns:
                text = a.pop("_text", None)
                if text is not None:
                    label = a.pop("_label")
                    a["category_id"] = text_ids.setdefault(
                        text, label if type(label) is int and label > 0 else len(text_ids) + 1
                    )
        cats = dict(self.label_map)
        for name, cid in text_ids.items():
            cats.setdefault(cid, name)
        return ImportBatch(
            format=self.format,
            source=self.source,
            images_root=self.opts.images if self.opts.images is not None else self.images_root,
            images=imgs,
            annotations=anns,
            categories=[{"id": k, "name": v} for k, v in sorted(cats.items())],
            warnings=warnings,
            private_keys=True,
            dropped={"objects of class 0 (the OD API's background; class0=skip)": class0} if class0 else {},
        )


def scan(path: Path, *, images: Path | None = None, class0: str = "fail", **options: Any) -> TfrecordScan:
    """Every record's place in a ``.tfrecord`` file or a folder of shards, from the record headers
    alone, with the label maps found beside them (see :class:`RecordScan`). ``images``: where the
    images of records that only name them (empty ``image/encoded``) are; ``class0="skip"`` leaves
    out the objects of class 0 (the OD API's background) and counts them."""
    if options:
        raise UsageError(f"tfrecord import: unknown options {sorted(options)} (known: class0)")
    if class0 not in ("fail", "skip"):
        raise UsageError(f"tfrecord import: class0 must be fail or skip, not {class0!r}")
    root = path if path.is_dir() else path.parent
    files = [path] if path.is_file() else sorted(p for p in root.rglob("*") if is_tfrecord(p))
    label_map: dict[int, str] = {}
    for lm in sorted({f.parent / "label_map.pbtxt" for f in files} | {root / "label_map.pbtxt"}):
        if lm.is_file():
            label_map.update(parse_label_map(read_text(lm, what="label map")))
    scan = TfrecordScan(str(path.resolve()), root, label_map)
    scan.opts = ReadOptions(images=images, skip_class0=class0 == "skip")
    for f in files:
        where_file = rel(f, root) if f != path else f.name
        scan.sources.append((str(f), where_file, split_of(f, root)))
        fd = os.open(f, os.O_RDONLY)
        try:
            for index, (offset, length) in enumerate(record_spans(fd)):
                scan.tasks.append((len(scan.sources) - 1, index, offset, length))
        except RecordError as exc:
            scan.damaged.append(_damaged(where_file, exc, after=True))
        finally:
            os.close(fd)
    return scan
