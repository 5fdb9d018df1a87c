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


class FileWindow:
    """Reads pieces of an open file at (mostly) increasing offsets through one ``pread`` per
    ``size`` bytes instead of one per piece: reading the images or records of a container file in
    file order costs a slice each rather than a syscall each."""

    def __init__(self, fd: int, size: int = 4 << 20) -> None:
        self.fd = fd
        self.size = size
        self._buf = b""
        self._start = 0

    def view(self, offset: int, length: int) -> tuple[bytes, int]:
        """(buffer, position of ``offset`` in it) with ``length`` bytes there unless the file ends first."""
        rel = offset - self._start
        if rel < 0 or rel + length > len(self._buf):
            self._buf = os.pread(self.fd, max(self.size, length), offset)
            self._start, rel = offset, 0
        return self._buf, rel

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (fewer at the end of the file)."""
        buf, rel = self.view(offset, length)
        return buf[rel : rel + length]


class FileWindows:
    """A :class:`FileWindow` for each file, by path, each opened on first use; closed together
    when the ``with`` block ends."""

    def __init__(self, size: int = 4 << 20) -> None:
        self.size = size
        self._windows: dict[str, FileWindow] = {}

    def __getitem__(self, path: str) -> FileWindow:
        window = self._windows.get(path)
        if window is None:
            window = self._windows[path] = FileWindow(os.open(path, os.O_RDONLY), self.size)
        return window

    def __enter__(self) -> FileWindows:
        return self

    def __exit__(self, *exc: object) -> None:
        for window in self._windows.values():
            os.close(window.fd)
        self._windows.clear()
