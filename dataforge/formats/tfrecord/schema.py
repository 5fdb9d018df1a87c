"""The TF Object Detection API's names: record features, shard file names, ``label_map.pbtxt``."""

from __future__ import annotations

import re
from pathlib import Path

from dataforge.formats.tfrecord.example import FeatureKeys

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
#: what a record needs when there is a label map; class/text and the format are read only when needed
CORE_KEYS = FeatureKeys(
    {k: v for k, v in OD_API_KEYS.items() if k not in ("image/format", "image/object/class/text")}
)
FORMAT_KEYS = FeatureKeys({"image/format": "bytes"})
BBOX_KEYS = tuple(f"image/object/bbox/{c}" for c in ("xmin", "ymin", "xmax", "ymax"))
#: ``image/format`` values to file extensions
IMAGE_FORMATS = {"jpeg": "jpg", "jpg": "jpg", "png": "png", "bmp": "bmp", "gif": "gif", "webp": "webp"}

_SHARD = re.compile(r"^(?P<split>.+?)\.(tfrecords?|record)(-\d+-of-\d+)?$")
_ITEM = re.compile(r"item\s*\{(.*?)\}", re.S)


def is_tfrecord(path: Path) -> bool:
    """A file named like a TFRecord shard: ``train.tfrecord``, ``val.record-00001-of-00004``."""
    return path.is_file() and _SHARD.match(path.name) is not None


def split_of(f: Path, root: Path) -> str | None:
    """The split a shard belongs to: its name (``train.tfrecord-00000-of-00004``) or its folder."""
    m = _SHARD.match(f.name)
    split = m.group("split") if m else None
    if split in (None, "", "default") or (
        split not in ("train", "val", "valid", "test") and f.parent != root
    ):
        split = f.parent.name if f.parent != root else split
    return {"valid": "val", "default": None}.get(split or "", split) or None


def shard_names(split: str, k: int) -> list[str]:
    """The file names of a split written as ``k`` shards."""
    return [f"{split}.tfrecord" if k == 1 else f"{split}.tfrecord-{i:05d}-of-{k:05d}" for i in range(k)]


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


def label_map_text(names: dict[int, str]) -> str:
    """``label_map.pbtxt`` for {id: name}, in id order; :func:`parse_label_map` reads it back."""
    return "".join(f"item {{\n  id: {i}\n  name: {_quote(name)}\n}}\n" for i, name in sorted(names.items()))


def _quote(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"
