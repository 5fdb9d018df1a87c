"""Bring an :class:`ImportBatch` into a store: check everything, copy images, merge, commit.

The order of work makes an import all-or-nothing:

1. Structural checks on categories, images and annotations (ids, references, boxes, paths).
2. Under the store lock: every image is read once (hash, size, integrity) and written to a
   hidden temp file inside ``images/``; boxes are checked against the real image size.
3. Commit: temp files are renamed to their final names, then ``annotations.json`` is replaced
   atomically. Any error before that removes the temp files; the store is as it was. A killed
   process leaves only hidden ``.*.tmp-*`` files that no record points to.

Ids are kept when they are free in the store; an image, annotation or category whose id is
taken gets the next free id, and an image keeps its original id in ``source.image_id``.
Annotation id 0 is always re-assigned (COCOeval treats 0 as "no match").
"""

from __future__ import annotations

import math
import os
import posixpath
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataforge.boxes import OUT_OF_BOUNDS_TOLERANCE_PX
from dataforge.errors import DataError, ImageError
from dataforge.formats.base import ErrorPolicy, ImportBatch, OnError, Skipped
from dataforge.imageio import probe_bytes, sha256_bytes
from dataforge.jsonio import write_json
from dataforge.store.store import REPORTS_DIR, Store, check_tag, utc_now

_CHUNK = 256


@dataclass
class ImportResult:
    store: Path
    images: int
    annotations: int
    new_categories: list[str]
    skipped: list[Skipped]
    warnings: list[str]
    report: Path | None
    id_changes: dict[str, int] = field(default_factory=dict)

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(f"{s.kind}: {s.reason}" for s in self.skipped))


def safe_relative_name(file_name: Any) -> str | None:
    """Normalize an image ``file_name`` to a relative POSIX path, or None if it is unsafe.

    Unsafe: not a string, empty, absolute (``/x``, ``C:\\x``), containing ``..``, or NUL.
    Backslashes are treated as separators (files written on Windows).
    """
    if not isinstance(file_name, str) or not file_name or "\x00" in file_name:
        return None
    name = file_name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_categories(batch: ImportBatch, policy: ErrorPolicy) -> dict[int, dict[str, Any]]:
    cats: dict[int, dict[str, Any]] = {}
    names: dict[str, int] = {}
    for i, cat in enumerate(batch.categories):
        cid = cat.get("id") if isinstance(cat, dict) else None
        name = cat.get("name") if isinstance(cat, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool):
            policy.problem("category", f"#{i}", "bad id", f"category #{i} has no integer 'id' (found {cid!r})")
            continue
        if not isinstance(name, str) or not name.strip():
            policy.problem("category", cid, "bad name", f"category {cid} has no name (found {name!r})")
            continue
        if cid in cats:
            policy.problem("category", cid, "duplicate id",
                           f"category id {cid} appears twice ({cats[cid]['name']!r} and {name!r})")
            continue
        if name in names:
            policy.problem("category", cid, "duplicate name",
                           f"category name {name!r} is used by ids {names[name]} and {cid}")
            continue
        cats[cid] = cat
        names[name] = cid
    return cats


def _check_images(batch: ImportBatch, policy: ErrorPolicy) -> dict[int, tuple[dict[str, Any], str]]:
    images: dict[int, tuple[dict[str, Any], str]] = {}
    seen_names: dict[str, int] = {}
    for i, img in enumerate(batch.images):
        iid = img.get("id") if isinstance(img, dict) else None
        if not isinstance(iid, int) or isinstance(iid, bool):
            policy.problem("image", f"#{i}", "bad id", f"image #{i} has no integer 'id' (found {iid!r})")
            continue
        if iid in images:
            policy.problem("image", iid, "duplicate id", f"image id {iid} appears twice "
                           f"({images[iid][0].get('file_name')!r} and {img.get('file_name')!r})")
            continue
        raw = img.get("file_name")
        name = safe_relative_name(raw)
        if name is None:
            policy.problem("image", iid, "unsafe file_name",
                           f"image {iid}: file_name {raw!r} must be a relative path inside the images "
                           "folder (no absolute paths, no '..')")
            continue
        if name in seen_names:
            policy.problem("image", iid, "duplicate file_name",
                           f"image {iid}: file_name {name!r} is also used by image {seen_names[name]}")
            continue
        seen_names[name] = iid
        images[iid] = (img, name)
    return images


