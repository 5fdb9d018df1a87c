"""The ``tf.train.Example`` protobuf, parsed and written without TensorFlow::

Example   { Features features = 1; }
Features  { map<string, Feature> feature = 1; }        # entries: {string key = 1; Feature value = 2}
Feature   { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
BytesList { repeated bytes value = 1; }
FloatList { repeated float value = 1 [packed]; }        # parsers must accept packed and unpacked
Int64List { repeated int64 value = 1 [packed]; }
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from functools import lru_cache
from operator import attrgetter
from typing import Any

Value = list[bytes] | list[float] | list[int]


# -- protobuf wire format ----------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) for each field of a message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = _varint(buf, pos)
            yield num, wt, v
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise ValueError("truncated length-delimited field")
            yield num, wt, buf[pos : pos + n]
            pos += n
        elif wt == 5:
            if pos + 4 > end:
                raise ValueError("truncated fixed32")
            yield num, wt, buf[pos : pos + 4]
            pos += 4
        elif wt == 1:
            if pos + 8 > end:
                raise ValueError("truncated fixed64")
            yield num, wt, buf[pos : pos + 8]
            pos += 8
        else:
            raise ValueError(f"unsupported wire type {wt}")


def _feature(buf: bytes) -> Value:
    for num, wt, v in _fields(buf):
        if wt != 2 or not isinstance(v, bytes):
            continue
        if num == 1:
            return [x for n, w, x in _fields(v) if n == 1 and w == 2 and isinstance(x, bytes)]
        if num == 2:
            floats: list[float] = []
            for n, w, x in _fields(v):
                if n == 1 and w == 2 and isinstance(x, bytes):  # packed
                    floats.extend(struct.unpack(f"<{len(x) // 4}f", x[: len(x) // 4 * 4]))
                elif n == 1 and w == 5 and isinstance(x, bytes):
                    floats.append(struct.unpack("<f", x)[0])
            return floats
        if num == 3:
            ints: list[int] = []
            for n, w, x in _fields(v):
                if n == 1 and w == 2 and isinstance(x, bytes):  # packed
                    p = 0
                    while p < len(x):
                        val, p = _varint(x, p)
                        ints.append(val - (1 << 64) if val >= 1 << 63 else val)
                elif n == 1 and w == 0 and isinstance(x, int):
                    ints.append(x - (1 << 64) if x >= 1 << 63 else x)
            return ints
    return []


#: the ``Feature`` field that holds each kind of value list
KINDS = {"bytes": "bytes_list", "float": "float_list", "int64": "int64_list"}


class FeatureKeys(dict[str, str]):
    """{feature name: "bytes" | "float" | "int64"} for :func:`parse_example`, with its field
    getters made once (making them on every call costs more than they save)."""

    def __init__(self, kinds: dict[str, str]) -> None:
        super().__init__(kinds)
        self.getters = [(key, attrgetter(f"{KINDS[kind]}.value")) for key, kind in kinds.items()]


def parse_example(data: bytes, keys: dict[str, str] | None = None) -> dict[str, Sequence[Any]]:
    """A serialized ``tf.train.Example`` as {feature name: values}. Raises ValueError.

    ``keys``: {feature name: "bytes" | "float" | "int64"} (best a :class:`FeatureKeys`): read only
    these features, looking first for the kind given (about 2x faster than asking each feature for
    its kind; a feature of another kind still reads right). Values are then sequences rather than
    lists. Uses the protobuf runtime when it is installed (C speed), else the pure-Python parser.
    """
    example = _pb_example()
    if example is None:
        parsed: dict[str, Sequence[Any]] = dict(parse_example_py(data))
        return parsed if keys is None else {k: parsed[k] for k in keys if k in parsed}
    try:
        msg = example.FromString(data)
    except _DECODE_ERRORS as exc:
        raise ValueError(str(exc)) from None
    out: dict[str, Sequence[Any]] = {}
    fmap = msg.features.feature
    if keys is None:
        for key in fmap:
            feat = fmap[key]
            kind = feat.WhichOneof("kind")
            out[key] = list(getattr(feat, kind).value) if kind else []
        return out
    get = fmap.get
    for key, values_of in keys.getters if isinstance(keys, FeatureKeys) else FeatureKeys(keys).getters:
        feat = get(key)
        if feat is not None:
            values = values_of(feat)
            if not values:  # empty, or another kind than expected
                actual = feat.WhichOneof("kind")
                values = getattr(feat, actual).value if actual else values
            out[key] = values
    return out


def parse_example_py(data: bytes) -> dict[str, Value]:
    """Pure-Python ``tf.train.Example`` parser (the reference the protobuf path is tested against)."""
    out: dict[str, Value] = {}
    for num, wt, features in _fields(data):
        if num != 1 or wt != 2 or not isinstance(features, bytes):
            continue
        for n, w, entry in _fields(features):
            if n != 1 or w != 2 or not isinstance(entry, bytes):
                continue
            key: str | None = None
            value: Value = []
            for en, ew, ev in _fields(entry):
                if en == 1 and ew == 2 and isinstance(ev, bytes):
                    key = ev.decode("utf-8")
                elif en == 2 and ew == 2 and isinstance(ev, bytes):
                    value = _feature(ev)
            if key is not None:
                out[key] = value
    return out


def _enc_varint_slow(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# keys, tags and most lengths: one lookup instead of a loop
_SMALL_VARINTS = tuple(
    [bytes((n,)) for n in range(128)] + [bytes((n & 0x7F | 0x80, n >> 7)) for n in range(128, 1 << 14)]
)


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint (negative numbers as their 64-bit two's complement, like int64)."""
    return _SMALL_VARINTS[n] if 0 <= n < 16384 else _enc_varint_slow(n)


