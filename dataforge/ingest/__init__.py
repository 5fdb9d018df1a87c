"""Bring an :class:`ImportBatch` into a store: check everything, copy images, merge, commit.

The order of work makes an import all-or-nothing:

1. Structural checks on categories, images and annotations (ids, references, boxes, paths).
2. Under the store lock: a journal names every path the import will create in ``images/``
   (``dataforge.store.staging``); every image is read once (hash, size, integrity) and written to
   its final place; boxes are checked against the real image size.
3. Commit: ``annotations.json`` is replaced atomically, then the journal is removed. Any error
   before that removes the journaled files; the store is as it was. A process killed at any point
   leaves ``annotations.json`` untouched, and the next command that takes the lock removes the
   leftovers.

Ids are kept when they are free in the store; an image, annotation or category whose id is
taken gets the next free id, and an image keeps its original id in ``source.image_id``.
Annotation id 0 is always re-assigned (COCOeval treats 0 as "no match").
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataforge.boxes import OUT_OF_BOUNDS_TOLERANCE_PX
from dataforge.errors import DataError, ImageError, UsageError
from dataforge.formats.base import Embedded, ErrorPolicy, ImportBatch, OnError, Skipped
from dataforge.ingest.checks import (
    assign_ids,
    check_annotations,
    check_categories,
    check_image_labels,
    check_images,
    normalized_to_absolute,
    outside_image,
    safe_relative_name,
    shape_problem,
    without_images,
)
from dataforge.ingest.files import BackgroundCopy, ImageStager, Job, Staged
from dataforge.ingest.make_records import ImageRecords, finish_annotations, plan_categories
from dataforge.jsonio import write_json
from dataforge.store.staging import recover, write_journal
from dataforge.store.store import REPORTS_DIR, Store, check_tag, utc_now


def exif_warning(turned: list[dict[str, Any]]) -> str:
    """One line for the images whose EXIF orientation is not 1 (phone photos)."""
    first = turned[0]
    return (
        f"{len(turned)} images carry an EXIF orientation other than 1 (e.g. {first['file_name']}: "
        f"{first['exif_orientation']}): viewers show them rotated or mirrored, while the store keeps "
        "their pixels and boxes as the file stores them; `dataforge validate` lists them, and "
        "`--exif rotate` turns pixels and labels upright on import"
    )


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
    format: str = ""
    #: per label type: what was imported (boxes, masks, keypoints, semantic regions, image labels)
    kept: dict[str, int] = field(default_factory=dict)
    #: what the source held that was stored approximately, or not at all, by kind (the reader's count)
    approximated: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(f"{s.kind}: {s.reason}" for s in self.skipped))


def taken_names(store: Store) -> set[str]:
    """Every record's file name, and every file in ``images/`` (never overwrite a stray file)."""
    taken = {img["file_name"] for img in store.images}
    images_dir = str(store.images_dir)
    for dirpath, _dirs, files in os.walk(images_dir):
        rel = os.path.relpath(dirpath, images_dir).replace(os.sep, "/")
        taken.update(files if rel == "." else (f"{rel}/{f}" for f in files))
    return taken


def unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    stem, ext = os.path.splitext(name)
    k = 2
    while f"{stem}~{k}{ext}" in taken:
        k += 1
    return f"{stem}~{k}{ext}"


