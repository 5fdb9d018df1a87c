"""Helpers shared by the format plugins."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def is_image(path: str | Path) -> bool:
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively), sorted by their relative path."""
    out: list[Path] = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        out.extend(Path(dirpath) / f for f in sorted(files) if is_image(f) and not f.startswith("."))
    return out


def rel(path: Path, root: Path) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def problem(reason: str, message: str) -> list[str]:
    """The value of a record's ``_problem`` key (see ImportBatch)."""
    return [reason, message]


def stem_key(path: str) -> str:
    """A file's path without its extension: how label files find their images."""
    return os.path.splitext(path)[0]


def categories_from_names(names: list[str], first_id: int = 0) -> list[dict[str, Any]]:
    return [{"id": first_id + i, "name": n} for i, n in enumerate(names)]


def read_text(path: Path, *, what: str = "file") -> str:
    """A text file as UTF-8 (a BOM is dropped); a ``DataError`` naming the file if it cannot be read."""
    from dataforge.errors import DataError

    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: {what} is not UTF-8 text (byte {exc.start}: {exc.reason})", source=str(path)
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror})", source=str(path)) from None
