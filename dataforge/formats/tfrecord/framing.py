"""TFRecord framing: a file is a sequence of records, each

    uint64 length (little endian) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

Reading checks both CRCs; a damaged record raises :class:`RecordError` with its position.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from crc32c import crc32c as _crc32c

from dataforge.formats.common import FileWindow


class RecordError(Exception):
    """A record that cannot be read: ``index`` is its 0-based position in the file."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def masked_crc(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(f: BinaryIO) -> Iterator[bytes]:
    """Yield each record's data, checking both CRCs. Raises ``RecordError`` on damage."""
    index = 0
    while True:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            raise RecordError(index, f"record {index}: truncated header ({len(header)} of 12 bytes)")
        length, length_crc = struct.unpack("<QI", header)
        if masked_crc(header[:8]) != length_crc:
            raise RecordError(index, f"record {index}: length CRC mismatch (corrupt file)")
        data = f.read(length)
        footer = f.read(4)
        if len(data) < length or len(footer) < 4:
            raise RecordError(index, f"record {index}: truncated (expected {length} bytes of data)")
        if masked_crc(data) != struct.unpack("<I", footer)[0]:
            raise RecordError(index, f"record {index}: data CRC mismatch (corrupt record)")
        yield data
        index += 1


_HEADER = struct.Struct("<QI")


def record_spans(fd: int) -> Iterator[tuple[int, int]]:
    """(offset, data length) of each record of the open file ``fd``, from its 12-byte header alone
    (the length CRC is checked). Raises ``RecordError`` at a damaged header."""
    index = pos = 0
    unpack_from = _HEADER.unpack_from
    buf, start = b"", 0  # file bytes from offset ``start``: one read per 1 MiB of small records
    while True:
        rel = pos - start
        if rel + 12 > len(buf):
            buf, start, rel = os.pread(fd, 1 << 20, pos), pos, 0
            if len(buf) < 12:
                if buf:
                    raise RecordError(index, f"record {index}: truncated header ({len(buf)} of 12 bytes)")
                return
        length, length_crc = unpack_from(buf, rel)
        if masked_crc(buf[rel : rel + 8]) != length_crc:
            raise RecordError(index, f"record {index}: length CRC mismatch (corrupt file)")
        yield pos, length
        pos += 12 + length + 4
        index += 1


_FOOTER = struct.Struct("<I")


def read_span(fd: int, offset: int, length: int, index: int = 0) -> bytes:
    """The data of the record that :func:`record_spans` found at ``offset``, its CRC checked (one
    ``pread`` of just this record: for random access; in file order, :func:`read_record` on a
    :class:`~dataforge.formats.common.FileWindow`)."""
    return read_record(FileWindow(fd, size=0), offset, length, index)


def read_record(window: FileWindow, offset: int, length: int, index: int = 0) -> bytes:
    """The data of the record at ``offset`` (its header's place) read through ``window``, its CRC checked."""
    buf, rel = window.view(offset + 12, length + 4)
    if rel + length + 4 > len(buf):
        raise RecordError(index, f"record {index}: truncated (expected {length} bytes of data)")
    data = buf[rel : rel + length]
    if _FOOTER.unpack_from(buf, rel + length)[0] != masked_crc(data):
        raise RecordError(index, f"record {index}: data CRC mismatch (corrupt record)")
    return data


def write_record(f: BinaryIO, data: bytes) -> None:
    header = struct.pack("<Q", len(data))
    f.write(header + struct.pack("<I", masked_crc(header)) + data + struct.pack("<I", masked_crc(data)))