def _check_annotations(
    batch: ImportBatch,
    images: dict[int, Any],
    dropped_images: set[int],
    cats: dict[int, dict[str, Any]],
    policy: ErrorPolicy,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for i, ann in enumerate(batch.annotations):
        if not isinstance(ann, dict):
            policy.problem("annotation", f"#{i}", "not an object", f"annotation #{i} is not a JSON object")
            continue
        aid = ann.get("id")
        label = aid if isinstance(aid, int) and not isinstance(aid, bool) else f"#{i}"
        if isinstance(aid, int) and not isinstance(aid, bool) and aid != 0:
            if aid in seen:
                policy.problem("annotation", aid, "duplicate id", f"annotation id {aid} appears twice")
                continue
            seen.add(aid)
        iid = ann.get("image_id")
        if iid not in images:
            if iid in dropped_images:
                policy.problem("annotation", label, "its image was skipped",
                               f"annotation {label}: its image {iid} was skipped")
            else:
                known = f"ids {min(images)}..{max(images)}" if images else "no images"
                policy.problem("annotation", label, "missing image",
                               f"annotation {label} refers to image_id {iid!r}, which is not in 'images' ({known})")
            continue
        cid = ann.get("category_id")
        if cid not in cats:
            policy.problem("annotation", label, "unknown category",
                           f"annotation {label} (image {iid}) refers to category_id {cid!r}, which is not in "
                           f"'categories' (ids {sorted(cats)})")
            continue
        bbox = ann.get("bbox")
        if bbox is None and isinstance(ann.get("segmentation"), list) and ann["segmentation"]:
            bbox = _polygon_bbox(ann["segmentation"])
            if bbox is not None:
                ann["bbox"] = bbox
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            policy.problem("annotation", label, "bad bbox",
                           f"annotation {label} (image {iid}): bbox must be [x, y, width, height] numbers, found {bbox!r}")
            continue
        if bbox[2] <= 0 or bbox[3] <= 0:
            policy.problem("annotation", label, "zero or negative size box",
                           f"annotation {label} (image {iid}): box {bbox} has zero or negative width/height")
            continue
        out.append(ann)
    return out


def _polygon_bbox(segmentation: list[Any]) -> list[float] | None:
    xs: list[float] = []
    ys: list[float] = []
    for poly in segmentation:
        if not isinstance(poly, list) or len(poly) < 6 or not all(_is_number(v) for v in poly):
            return None
        xs.extend(poly[0::2])
        ys.extend(poly[1::2])
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


@dataclass
class _Read:
    orig_id: int
    width: int = 0
    height: int = 0
    sha256: str = ""
    tmp: Path | None = None
    error: ImageError | None = None


def _read_one(src_root: Path, real_root: str, name: str, orig_id: int, tmp: Path, link: bool) -> _Read:
    src = src_root / name
    res = _Read(orig_id)
    try:
        real = os.path.realpath(src)
        if not (real == real_root or real.startswith(real_root + os.sep)):
            raise ImageError(f"image {orig_id}: {name!r} resolves to {real}, outside the images folder {real_root}",
                             item=f"image {orig_id}", reason="path outside the images folder")
        try:
            data = src.read_bytes()
        except FileNotFoundError:
            raise ImageError(f"image {orig_id}: file {name!r} is listed but missing on disk (looked for {src})",
                             item=f"image {orig_id}", reason="missing file") from None
        except OSError as exc:
            raise ImageError(f"image {orig_id}: cannot read {src} ({exc.strerror})",
                             item=f"image {orig_id}", reason="unreadable file") from None
        info = probe_bytes(data, where=f"image {orig_id} ({name})")
        res.width, res.height, res.sha256 = info.width, info.height, sha256_bytes(data)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        if link:
            try:
                os.link(src, tmp)
            except OSError:
                tmp.write_bytes(data)
        else:
            tmp.write_bytes(data)
        res.tmp = tmp
    except ImageError as exc:
        res.error = exc
    return res


def _unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    stem, ext = posixpath.splitext(name)
    k = 2
    while f"{stem}~{k}{ext}" in taken:
        k += 1
    return f"{stem}~{k}{ext}"


def assign_ids(wanted: list[Any], used: Iterable[int], *, allow_zero: bool = True) -> tuple[list[int], int]:
    """Keep each wanted id that is free; give the rest max+1, max+2, ... Returns (ids, how many changed).

    Two passes, so that one collision does not push later ids out of their place.
    """
    taken = set(used)
    out: list[int | None] = []
    for w in wanted:
        ok = isinstance(w, int) and not isinstance(w, bool) and (allow_zero or w != 0) and w not in taken
        out.append(w if ok else None)
        if ok:
            taken.add(w)
    nxt = max(taken, default=0) + 1
    changed = 0
    for i, v in enumerate(out):
        if v is None:
            out[i] = nxt
            taken.add(nxt)
            nxt += 1
            changed += 1
    return [int(v) for v in out if v is not None], changed


def ingest(
    store_path: Path,
    batch: ImportBatch,
    *,
    on_error: OnError = "fail",
    split: str | None = None,
    tags: Iterable[str] = (),
    link: bool = False,
    workers: int | None = None,
) -> ImportResult:
    """Import ``batch`` into the store at ``store_path`` (created if missing). See module docs."""
    tags = list(tags)
    for t in tags:
        check_tag(t)
    policy = ErrorPolicy(on_error, batch.source)
    warnings: list[str] = []
    cats = _check_categories(batch, policy)
    images = _check_images(batch, policy)
    dropped: set[int] = set()

    details: dict[str, Any] = {"format": batch.format, "source": batch.source, "on_error": on_error}
    created_tmp: list[Path] = []
    committed: list[Path] = []
    txid = uuid.uuid4().hex[:8]
    try:
        with Store.edit(store_path, "import", create=True, details=details) as store:
            real_root = os.path.realpath(batch.images_root)
            if not os.path.isdir(real_root):
                raise DataError(f"{batch.source}: images folder {batch.images_root} does not exist",
                                hint="pass --images DIR (the folder that file_name values are relative to)")
            taken = {img["file_name"] for img in store.images}
            final_names: dict[int, str] = {}
            jobs = []
            for iid, (_img, name) in images.items():
                final = _unique_name(name, taken)
                taken.add(final)
                final_names[iid] = final
                dest = store.images_dir / final
                tmp = dest.with_name(f".{dest.name}.tmp-{txid}")
                jobs.append((name, iid, tmp))
                created_tmp.append(tmp)

            results = _read_all(batch.images_root, real_root, jobs, link, workers)
            store_by_hash = {(img.get("sha256"), img.get("source", {}).get("file_name")): img["id"]
                             for img in store.images}
            reads: dict[int, _Read] = {}
            for res in results:
                if res.error is not None:
                    reason = res.error.reason or "bad image"
                    policy.problem("image", res.orig_id, reason, res.error.message)
                    dropped.add(res.orig_id)
                    continue
                img, name = images[res.orig_id]
                dup = store_by_hash.get((res.sha256, name))
                if dup is not None:
                    policy.problem("image", res.orig_id, "already in the store",
                                   f"image {res.orig_id} ({name}) is already in the store as image {dup} "
                                   "(same file name and sha256)")
                    dropped.add(res.orig_id)
                    continue
                reads[res.orig_id] = res
            for iid in dropped:
                images.pop(iid, None)

            anns = _check_annotations(batch, images, dropped, cats, policy)
            kept_anns = []
            for ann in anns:
                r = reads[ann["image_id"]]
                x, y, w, h = ann["bbox"]
                tol = OUT_OF_BOUNDS_TOLERANCE_PX
                if x < -tol or y < -tol or x + w > r.width + tol or y + h > r.height + tol:
                    policy.problem("annotation", ann.get("id"), "box outside the image",
                                   f"annotation {ann.get('id')} (image {ann['image_id']}): box xywh {ann['bbox']} "
                                   f"extends outside the {r.width}x{r.height} image")
                    continue
                kept_anns.append(ann)

            # -- merge ---------------------------------------------------------------------
            store_cats = store.data["categories"]
            by_name = {c["name"]: c["id"] for c in store_cats}
            cat_map = {cid: by_name[cat["name"]] for cid, cat in cats.items() if cat["name"] in by_name}
            fresh = [cid for cid in cats if cid not in cat_map]
            fresh_ids, cats_changed = assign_ids(fresh, by_name.values())
            new_cats: list[str] = []
            for cid, new_id in zip(fresh, fresh_ids, strict=True):
                store_cats.append({**cats[cid], "id": new_id})
                cat_map[cid] = new_id
                new_cats.append(cats[cid]["name"])

            new_img_ids, imgs_changed = assign_ids(list(images), (img["id"] for img in store.images))
            img_map = dict(zip(images, new_img_ids, strict=True))
            now = utc_now()
            new_images = []
            for iid, (img, name) in images.items():
                r = reads[iid]
                new_id = img_map[iid]
                source: dict[str, Any] = {"format": batch.format, "file": batch.source, "image_id": iid,
                                          "file_name": img.get("file_name"), "imported": now}
                stated = (img.get("width"), img.get("height"))
                if stated != (None, None) and stated != (r.width, r.height):
                    source["stated_size"] = list(stated)
                    warnings.append(f"image {iid} ({name}): the file says {stated[0]}x{stated[1]}, the image is "
                                    f"{r.width}x{r.height}; using the image's size")
                record = {k: v for k, v in img.items() if k not in ("id", "file_name", "width", "height")}
                old_tags = record.get("tags")
                tag_list = [t for t in old_tags if isinstance(t, str)] if isinstance(old_tags, list) else []
                record.update(id=new_id, file_name=final_names[iid], width=r.width, height=r.height,
                              sha256=r.sha256, tags=tag_list + [t for t in tags if t not in tag_list])
                if split is not None:
                    record["split"] = split
                elif not isinstance(record.get("split"), str):
                    record.pop("split", None)
                record["source"] = {**record["source"], **source} if isinstance(record.get("source"), dict) else source
                new_images.append(record)

            new_ann_ids, anns_changed = assign_ids([a.get("id") for a in kept_anns],
                                                   (a["id"] for a in store.annotations), allow_zero=False)
            new_anns = []
            for ann, ann_id in zip(kept_anns, new_ann_ids, strict=True):
                w, h = ann["bbox"][2], ann["bbox"][3]
                area = ann.get("area")
                ann.update(id=ann_id, image_id=img_map[ann["image_id"]],
                           category_id=cat_map[ann["category_id"]],
                           area=area if _is_number(area) and area >= 0 else float(w * h),
                           iscrowd=1 if ann.get("iscrowd") in (1, True, "1") else 0)
                ann.setdefault("segmentation", [])
                new_anns.append(ann)

            _merge_licenses(store.data, batch.licenses, new_images)

            # -- commit ----------------------------------------------------------------------
            for iid in images:
                tmp = reads[iid].tmp
                assert tmp is not None
                dest = store.images_dir / final_names[iid]
                os.replace(tmp, dest)
                committed.append(dest)
            store.images.extend(new_images)
            store.annotations.extend(new_anns)
            store.invalidate()
            report = _write_report(store, batch, policy, warnings, len(new_images), len(new_anns), now)
            details.update(images=len(new_images), annotations=len(new_anns), skipped=len(policy.skipped),
                           new_categories=new_cats, report=str(report.relative_to(store.root)))
    except BaseException:
        for p in created_tmp:
            p.unlink(missing_ok=True)
        for p in committed:
            p.unlink(missing_ok=True)
        raise
    finally:
        for p in created_tmp:  # temp files of skipped images
            p.unlink(missing_ok=True)
    return ImportResult(
        store=Path(store_path), images=len(new_images), annotations=len(new_anns), new_categories=new_cats,
        skipped=policy.skipped, warnings=warnings, report=report,
        id_changes={"images": imgs_changed, "annotations": anns_changed, "categories": cats_changed},
    )


def _read_all(root: Path, real_root: str, jobs: list[tuple[str, int, Path]], link: bool,
              workers: int | None) -> list[_Read]:
    def run(chunk: list[tuple[str, int, Path]]) -> list[_Read]:
        return [_read_one(root, real_root, name, iid, tmp, link) for name, iid, tmp in chunk]

    chunks = [jobs[i : i + _CHUNK] for i in range(0, len(jobs), _CHUNK)]
    n = workers or min(8, 2 * (os.cpu_count() or 1))
    if n <= 1 or len(chunks) <= 1:
        return [r for c in chunks for r in run(c)]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="dataforge-read") as pool:
        return [r for rs in pool.map(run, chunks) for r in rs]


