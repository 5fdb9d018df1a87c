"""The Python API behind every CLI command. The CLI parses arguments and calls one of these."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataforge.errors import DataforgeError, ImageError, UsageError
from dataforge.formats import detect_format, get_format
from dataforge.formats.base import EmbedsImages, ExportResult, OnError
from dataforge.formats.common import EXPORT_INCOMPLETE
from dataforge.ingest import ImportResult, ingest
from dataforge.ingest.direct import ingest_records
from dataforge.runtime import paused_gc
from dataforge.splits import normalize_ratios, random_split, stratified_split
from dataforge.store import Store
from dataforge.validate import ValidationReport, validate_store

PathLike = str | os.PathLike[str]


def import_dataset(
    source: PathLike,
    *,
    store: PathLike,
    format: str = "auto",
    images: PathLike | None = None,
    on_error: OnError = "fail",
    split: str | None = None,
    tags: Iterable[str] = (),
    link: bool = False,
    **options: Any,
) -> ImportResult:
    """Import a dataset into a store (created if missing). All-or-nothing unless ``on_error="skip"``."""
    src = Path(source)
    if not src.exists():
        raise UsageError(f"{src}: no such file or directory")
    fmt = detect_format(src) if format == "auto" else get_format(format)
    if not fmt.can_import:
        raise UsageError(f"format {fmt.name!r} cannot be imported")
    with paused_gc():  # a large import builds millions of acyclic dicts
        if isinstance(fmt, EmbedsImages):  # parsed, checked and written per process
            if images is not None:
                raise UsageError(
                    f"format {fmt.name!r} holds its images in its files: --images does not apply"
                )
            return ingest_records(
                Path(store), fmt.scan(src, **options), on_error=on_error, split=split, tags=tags
            )
        batch = fmt.read(src, images=Path(images) if images is not None else None, **options)
        return ingest(Path(store), batch, on_error=on_error, split=split, tags=tags, link=link)


@dataclass
class TagResult:
    matched: int
    changed: int


def tag_images(
    store: PathLike,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    where: str | None = None,
    ids: Sequence[int] | None = None,
) -> TagResult:
    """Add and/or remove tags on the images matched by ``where`` and/or ``ids`` (all if neither)."""
    if not add and not remove:
        raise UsageError("nothing to do: give --add TAG and/or --remove TAG")
    details: dict[str, Any] = {
        "add": list(add),
        "remove": list(remove),
        "where": where,
        "ids": list(ids or []),
    }
    with Store.edit(store, "tag", details=details) as s:
        matched = s.select(where)
        if ids is not None:
            wanted = set(ids)
            missing = wanted - set(s.index.image_by_id)
            if missing:
                raise UsageError(f"{store}: no images with ids {sorted(missing)[:10]}")
            matched = [img for img in matched if img["id"] in wanted]
        match_ids = [img["id"] for img in matched]
        changed = s.add_tags(match_ids, add) if add else 0
        changed += s.remove_tags(match_ids, remove) if remove else 0
        details.update(matched=len(match_ids), changed=changed)
    return TagResult(len(match_ids), changed)


def split_store(
    store: PathLike,
    *,
    ratios: dict[str, float],
    seed: int = 0,
    stratify: bool = False,
    where: str | None = None,
) -> dict[str, Any]:
    """Assign splits to the matched images (all by default). Returns counts and per-category shares."""
    ratios = normalize_ratios(ratios)
    details: dict[str, Any] = {"ratios": ratios, "seed": seed, "stratify": stratify, "where": where}
    with Store.edit(store, "split", details=details) as s:
        images = s.select(where)
        if stratify:
            labels = {img["id"]: s.index.labels_of(img["id"]) for img in images}
            assignment = stratified_split(labels, ratios, seed)
        else:
            assignment = random_split([img["id"] for img in images], ratios, seed)
        s.set_splits(dict(assignment))
        counts = Counter(assignment.values())
        names = s.index.category_names
        per_cat: dict[str, Counter[str]] = {}
        for a in s.annotations:
            sp = assignment.get(a["image_id"])
            if sp is not None:
                per_cat.setdefault(names[a["category_id"]], Counter())[sp] += 1
        details["counts"] = dict(counts)
    return {
        "images": {k: counts.get(k, 0) for k in ratios},
        "boxes_by_category": {c: {k: v.get(k, 0) for k in ratios} for c, v in sorted(per_cat.items())},
    }


def export_dataset(
    store: PathLike,
    *,
    format: str,
    out: PathLike,
    where: str | None = None,
    split: str | None = None,
    **options: Any,
) -> ExportResult:
    """Export the matched images of a store with a format plugin.

    An export writes into a new or empty folder and marks it incomplete until it ends. One that
    fails (a store image gone missing, a full disk) raises a ``DataforgeError`` and removes what it
    wrote; one that was killed leaves the mark, and the next export into that folder clears it
    first. Either way the same command can simply be run again.
    """
    fmt = get_format(format)
    if not fmt.can_export:
        raise UsageError(f"format {fmt.name!r} cannot be exported")
    out_dir = Path(out)
    marker = out_dir / EXPORT_INCOMPLETE
    if marker.is_file():  # an export into this folder was killed: all in it is that export's
        _remove_export(out_dir, keep_dir=True)
    existed = out_dir.exists()
    ours = not existed or (out_dir.is_dir() and not any(out_dir.iterdir()))  # nothing in it to keep
    with paused_gc():
        s = Store.open(store)
        ids = [img["id"] for img in s.select(where, split=split)]
        if ours:
            out_dir.mkdir(parents=True, exist_ok=True)
            marker.write_text(
                f"dataforge export --format {fmt.name} from {s.root} is writing this folder; if this "
                "file is still here, it stopped before the end, and the next export into this "
                "folder starts it afresh\n",
                encoding="utf-8",
            )
        try:
            result = fmt.export(s, out_dir, image_ids=ids, **options)
        except BaseException as exc:
            if ours:
                _remove_export(out_dir, keep_dir=existed)
            if isinstance(exc, OSError):
                raise _export_os_error(exc, s, out_dir) from exc
            raise
        if ours:
            marker.unlink()
        return result


def _remove_export(out: Path, *, keep_dir: bool) -> None:
    if not keep_dir:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir() if out.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _export_os_error(exc: OSError, store: Store, out: Path) -> DataforgeError:
    """An OSError from an exporter as the one-line error a user can act on."""
    name = str(exc.filename or "")
    what = exc.strerror or str(exc)
    if name and Path(name).resolve().is_relative_to(store.images_dir.resolve()):
        return ImageError(
            f"store image {name}: {what}; the export stopped and removed what it wrote to {out}",
            hint=f"`dataforge validate {store.root}` lists every missing or unreadable image",
        )
    return DataforgeError(
        f"export to {out} failed: {name + ': ' if name else ''}{what}; what it wrote was removed"
    )


def validate(store: PathLike, *, check_files: bool = True) -> ValidationReport:
    return validate_store(Store.open(store), check_files=check_files)


def info(store: PathLike, *, where: str | None = None) -> dict[str, Any]:
    from dataforge.info import store_info

    return store_info(Store.open(store), where=where)