def ingest(
    store_path: Path,
    batch: ImportBatch,
    *,
    on_error: OnError = "fail",
    split: str | None = None,
    tags: Iterable[str] = (),
    link: bool = False,
    workers: int | None = None,
    exif: str = "keep",
    strict: bool = False,
) -> ImportResult:
    """Import ``batch`` into the store at ``store_path`` (created if missing). See module docs.
    ``exif="rotate"``: images with an EXIF orientation are turned upright, their labels with them.
    ``strict``: anything the reader could not carry, or only approximately, is an error."""
    if exif not in ("keep", "rotate"):
        raise UsageError(f"--exif {exif!r}: choose keep or rotate")
    if strict and (batch.dropped or batch.approximated):
        lost = {**batch.dropped, **batch.approximated}
        raise DataError(
            f"--strict: {batch.source} holds what dataforge cannot store as it is: "
            + ", ".join(f"{n} {what}" for what, n in lost.items()),
            hint="drop --strict to import the rest (the report counts what was left out)",
        )
    tags = list(tags)
    for t in tags:
        check_tag(t)
    policy = ErrorPolicy(on_error, batch.source)
    cats, images = check_batch(batch, policy)
    details: dict[str, Any] = {"format": batch.format, "source": batch.source, "on_error": on_error}
    with Store.edit(store_path, "import", create=True, details=details) as store:
        return ingest_open(store, batch, policy, cats, images, details, split, tags, link, workers, exif)


def check_batch(
    batch: ImportBatch, policy: ErrorPolicy
) -> tuple[dict[int, dict[str, Any]], dict[int, tuple[dict[str, Any], str]]]:
    """The structural checks of a batch: its categories by id, and its images by id with their
    safe file names (image labels naming unknown categories are dropped)."""
    cats = check_categories(batch.categories, policy)
    images = check_images(batch, policy)
    check_image_labels(images, cats, policy)
    return cats, images


def ingest_open(
    store: Store,
    batch: ImportBatch,
    policy: ErrorPolicy,
    cats: dict[int, dict[str, Any]],
    images: dict[int, tuple[dict[str, Any], str]],
    details: dict[str, Any],
    split: str | None,
    tags: list[str],
    link: bool = False,
    workers: int | None = None,
    exif: str = "keep",
) -> ImportResult:
    """The part of :func:`ingest` done under the store lock, in a ``Store.edit`` block."""
    if not os.path.isdir(batch.images_root) and not all(
        "_bytes" in img or "_embedded" in img for img, _ in images.values()
    ):
        raise DataError(
            f"{batch.source}: images folder {batch.images_root} does not exist",
            hint="pass --images DIR (the folder that file_name values are relative to)",
        )
    before = {img["file_name"] for img in store.images}
    job = _Import(store, batch, policy, cats, images, split, tags, link, workers, exif)
    try:
        result = job.run()
    except BaseException:
        for child in job.running:  # stop any copying before cleaning up after it
            child.cancel()
        # Nothing was written to annotations.json: remove the journaled files.
        recover(str(store.root), str(store.images_dir), lambda: before)
        raise
    record_details(details, result, policy)
    return result


def record_details(details: dict[str, Any], result: ImportResult, policy: ErrorPolicy) -> None:
    """What the store's history says of an import."""
    details.update(
        images=result.images,
        annotations=result.annotations,
        skipped=len(policy.skipped),
        new_categories=result.new_categories,
    )
    if result.report is not None:
        details["report"] = str(result.report.relative_to(result.store))