# -- writing an Example piece by piece ----------------------------------------------------------
# An Example is ``0x0A varint(n) <n bytes of entries>``; each map entry is
# ``0x0A varint(len) 0x0A varint(len(key)) key 0x12 varint(len(Feature)) Feature`` and a Feature is
# its kind's tag, a length and the list message. Writers that know their keys build the entries
# from cached prefixes, which is 3x faster than filling a protobuf message.
BYTES_LIST, FLOAT_LIST, INT64_LIST = b"\n", b"\x12", b"\x1a"  # the Feature field of each kind


@lru_cache(maxsize=512)
def entry_key(key: str) -> bytes:
    """The part of a map entry before its Feature's length: the key field and the value's tag."""
    name = key.encode("utf-8")
    return b"\n" + varint(len(name)) + name + b"\x12"


def entry_head(key: bytes, kind: bytes, content_len: int) -> bytes:
    """A whole map entry up to its list message's content (``content_len`` bytes, which follow).

    ``key`` comes from :func:`entry_key`; ``kind`` is ``BYTES_LIST``, ``FLOAT_LIST`` or ``INT64_LIST``.
    """
    cl = varint(content_len)
    feature_len = 1 + len(cl) + content_len
    fl = varint(feature_len)
    return b"\n" + varint(len(key) + len(fl) + feature_len) + key + fl + kind + cl


def one_bytes_head(key: bytes, value_len: int) -> bytes:
    """A map entry holding one bytes value, up to that value (``value_len`` bytes, which follow)."""
    vl = varint(value_len)
    return entry_head(key, BYTES_LIST, 1 + len(vl) + value_len) + b"\n" + vl


def bytes_entry(key: bytes, values: list[bytes]) -> bytes:
    content = b"".join([b"\n" + varint(len(v)) + v for v in values])
    return entry_head(key, BYTES_LIST, len(content)) + content


def packed_entry(key: bytes, kind: bytes, packed: bytes) -> bytes:
    """A float or int64 entry from its packed values (``struct.pack("<nf")`` or joined varints)."""
    content = b"\n" + varint(len(packed)) + packed if packed else b""
    return entry_head(key, kind, len(content)) + content


