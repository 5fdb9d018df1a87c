"""Helpers shared by the format plugins."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataforge.store import Store

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


#: written into an export folder while an export runs (see ``dataforge.api.export_dataset``)
EXPORT_INCOMPLETE = ".dataforge-export-incomplete"


def prepare_out_dir(out: Path) -> None:
    """Create an export folder; refuse one that has anything in it (exports never overwrite)."""
    from dataforge.errors import UsageError

    if out.exists() and (not out.is_dir() or any(p.name != EXPORT_INCOMPLETE for p in out.iterdir())):
        raise UsageError(
            f"{out}: the output directory exists and is not empty",
            hint="choose a new --out directory (dataforge never overwrites an export)",
        )
    out.mkdir(parents=True, exist_ok=True)


def copy_store_images(store: Store, out: Path, pairs: list[tuple[str, str]], *, link: bool) -> None:
    """Copy store images (``file_name``) to ``out/<relative path>``, or hard-link them with ``link``
    (falling back to a copy across filesystems)."""
    import shutil

    made: set[Path] = set()
    for name, dst_rel in pairs:
        dst = out / dst_rel
        if dst.parent not in made:
            dst.parent.mkdir(parents=True, exist_ok=True)
            made.add(dst.parent)
        src = store.images_dir / name
        if link:
            try:
                os.link(src, dst)
                continue
            except OSError:
                pass
        shutil.copyfile(src, dst)


def flat_name(file_name: str, used: set[str]) -> str:
    """Flatten subfolders (``a/b.jpg`` -> ``a__b.jpg``) for formats keyed by file name, unique in ``used``."""
    flat = file_name.replace("/", "__")
    stem, ext = os.path.splitext(flat)
    k = 2
    while flat in used:
        flat = f"{stem}~{k}{ext}"
        k += 1
    used.add(flat)
    return flat