@dataclass
class _Import:
    """One import under the store lock, in the order it runs: name the new files (journaled), stage
    the images while the annotations are checked, drop the images that failed, check the boxes
    against the real sizes, then merge categories, ids and records into the store."""

    store: Store
    batch: ImportBatch
    policy: ErrorPolicy
    cats: dict[int, dict[str, Any]]
    images: dict[int, tuple[dict[str, Any], str]]
    split: str | None
    tags: list[str]
    link: bool
    workers: int | None
    #: "rotate": images turned upright by their EXIF orientation, labels with them ("keep": as stored)
    exif: str = "keep"
    #: copies running in helper processes, for the caller to cancel on failure
    running: list[BackgroundCopy] = field(default_factory=list)
    #: the batch's warnings, then the import's own
    warnings: list[str] = field(init=False)
    final_names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.warnings = list(self.batch.warnings)

    def run(self) -> ImportResult:
        store, batch, policy = self.store, self.batch, self.policy
        jobs = self._name_files()
        journal = write_journal(
            str(store.root), str(store.images_dir), self.final_names.values(), uuid.uuid4().hex[:8]
        )
        # Normalized boxes (YOLO, TFRecord) need the real image sizes before they can be checked.
        deferred = batch.private_keys and any(
            "_bbox_norm" in a for a in batch.annotations if isinstance(a, dict)
        )
        all_image_ids = dict(self.images)
        staged, copying, checked = self._stage(jobs, all_image_ids, deferred)
        ok, dropped = self._drop_bad_images(staged)
        unwanted = [r.path for r in staged if r.orig_id in dropped and r.path]  # files of dropped images
        if copying is None:
            for path in unwanted:
                os.unlink(path)
        size_of = {iid: (r.width, r.height) for iid, r in ok.items()}
        turned = {iid: r.turned for iid, r in ok.items() if r.turned is not None}
        stored_size = {**size_of, **{iid: (t[1], t[2]) for iid, t in turned.items()}}  # the labels' frame
        if deferred:
            pending = [
                a for a in batch.annotations if not (isinstance(a, dict) and a.get("image_id") in dropped)
            ]
            without_images(
                [a for a in batch.annotations if isinstance(a, dict) and a.get("image_id") in dropped],
                None,
                dropped,
                policy,
            )
            normalized_to_absolute(pending, stored_size)
            anns, boxes = check_annotations(
                dataclasses.replace(batch, annotations=pending), all_image_ids, self.cats, policy
            )
        else:
            assert checked is not None
            anns, boxes = without_images(*checked, dropped, policy)
        if turned:
            from dataforge.exif import turn_annotation

            for a in anns:
                t = turned.get(a["image_id"])
                if t is not None:
                    turn_annotation(a, *t)
            boxes = None  # moved: the bounds check reads them from the annotations
            self.warnings.append(
                f"{len(turned)} images turned upright by their EXIF orientation (--exif rotate), their "
                "labels with them; JPEGs re-encoded at quality 95"
            )
        anns = self._drop_boxes_outside(anns, boxes, size_of)
        anns = self._drop_bad_shapes(anns, size_of)
        new_images, new_cats, id_changes, now = self._merge(ok, anns)
        # -- commit: annotations.json is written on leaving Store.edit, then the journal goes
        if copying is not None:
            copying.wait()
            for path in unwanted:
                os.unlink(path)
        from dataforge.formats.accounting import present_in

        kept = present_in(new_images, anns)
        report = write_report(
            store,
            batch.source,
            batch.format,
            policy,
            self.warnings,
            len(new_images),
            len(anns),
            now,
            accounts={"kept": kept, "approximated": batch.approximated, "dropped": batch.dropped},
        )
        store.after_write(lambda: os.unlink(journal))
        store.add_records(new_images, anns)
        return ImportResult(
            store=store.root,
            images=len(new_images),
            annotations=len(anns),
            new_categories=new_cats,
            skipped=policy.skipped,
            warnings=self.warnings,
            report=report,
            id_changes=id_changes,
            format=batch.format,
            kept=kept,
            approximated=dict(batch.approximated),
            dropped=dict(batch.dropped),
        )

    def _name_files(self) -> list[Job]:
        """Each new image's name in the store (never one in use by a record or by a file on disk)."""
        taken = taken_names(self.store)
        jobs: list[Job] = []
        for iid, (img, name) in self.images.items():
            final = unique_name(name, taken)
            taken.add(final)
            self.final_names[iid] = final
            embedded = img.get("_embedded", img.get("_bytes"))
            jobs.append(("" if embedded is not None else str(img.get("_src", name)), iid, final, embedded))
        return jobs

    def _stage(
        self, jobs: list[Job], all_image_ids: dict[int, Any], deferred: bool
    ) -> tuple[list[Staged], BackgroundCopy | None, tuple[list[dict[str, Any]], Any] | None]:
        """Put the images in place (journaled) and, unless boxes wait for the image sizes, check the
        annotations meanwhile: (staged images, the background copy of embedded ones, checked annotations)."""
        stager = ImageStager(
            str(self.batch.images_root),
            str(self.store.images_dir),
            link=self.link,
            turn=self.exif == "rotate",
        )
        # Images inside container files (TFRecord) were probed and hashed by the reader: the checks
        # need nothing more, so helper processes copy them out in the background, beside them.
        embedded = [job for job in jobs if isinstance(job[3], Embedded)]
        staged = stager.planned(embedded)
        copying: BackgroundCopy | None = None
        if embedded:
            copying = stager.copy_in_background(embedded, keep_fds=self.store.lock_fds)
            self.running.append(copying)
            jobs = [job for job in jobs if not isinstance(job[3], Embedded)]
        checked = None
        if deferred:  # nothing to check until the images are in: copy them on this thread
            staged += stager.stage_all(jobs, self.workers)
        elif not jobs:
            checked = check_annotations(self.batch, all_image_ids, self.cats, self.policy)
        else:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataforge-stage") as pool:
                staging_done = pool.submit(stager.stage_all, jobs, self.workers)
                try:
                    # The annotation checks are CPU work; staging waits on the disk. Do both at once.
                    checked = check_annotations(self.batch, all_image_ids, self.cats, self.policy)
                except BaseException:
                    stager.cancel()
                    raise
                staged += staging_done.result()
        return staged, copying, checked

    def _drop_bad_images(self, staged: list[Staged]) -> tuple[dict[int, Staged], set[int]]:
        """Images missing, corrupt, outside the root or already in the store go (by the error policy)."""
        policy = self.policy
        in_store = {
            (img.get("sha256"), img.get("source", {}).get("file_name")): img["id"]
            for img in self.store.images
        }
        ok: dict[int, Staged] = {}
        dropped: set[int] = set()
        for res in staged:
            if res.error is not None:
                policy.problem(
                    "image", res.orig_id, res.error.reason or "bad image", res.error.message, ImageError
                )
                dropped.add(res.orig_id)
                continue
            img, name = self.images[res.orig_id]
            dup = in_store.get((res.sha256, img.get("file_name"))) if in_store else None
            if dup is not None:
                policy.problem(
                    "image",
                    res.orig_id,
                    "already in the store",
                    f"image {res.orig_id} ({name}) is already in the store as image {dup} "
                    "(same file name and sha256)",
                )
                dropped.add(res.orig_id)
                continue
            ok[res.orig_id] = res
        for iid in dropped:
            self.images.pop(iid)
        return ok, dropped

    def _drop_boxes_outside(
        self, anns: list[dict[str, Any]], boxes: Any, size_of: dict[int, tuple[int, int]]
    ) -> list[dict[str, Any]]:
        bad = outside_image(anns, size_of, OUT_OF_BOUNDS_TOLERANCE_PX, boxes)
        if not bad:
            return anns
        for i in bad:
            a = anns[i]
            w, h = size_of[a["image_id"]]
            self.policy.problem(
                "annotation",
                a.get("id"),
                "box outside the image",
                f"annotation {a.get('id')} (image {a['image_id']}): box xywh {a['bbox']} "
                f"extends outside the {w}x{h} image",
            )
        bad_set = set(bad)
        return [a for i, a in enumerate(anns) if i not in bad_set]

    def _drop_bad_shapes(
        self, anns: list[dict[str, Any]], size_of: dict[int, tuple[int, int]]
    ) -> list[dict[str, Any]]:
        """Annotations whose mask or keypoints are malformed or do not fit their image or category
        are an error (or, with --on-error skip, skipped and reported)."""
        out = []
        for a in anns:
            w, h = size_of[a["image_id"]]
            problem = shape_problem(a, w, h, self.cats.get(a["category_id"]))
            if problem is None:
                out.append(a)
            else:
                self.policy.problem("annotation", a.get("_where") or a.get("id"), *problem)
        return out

    def _merge(
        self, ok: dict[int, Staged], anns: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any], str]:
        """Categories by name (ids kept when free), new image and annotation ids, the store records:
        (new images, names of new categories, id changes, the time stamped on them)."""
        store, batch = self.store, self.batch
        cat_map, added, cats_changed = plan_categories(store.data["categories"], self.cats)
        store.add_categories(added)
        new_img_ids, imgs_changed = assign_ids(list(self.images), {img["id"] for img in store.images})
        img_map = dict(zip(self.images, new_img_ids, strict=True))
        now = utc_now()
        make = ImageRecords(
            batch.format,
            batch.source,
            str(batch.images_root),
            now,
            self.tags,
            self.split,
            cat_map,
            self.warnings,
        ).make
        new_images = []
        for iid, (img, name) in self.images.items():
            r = ok[iid]
            record = make(
                img,
                iid,
                name,
                img_map[iid],
                self.final_names[iid],
                r.width,
                r.height,
                r.sha256,
                r.orientation,
            )
            if r.turned is not None:
                record["source"]["exif_turned"] = r.turned[0]
            new_images.append(record)
        sideways = [r for r in new_images if r.get("exif_orientation")]
        if sideways:
            self.warnings.append(exif_warning(sideways))
        new_ann_ids, anns_changed = assign_ids(
            [a.get("id") for a in anns], {a["id"] for a in store.annotations}, allow_zero=False
        )
        finish_annotations(
            anns,
            new_ann_ids,
            img_map if any(k != v for k, v in img_map.items()) else None,
            cat_map if any(k != v for k, v in cat_map.items()) else None,
            private_keys=batch.private_keys,
        )
        _merge_licenses(store, batch.licenses, new_images)
        changes = {"images": imgs_changed, "annotations": anns_changed, "categories": cats_changed}
        return new_images, [c["name"] for c in added], changes, now


