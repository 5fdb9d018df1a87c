"""Fast JSON in and out (orjson), with messages that say where a file is malformed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from dataforge.errors import DataError


def load_json(path: Path, *, what: str = "JSON file") -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found", source=str(path)) from None
    except IsADirectoryError:
        raise DataError(f"{path}: expected a {what}, found a directory", source=str(path)) from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        import json

        try:  # NaN and Infinity, as Python's json module writes them: read, for the checks to name
            return json.loads(raw)
        except ValueError:
            pass
        raise DataError(
            f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            source=str(path),
            hint="the file may be truncated or hand-edited; check it with `python -m json.tool`",
        ) from None


def dumps(obj: Any, *, indent: bool = False) -> bytes:
    opts = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    if indent:
        opts |= orjson.OPT_INDENT_2
    return orjson.dumps(obj, option=opts)


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_json(path: Path, obj: Any, *, indent: bool = True) -> None:
    atomic_write_bytes(path, dumps(obj, indent=indent) + b"\n")
