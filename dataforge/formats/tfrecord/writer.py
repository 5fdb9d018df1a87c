"""Writing TFRecord shards in the TF OD API schema, byte for byte what TensorFlow writes."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataforge.boxes import xywh_to_xyxy_norm_floats
from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ExportResult
from dataforge.formats.common import prepare_out_dir
from dataforge.formats.tfrecord.example import (
    BYTES_LIST,
    FLOAT_LIST,
    INT64_LIST,
    bytes_entry,
    entry_head,
    entry_key,
    example_bytes,
    one_bytes_head,
    packed_entry,
    varint,
)
from dataforge.formats.tfrecord.framing import write_record
from dataforge.formats.tfrecord.schema import label_map_text, shard_names

if TYPE_CHECKING:
    from dataforge.store import Store


def export(
    store: Store,
    out: Path,
    *,
    image_ids: list[int],
    shards: int | str = 1,
    link: bool = False,
    **options: Any,
) -> ExportResult:
    """Write ``image_ids`` of ``store`` as ``<split>.tfrecord`` shards and ``label_map.pbtxt``."""
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
        label_map_text({tf_id[c["id"]]: c["name"] for c in cats}), encoding="utf-8"
    )
    wanted = set(image_ids)
    by_split: dict[str, list[dict[str, Any]]] = {}
    for img in store.images:
        if img["id"] in wanted:
            by_split.setdefault(img.get("split") or "default", []).append(img)
    files = [out / "label_map.pbtxt"]
    writer = ExampleWriter(tf_id, names)
    n_boxes = dropped = n_images = 0
    for split, imgs in sorted(by_split.items()):
        k = min(n_shards, len(imgs))
        paths = [out / name for name in shard_names(split, k)]
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
        category_ids=dict(tf_id),
    )


class ExampleWriter:
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
            if a["bbox"][2] <= 0 or a["bbox"][3] <= 0:
                continue
            x0, y0, x1, y1 = xywh_to_xyxy_norm_floats(a["bbox"], (w, h))
            xmin.append(x0)
            ymin.append(y0)
            xmax.append(x1)
            ymax.append(y1)
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