def example_bytes(entries: list[bytes]) -> bytes:
    """An Example from its map entries, which must be in key order for deterministic output."""
    return b"\n" + varint(sum(map(len, entries))) + b"".join(entries)


_DECODE_ERRORS: tuple[type[Exception], ...] = ()  # protobuf's DecodeError, once it is imported


@lru_cache(maxsize=1)
def _pb_example() -> Any:
    """``tf.train.Example`` for the protobuf runtime, declared from its schema (no TensorFlow, no codegen).

    None when protobuf is not installed.
    """
    global _DECODE_ERRORS
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
        from google.protobuf.message import DecodeError
    except ImportError:  # pragma: no cover - protobuf comes with the toolkit's dependencies
        return None
    _DECODE_ERRORS = (DecodeError,)
    fp = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(
        name="dataforge_tf_example.proto", package="dataforge.tf", syntax="proto3"
    )

    def message(name: str, fields: list[tuple[int, str, int, int, str | None]]) -> Any:
        m = fd.message_type.add(name=name)
        for num, fname, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
        return m

    one, many = fp.LABEL_OPTIONAL, fp.LABEL_REPEATED
    message("BytesList", [(1, "value", fp.TYPE_BYTES, many, None)])
    message("FloatList", [(1, "value", fp.TYPE_FLOAT, many, None)])
    message("Int64List", [(1, "value", fp.TYPE_INT64, many, None)])
    feature = message(
        "Feature",
        [
            (1, "bytes_list", fp.TYPE_MESSAGE, one, ".dataforge.tf.BytesList"),
            (2, "float_list", fp.TYPE_MESSAGE, one, ".dataforge.tf.FloatList"),
            (3, "int64_list", fp.TYPE_MESSAGE, one, ".dataforge.tf.Int64List"),
        ],
    )
    feature.oneof_decl.add(name="kind")
    for f in feature.field:
        f.oneof_index = 0
    features = message(
        "Features", [(1, "feature", fp.TYPE_MESSAGE, many, ".dataforge.tf.Features.FeatureEntry")]
    )
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=fp.TYPE_STRING, label=one)
    entry.field.add(
        name="value", number=2, type=fp.TYPE_MESSAGE, label=one, type_name=".dataforge.tf.Feature"
    )
    message("Example", [(1, "features", fp.TYPE_MESSAGE, one, ".dataforge.tf.Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("dataforge.tf.Example"))


def encode_example(
    bytes_features: dict[str, list[bytes]],
    float_features: dict[str, list[float]],
    int_features: dict[str, list[int]],
) -> bytes:
    """Serialize a ``tf.train.Example`` (protobuf runtime when installed, else the Python encoder)."""
    example = _pb_example()
    if example is None:
        return encode_example_py(bytes_features, float_features, int_features)
    msg = example()
    fmap = msg.features.feature
    for k, bv in bytes_features.items():
        fmap[k].bytes_list.value.extend(bv)
    for k, fv in float_features.items():
        fmap[k].float_list.value.extend(fv)
    for k, iv in int_features.items():
        fmap[k].int64_list.value.extend(iv)
    return bytes(msg.SerializeToString(deterministic=True))


def encode_example_py(
    bytes_features: dict[str, list[bytes]],
    float_features: dict[str, list[float]],
    int_features: dict[str, list[int]],
) -> bytes:
    """Pure-Python ``tf.train.Example`` encoder, giving the same bytes as the protobuf runtime's
    deterministic serialization (keys sorted, numbers packed)."""
    entries = {k: bytes_entry(entry_key(k), v) for k, v in bytes_features.items()}
    for k, fv in float_features.items():
        entries[k] = packed_entry(entry_key(k), FLOAT_LIST, struct.pack(f"<{len(fv)}f", *fv))
    for k, iv in int_features.items():
        entries[k] = packed_entry(entry_key(k), INT64_LIST, b"".join(varint(v) for v in iv))
    return example_bytes([entries[k] for k in sorted(entries)])
