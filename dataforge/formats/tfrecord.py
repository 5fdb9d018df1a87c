"""TFRecord with the TF Object Detection API schema, plus ``label_map.pbtxt``. No TensorFlow needed.

Features read and written: ``image/encoded`` (the image itself), ``image/format``,
``image/filename``, ``image/source_id``, ``image/width``, ``image/height``, ``image/key/sha256``,
``image/object/bbox/{xmin,ymin,xmax,ymax}`` (normalized to the image size),
``image/object/class/label`` (label-map id) and ``image/object/class/text``.

Import takes a ``.tfrecord`` file, a shard pattern's files, or a folder of them; the split comes
from the file name (``train.tfrecord``, ``val.tfrecord-00001-of-00004``) or the folder. Every
record's two CRCs are checked; a damaged record is an error naming the file and record. Category
ids are the label map's ids (``class/text`` names them when there is no label map); an object
whose id is not in the label map (the TF OD API's 0, "unlabelled") is reported.

Export writes ``<split>.tfrecord-0000i-of-0000N`` shards (``--option shards=N``, default 1:
``<split>.tfrecord``) and ``label_map.pbtxt`` with ids 1..K in store category-id order. Boxes are
stored as float32 like every TF OD API writer. Degenerate boxes are not written; they are counted.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dataforge.errors import DataError, ImageError, UsageError
from dataforge.formats.base import Embedded, ExportResult, ImportBatch
from dataforge.formats.common import prepare_out_dir, problem, read_text, rel
from dataforge.formats.tfrecord_io import (
    BYTES_LIST,
    FLOAT_LIST,
    INT64_LIST,
    ChunkReaders,
    FeatureKeys,
    RecordError,
    bytes_entry,
    entry_head,
    entry_key,
    example_bytes,
    one_bytes_head,
    packed_entry,
    parse_example,
    record_spans,
    varint,
    write_record,
)
from dataforge.imageio import probe_bytes, sha256_bytes
from dataforge.parallel import map_ranges

if TYPE_CHECKING:
    from dataforge.store import Store

_SHARD = re.compile(r"^(?P<split>.+?)\.(tfrecords?|record)(-\d+-of-\d+)?$")
_ITEM = re.compile(r"item\s*\{(.*?)\}", re.S)
#: the features the importer reads, with the kind each has in the TF OD API schema
OD_API_KEYS = FeatureKeys(
    {
        "image/encoded": "bytes",
        "image/format": "bytes",
        "image/filename": "bytes",
        "image/source_id": "bytes",
        "image/width": "int64",
        "image/height": "int64",
        "image/object/bbox/xmin": "float",
        "image/object/bbox/ymin": "float",
        "image/object/bbox/xmax": "float",
        "image/object/bbox/ymax": "float",
        "image/object/class/label": "int64",
        "image/object/class/text": "bytes",
    }
)
_INF = float("inf")
#: what a record needs when there is a label map; class/text and the format are read only when needed
_CORE_KEYS = FeatureKeys(
    {k: v for k, v in OD_API_KEYS.items() if k not in ("image/format", "image/object/class/text")}
)
_TEXT_KEYS = FeatureKeys({"image/object/class/text": "bytes"})
_FORMAT_KEYS = FeatureKeys({"image/format": "bytes"})
_BBOX_KEYS = tuple(f"image/object/bbox/{c}" for c in ("xmin", "ymin", "xmax", "ymax"))
_FORMATS = {"jpeg": "jpg", "jpg": "jpg", "png": "png", "bmp": "bmp", "gif": "gif", "webp": "webp"}


def is_tfrecord(path: Path) -> bool:
    return path.is_file() and _SHARD.match(path.name) is not None


def parse_label_map(text: str) -> dict[int, str]:
    """``item { id: 1 name: 'cat' }`` blocks (any order, either quotes) to {id: name}."""
    out: dict[int, str] = {}
    for block in _ITEM.findall(text):
        m_id = re.search(r"\bid\s*:\s*(-?\d+)", block)
        m_name = re.search(r"\bname\s*:\s*(['\"])(.*?)\1", block)
        m_display = re.search(r"\bdisplay_name\s*:\s*(['\"])(.*?)\1", block)
        if m_id and (m_name or m_display):
            out[int(m_id.group(1))] = (m_name or m_display).group(2)  # type: ignore[union-attr]
    return out


def _text(v: Any) -> str:
    return v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v or "")


def _split_of(f: Path, root: Path) -> str | None:
    """The split a shard belongs to: its name (``train.tfrecord-00000-of-00004``) or its folder."""
    m = _SHARD.match(f.name)
    split = m.group("split") if m else None
    if split in (None, "", "default") or (
        split not in ("train", "val", "valid", "test") and f.parent != root
    ):
        split = f.parent.name if f.parent != root else split
    return {"valid": "val", "default": None}.get(split or "", split) or None


def _damaged(where_file: str, exc: RecordError, *, after: bool) -> dict[str, Any]:
    rest = " (records after it in this file cannot be read)" if after else ""
    return {
        "file_name": f"{where_file}#{exc.index}",
        "_problem": problem("damaged record", f"{where_file}: {exc}{rest}"),
    }


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
        ex = parse_example(data, _CORE_KEYS if label_map else OD_API_KEYS)
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
        v = parse_example(data, _FORMAT_KEYS).get("image/format")
        fmt = _text(v[0]).lower() if v else ""
        filename = f"{source_id or image_id}.{_FORMATS.get(fmt, 'jpg')}"
    record["file_name"] = f"{split}/{filename}" if split else filename
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
    else:
        record["_problem"] = problem("no embedded image", f"{where}: image/encoded is empty ({filename})")
    w, h = get("image/width"), get("image/height")
    if w and h:
        w, h = w[0], h[0]
        if type(w) is int and type(h) is int and w > 0 and h > 0:
            record["width"], record["height"] = w, h
    if split:
        record["split"] = split
    if source_id:
        record["tf_source_id"] = source_id
    cols = [get(k, ()) for k in _BBOX_KEYS]
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
    for k in range(n):
        ann: dict[str, Any] = {"id": next_id + k, "image_id": image_id}
        anns.append(ann)
        if not same_length:
            ann["_where"] = at = f"{where} object {k}"
            ann["_problem"] = problem("bad bbox", f"{at}: bbox lists have different lengths")
            continue
        label = labels[k] if k < n_labels else None
        if type(label) is int and label in label_map:
            ann["category_id"] = label
        else:
            text = _text(texts[k]) if k < len(texts) else ""
            if not label_map and text:
                ann["_text"], ann["_label"] = text, label
            else:
                ann["_where"] = at = f"{where} object {k}"
                ann["_problem"] = problem(
                    "unknown category",
                    f"{at}: class/label {label!r} ({text!r}) is not in the label map",
                )
                continue
        x0, y0, x1, y1 = xs0[k], ys0[k], xs1[k], ys1[k]
        if size is None or not type(x0) is type(y0) is type(x1) is type(y1) is float:  # the import reports it
            ann["_where"] = f"{where} object {k}"
            ann["_bbox_norm"] = ["xyxy", [x0, y0, x1, y1]]
            continue
        iw, ih = size
        bw, bh = (x1 - x0) * iw, (y1 - y0) * ih
        ann["bbox"] = [x0 * iw, y0 * ih, bw, bh]
        ann["area"] = area = bw * bh
        ann["iscrowd"] = 0
        ann["segmentation"] = []
        if not (bw > 0 and bh > 0 and area < _INF):  # empty or not finite: the import reports it
            ann["_where"] = f"{where} object {k}"


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

    @property
    def n(self) -> int:
        return len(self.tasks)

    @property
    def categories(self) -> list[dict[str, Any]] | None:
        """The label map's; without one, categories come from ``class/text`` as records are read."""
        return [{"id": k, "name": v} for k, v in sorted(self.label_map.items())] if self.label_map else None

    @property
    def direct(self) -> bool:
        return not self.damaged

    def parse_range(self, start: int, stop: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        imgs: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        tasks, sources, label_map = self.tasks, self.sources, self.label_map
        with ChunkReaders() as readers:
            for k in range(start, stop):
                fi, index, offset, length = tasks[k]
                file_path, where_file, split = sources[fi]
                try:
                    data = readers[file_path].record(offset, length, index)
                except RecordError as exc:
                    imgs.append({"id": k + 1, **_damaged(where_file, exc, after=False)})
                    continue
                _record(data, offset, k + 1, where_file, index, file_path, split, imgs, anns, label_map)
        return imgs, anns

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
            images_root=self.images_root,
            images=imgs,
            annotations=anns,
            categories=[{"id": k, "name": v} for k, v in sorted(cats.items())],
            private_keys=True,
        )