def _merge_licenses(data: dict[str, Any], licenses: list[dict[str, Any]], new_images: list[dict[str, Any]]) -> None:
    if not licenses:
        return
    existing = {lic.get("id"): lic for lic in data.setdefault("licenses", []) if isinstance(lic, dict)}
    remap: dict[Any, int] = {}
    for lic in licenses:
        if not isinstance(lic, dict):
            continue
        lid = lic.get("id")
        same = next((k for k, v in existing.items() if {**v, "id": None} == {**lic, "id": None}), None)
        if same is not None:
            remap[lid] = same
            continue
        (new_id,), _ = assign_ids([lid], (k for k in existing if isinstance(k, int)))
        data["licenses"].append({**lic, "id": new_id})
        existing[new_id] = lic
        remap[lid] = new_id
    for img in new_images:
        if "license" in img and img["license"] in remap:
            img["license"] = remap[img["license"]]


def _write_report(store: Store, batch: ImportBatch, policy: ErrorPolicy, warnings: list[str],
                  n_images: int, n_anns: int, now: str) -> Path:
    reports = store.root / REPORTS_DIR
    reports.mkdir(exist_ok=True)
    stamp = now.replace(":", "").replace("+0000", "Z").replace("+00:00", "Z")
    path = reports / f"import-{stamp}-{uuid.uuid4().hex[:6]}.json"
    write_json(path, {
        "source": batch.source,
        "format": batch.format,
        "on_error": policy.mode,
        "time": now,
        "imported": {"images": n_images, "annotations": n_anns},
        "skipped_count": len(policy.skipped),
        "skipped_by_reason": dict(Counter(f"{s.kind}: {s.reason}" for s in policy.skipped)),
        "skipped": [s.__dict__ for s in policy.skipped],
        "warnings": warnings,
    })
    return path


def remove_stale_temp_files(store: Store) -> int:
    """Delete hidden temp files that a killed import left in ``images/``; returns how many."""
    n = 0
    for p in store.images_dir.rglob(".*.tmp-*"):
        p.unlink(missing_ok=True)
        n += 1
    return n


__all__ = ["ImportResult", "ingest", "remove_stale_temp_files", "safe_relative_name"]