def _merge_licenses(store: Store, licenses: list[dict[str, Any]], new_images: list[dict[str, Any]]) -> None:
    """The batch's licenses into the store's: the same license (all but its id) is not added twice;
    a new one keeps its id when free; the new images' ``license`` ids follow."""
    if not licenses:
        return
    existing = {lic.get("id"): lic for lic in store.licenses}
    remap: dict[Any, int] = {}
    for lic in licenses:
        if not isinstance(lic, dict):
            continue
        lid = lic.get("id")
        same = next((k for k, v in existing.items() if {**v, "id": None} == {**lic, "id": None}), None)
        if same is not None:
            remap[lid] = same
            continue
        (new_id,), _ = assign_ids([lid], {k for k in existing if isinstance(k, int)})
        store.add_licenses([{**lic, "id": new_id}])
        existing[new_id] = lic
        remap[lid] = new_id
    if any(k != v for k, v in remap.items()):
        for img in new_images:
            if "license" in img and img["license"] in remap:
                img["license"] = remap[img["license"]]


def write_report(
    store: Store,
    source: str,
    format: str,
    policy: ErrorPolicy,
    warnings: list[str],
    n_images: int,
    n_anns: int,
    now: str,
    accounts: dict[str, dict[str, int]] | None = None,
) -> Path:
    reports = store.root / REPORTS_DIR
    reports.mkdir(exist_ok=True)
    stamp = now.replace(":", "").replace("+00:00", "Z")
    path = reports / f"import-{stamp}-{uuid.uuid4().hex[:6]}.json"
    from dataforge.file_schemas import ImportReport

    report = ImportReport.model_validate(
        {
            "source": source,
            "format": format,
            "on_error": policy.mode,
            "time": now,
            "imported": {"images": n_images, "annotations": n_anns},
            "skipped_count": len(policy.skipped),
            "skipped_by_reason": dict(Counter(f"{s.kind}: {s.reason}" for s in policy.skipped)),
            "skipped": [
                {**s.__dict__, "id": s.id if isinstance(s.id, (int, str)) else repr(s.id)}
                for s in policy.skipped
            ],
            "warnings": warnings,
            **(accounts or {}),
        }
    )
    write_json(path, report.model_dump(mode="json"))
    return path


__all__ = ["ImportResult", "ingest", "safe_relative_name"]