class TfrecordFormat:
    name: ClassVar[str] = "tfrecord"
    description: ClassVar[str] = "TFRecord, TF Object Detection API schema + label_map.pbtxt (sharded export)"
    can_import: ClassVar[bool] = True
    can_export: ClassVar[bool] = True

    def detect(self, path: Path) -> bool:
        if path.is_file():
            return is_tfrecord(path)
        return path.is_dir() and any(is_tfrecord(p) for p in list(path.iterdir()) + list(path.glob("*/*")))

    def read(self, path: Path, *, images: Path | None = None, **options: Any) -> ImportBatch:
        scan = self.scan(path, **options)
        return scan.batch(map_ranges(scan.parse_range, scan.n))

    def scan(self, path: Path, **options: Any) -> TfrecordScan:
        """Every record's place, from the headers alone (see :class:`RecordScan`)."""
        if options:
            raise UsageError(f"tfrecord import: unknown options {sorted(options)}")
        root = path if path.is_dir() else path.parent
        files = [path] if path.is_file() else sorted(p for p in root.rglob("*") if is_tfrecord(p))
        label_map: dict[int, str] = {}
        for lm in sorted({f.parent / "label_map.pbtxt" for f in files} | {root / "label_map.pbtxt"}):
            if lm.is_file():
                label_map.update(parse_label_map(read_text(lm, what="label map")))
        scan = TfrecordScan(str(path.resolve()), root, label_map)
        for f in files:
            where_file = rel(f, root) if f != path else f.name
            scan.sources.append((str(f), where_file, _split_of(f, root)))
            fd = os.open(f, os.O_RDONLY)
            try:
                for index, (offset, length) in enumerate(record_spans(fd)):
                    scan.tasks.append((len(scan.sources) - 1, index, offset, length))
            except RecordError as exc:
                scan.damaged.append(_damaged(where_file, exc, after=True))
            finally:
                os.close(fd)
        return scan

    # -- export ----------------------------------------------------------------------------
    def export(
        self,
        store: Store,
        out: Path,
        *,
        image_ids: list[int],
        shards: int | str = 1,
        link: bool = False,
        **options: Any,
    ) -> ExportResult:
        if options:
            raise UsageError(f"tfrecord export: unknown options {sorted(options)} (known: shards)")
        try:
            n_shards = int(shards)
        except ValueError:
            raise UsageError(f"tfrecord export: shards must be a whole number, not {shards!r}") from None
        if n_shards < 1:
            raise UsageError(f"tfrecord export: shards must be at least 1, not {n_shards}")
        prepare_out_dir(out)
        cats = sorted(store.data["categories"], key=lambda c: c["id"])
        tf_id = {c["id"]: i + 1 for i, c in enumerate(cats)}
        names = {c["id"]: c["name"].encode("utf-8") for c in cats}
        (out / "label_map.pbtxt").write_text(
            "".join(f"item {{\n  id: {tf_id[c['id']]}\n  name: {_quote(c['name'])}\n}}\n" for c in cats),
            encoding="utf-8",
        )
        wanted = set(image_ids)
        by_split: dict[str, list[dict[str, Any]]] = {}
        for img in store.images:
            if img["id"] in wanted:
                by_split.setdefault(img.get("split") or "default", []).append(img)
        files = [out / "label_map.pbtxt"]
        writer = _ExampleWriter(tf_id, names)
        n_boxes = dropped = n_images = 0
        for split, imgs in sorted(by_split.items()):
            k = min(n_shards, len(imgs))
            paths = [
                out / (f"{split}.tfrecord" if k == 1 else f"{split}.tfrecord-{i:05d}-of-{k:05d}")
                for i in range(k)
            ]
            handles = [open(p, "wb") for p in paths]  # noqa: SIM115 - closed below
            try:
                prefix = os.path.join(str(store.images_dir), "")  # file names are relative POSIX paths
                anns_of = store.index.anns_by_image.get
                example = writer.example
                for i, img in enumerate(imgs):
                    data = _read_file(prefix + img["file_name"])
                    encoded, kept, lost = example(img, data, anns_of(img["id"], ()))
                    write_record(handles[i % k], encoded)
                    n_boxes += kept
                    dropped += lost
                    n_images += 1
            finally:
                for h in handles:
                    h.close()
            files.extend(paths)
        return ExportResult(
            out=out,
            images=n_images,
            annotations=n_boxes,
            files=files,
            dropped={"degenerate boxes": dropped} if dropped else {},
            notes=["label map ids 1..K in store category-id order (label_map.pbtxt)"],
        )


