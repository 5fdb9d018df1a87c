"""Dataset formats: each is a plugin in the ``dataforge.formats`` entry-point group."""

from __future__ import annotations

from pathlib import Path

from dataforge import plugins
from dataforge.errors import PluginError, UsageError
from dataforge.formats.base import DatasetFormat, ImportBatch


def get_format(name: str) -> DatasetFormat:
    obj = plugins.load(plugins.FORMATS, name)
    fmt = obj() if isinstance(obj, type) else obj
    if not isinstance(fmt, DatasetFormat):
        raise PluginError(f"format plugin {name!r} ({type(fmt).__name__}) does not implement DatasetFormat")
    return fmt


def list_formats() -> list[DatasetFormat]:
    return [get_format(name) for name in plugins.available(plugins.FORMATS)]


def detect_format(path: Path) -> DatasetFormat:
    """The one format whose ``detect`` accepts ``path``; refuses when none or several do.

    Generic formats (``generic = True``: class folders, which any folder of folders of images
    resembles) are considered only when no specific format fits.
    """
    fitting = [f for f in list_formats() if f.can_import and f.detect(path)]
    hits = [f for f in fitting if not getattr(f, "generic", False)] or fitting
    if len(hits) == 1:
        return hits[0]
    if not hits:
        from dataforge.formats.folders import annotation_files

        names = ", ".join(f.name for f in list_formats() if f.can_import)
        seen = annotation_files(path) if path.is_dir() else []
        saw = (
            f" (it holds {len(seen)} label files, e.g. "
            + ", ".join(str(p.relative_to(path)) for p in seen[:4])
            + ", in no layout dataforge knows)"
            if seen
            else ""
        )
        raise UsageError(
            f"{path}: could not detect the dataset format{saw}",
            hint=f"pass --format (one of: {names}), or the annotation file itself",
        )
    raise UsageError(
        f"{path}: several formats fit ({', '.join(f.name for f in hits)})", hint="pass --format to choose one"
    )


__all__ = ["DatasetFormat", "ImportBatch", "detect_format", "get_format", "list_formats"]