class _ExampleWriter:
    """Serializes TF OD API Examples for one export, byte for byte what the protobuf runtime writes
    with ``deterministic=True`` (keys sorted), from prefixes computed once per export (filling a protobuf
    message costs more than the image's I/O)."""

    def __init__(self, tf_id: dict[int, int], names: dict[int, bytes]) -> None:
        k = entry_key
        self.encoded, self.filename, self.format = k("image/encoded"), k("image/filename"), k("image/format")
        self.height, self.sha256 = k("image/height"), k("image/key/sha256")
        self.label, self.text = k("image/object/class/label"), k("image/object/class/text")
        self.source_id, self.width = k("image/source_id"), k("image/width")
        self.bbox = [k(f"image/object/bbox/{c}") for c in ("xmax", "xmin", "ymax", "ymin")]  # key order
        self.label_of = {cid: varint(tf_id[cid]) for cid in tf_id}
        self.text_of = {cid: b"\n" + varint(len(name)) + name for cid, name in names.items()}
        self._boxes: dict[int, tuple[struct.Struct, list[bytes]]] = {}
        self._cached: dict[tuple[bytes, Any], bytes] = {}
        self._heads: dict[tuple[bytes, int], bytes] = {}
        self._classes: dict[tuple[int, ...], bytes] = {}

    def _head(self, key: bytes, n: int) -> bytes:
        """``one_bytes_head``, remembered (up to 65,536 of them): names, ids, hashes and often image
        sizes repeat their lengths."""
        head = self._heads.get((key, n))
        if head is None:
            head = one_bytes_head(key, n)
            if len(self._heads) < 65536:
                self._heads[(key, n)] = head
        return head

    def _class_entries(self, cids: list[int]) -> bytes:
        """The class/label and class/text entries of boxes of these categories, remembered for
        the few short combinations most images have."""
        key = tuple(cids)
        entries = self._classes.get(key)
        if entries is None:
            texts = [self.text_of[c] for c in cids]
            entries = packed_entry(self.label, INT64_LIST, b"".join([self.label_of[c] for c in cids]))
            content = b"".join(texts)
            entries += entry_head(self.text, BYTES_LIST, len(content)) + content
            if len(cids) <= 8 and len(self._classes) < 4096:
                self._classes[key] = entries
        return entries

    def _const(self, key: bytes, kind: bytes, value: Any) -> bytes:
        """The whole entry of a one-value feature that repeats across images (sizes, format)."""
        entry = self._cached.get((key, value))
        if entry is None:
            if kind is INT64_LIST:
                entry = packed_entry(key, kind, varint(value))
            else:
                entry = bytes_entry(key, [value])
            self._cached[(key, value)] = entry
        return entry

    def _boxes_of(self, n: int) -> tuple[struct.Struct, list[bytes]]:
        """For ``n`` boxes: a Struct that packs the four bbox entries in one call (their heads as
        ``s`` fields, then the values as float32), and those heads."""
        got = self._boxes.get(n)
        if got is None:
            content = b"\n" + varint(4 * n) if n else b""
            heads = [entry_head(key, FLOAT_LIST, len(content) + 4 * n) + content for key in self.bbox]
            got = self._boxes[n] = struct.Struct("<" + "".join(f"{len(h)}s{n}f" for h in heads)), heads
        return got

    @staticmethod
    def _boxes_bytes(img: dict[str, Any], st: struct.Struct, values: tuple[Any, ...]) -> bytes:
        try:
            return st.pack(*values)
        except OverflowError:  # a float32 cannot hold it: the store's boxes are broken
            raise DataError(
                f"image {img['id']} ({img['file_name']}): a box lies beyond what float32 coordinates "
                "can hold; nothing can be exported",
                hint="run `dataforge validate` on the store",
            ) from None

    def example(
        self, img: dict[str, Any], data: bytes, anns: list[dict[str, Any]] | tuple[()]
    ) -> tuple[bytes, int, int]:
        """(serialized Example, boxes written, degenerate boxes left out) for one image."""
        w, h = img["width"], img["height"]
        xmin: list[float] = []
        ymin: list[float] = []
        xmax: list[float] = []
        ymax: list[float] = []
        cids: list[int] = []
        for a in anns:
            x, y, bw, bh = a["bbox"]
            if bw <= 0 or bh <= 0:
                continue
            xmin.append(x / w)
            ymin.append(y / h)
            xmax.append((x + bw) / w)
            ymax.append((y + bh) / h)
            cids.append(a["category_id"])
        n = len(cids)
        st, (hx, hn, hy, hm) = self._boxes_of(n)
        file_name = img["file_name"]
        name = file_name.encode("utf-8")
        ext = os.path.splitext(file_name)[1].lower().lstrip(".")
        sha = (img.get("sha256") or hashlib.sha256(data).hexdigest()).encode()
        sid = str(img["id"]).encode()
        head = self._head
        parts = [
            head(self.encoded, len(data)),
            data,
            head(self.filename, len(name)),
            name,
            self._const(self.format, BYTES_LIST, ("jpeg" if ext in ("jpg", "jpeg") else ext).encode()),
            self._const(self.height, INT64_LIST, h),
            head(self.sha256, len(sha)),
            sha,
            self._boxes_bytes(img, st, (hx, *xmax, hn, *xmin, hy, *ymax, hm, *ymin)),
            self._class_entries(cids),
            head(self.source_id, len(sid)),
            sid,
            self._const(self.width, INT64_LIST, w),
        ]
        return example_bytes(parts), n, len(anns) - n


def _read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)  # one call for the usual case; +1 notices a file that grew
        while len(data) > size and (more := os.read(fd, 1 << 20)):
            data += more
        return data
    finally:
        os.close(fd)


def _quote(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"
