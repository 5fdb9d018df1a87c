"""Direct import of record files that embed their images (TFRecord): each process that parses a
range of records also checks them and writes their images into the store.

The general import (:func:`dataforge.ingest.ingest`) parses everything, sends it to one process,
checks it there, and copies the images in helper processes afterwards; every record crosses
processes and is walked several times. Here, under the store lock:

1. Every process parses its range of records, checks them (the same rules as the general import:
   safe file names, complete images, known categories, finite non-empty boxes inside the image,
   not already in the store) and sends back only the images' file names.
2. This process picks the final names (duplicates against the store get ``~2``, like the general
   import), journals them (``dataforge.store.staging``) and sends the decision back.
3. Every process writes its images to their final places and makes its store records.

Anything the error policy would have to decide about (a damaged record, an unknown category, a box
outside the image, two images with one name...) sends the parsed records to the general import
instead, which reports it as usual; nothing has been written by then. Both paths make the same
store, which the tests check.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataforge.boxes import OUT_OF_BOUNDS_TOLERANCE_PX, xywh_inside_image
from dataforge.errors import DataError, ImageError
from dataforge.formats.base import Embedded, ErrorPolicy, OnError, RecordScan
from dataforge.formats.common import FileWindows
from dataforge.ingest import (
    ImportResult,
    check_batch,
    ingest_open,
    record_details,
    taken_names,
    unique_name,
    write_report,
)
from dataforge.ingest.checks import assign_ids, check_categories, safe_relative_name
from dataforge.ingest.make_records import ImageRecords, finish_annotations, plan_categories
from dataforge.jsonio import dumps
from dataforge.parallel import map_ranges, map_ranges_in_two_steps
from dataforge.runtime import write_new_file
from dataforge.store.staging import recover, write_journal
from dataforge.store.store import Store, check_tag, utc_now

Part = tuple[list[dict[str, Any]], list[dict[str, Any]]]


@dataclass(slots=True)
class _Plan:
    renamed: dict[int, str]  # record number -> final name, where it is not the image's own name
    ann_bases: dict[int, int]  # range start -> the number of annotations in the ranges before it
    ann_ids: list[int] | None  # the store ids of all annotations, when they are not 1..N


def ingest_records(
    store_path: Path,
    scan: RecordScan,
    *,
    on_error: OnError = "fail",
    split: str | None = None,
    tags: Iterable[str] = (),
) -> ImportResult:
    """Import the records ``scan`` found into the store at ``store_path`` (see the module docs)."""
    tags = list(tags)
    for t in tags:
        check_tag(t)
    policy = ErrorPolicy(on_error, scan.source)
    details: dict[str, Any] = {"format": scan.format, "source": scan.source, "on_error": on_error}
    with Store.edit(store_path, "import", create=True, details=details) as store:
        cats = _direct_categories(scan)
        parts = None
        if cats is None:
            parts = map_ranges(scan.parse_range, scan.n)
        else:
            done = _Direct(store, scan, cats, policy, split, tags).run()
            if isinstance(done, ImportResult):
                record_details(details, done, policy)
                return done
            parts = done
        batch = scan.batch(parts)
        batch_cats, images = check_batch(batch, policy)
        return ingest_open(store, batch, policy, batch_cats, images, details, split, tags)


def _direct_categories(scan: RecordScan) -> dict[int, dict[str, Any]] | None:
    """The categories by id when the records can go the direct way, else None."""
    if not scan.direct or not scan.n or scan.categories is None:
        return None
    strict = ErrorPolicy("skip", scan.source)
    cats = check_categories(scan.categories, strict)
    return None if strict.skipped else cats


class _Direct:
    def __init__(
        self,
        store: Store,
        scan: RecordScan,
        cats: dict[int, dict[str, Any]],
        policy: ErrorPolicy,
        split: str | None,
        tags: list[str],
    ) -> None:
        self.store = store
        self.scan = scan
        self.cats = cats
        self.policy = policy
        self.images_dir = str(store.images_dir)
        self.taken = taken_names(store)
        self.in_store = {(img.get("sha256"), img.get("source", {}).get("file_name")) for img in store.images}
        self.cat_map, self.added_cats, self.cats_changed = plan_categories(store.data["categories"], cats)
        ids, self.imgs_changed = assign_ids(list(range(1, scan.n + 1)), {img["id"] for img in store.images})
        self.img_ids = ids
        # for the annotations: None where nothing changes
        self.img_map = dict(zip(range(1, scan.n + 1), ids, strict=True)) if self.imgs_changed else None
        self.ann_cat_map = self.cat_map if any(k != v for k, v in self.cat_map.items()) else None
        self.now = utc_now()
        self.records = ImageRecords(
            scan.format, scan.source, str(scan.images_root), self.now, tags, split, self.cat_map, []
        )
        self.parsed: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]] = {}
        self.journal: str | None = None
        self.anns_changed = 0

    def run(self) -> ImportResult | list[Part]:
        before = {img["file_name"] for img in self.store.images}
        try:
            plan, parts = map_ranges_in_two_steps(self.first, self.decide, self.second, self.scan.n)
            if plan is None:
                return parts
            return self.commit(plan, parts)
        except BaseException:
            if self.journal is not None:  # remove what the processes wrote
                recover(str(self.store.root), self.images_dir, lambda: before)
            raise

    # -- step 1, in every process: parse and check a range ---------------------------------------
    def first(self, start: int, stop: int) -> tuple[int, list[str] | None, int]:
        imgs, anns = self.scan.parse_range(start, stop)
        names = self._clean_names(imgs, anns)
        self.parsed[start] = imgs, anns, names or []
        return start, names, len(anns)

    def _clean_names(self, imgs: list[dict[str, Any]], anns: list[dict[str, Any]]) -> list[str] | None:
        """The images' names when nothing in the range needs the error policy, else None."""
        names: list[str] = []
        size_of: dict[int, tuple[int, int]] = {}
        in_store = self.in_store
        for img in imgs:
            emb = img.get("_embedded")
            if type(emb) is not Embedded or "_problem" in img:
                return None
            name = safe_relative_name(img["file_name"])
            if name is None or (in_store and (emb.sha256, img["file_name"]) in in_store):
                return None
            names.append(name)
            size_of[img["id"]] = emb.width, emb.height
        tol = OUT_OF_BOUNDS_TOLERANCE_PX
        cats = self.cats
        for a in anns:
            box = a.get("bbox")
            if box is None or "_problem" in a or a.get("category_id") not in cats:
                return None
            x, y, w, h = box
            iw, ih = size_of[a["image_id"]]
            # the general import's checks: finite, not empty, inside the image (NaN fails them all)
            if not (w > 0 and h > 0 and xywh_inside_image(x, y, w, h, iw, ih, tol)):
                return None
        return names

    # -- between the steps, in this process: final names and the journal -----------------------
    def decide(self, firsts: list[tuple[int, list[str] | None, int]]) -> _Plan | None:
        names: list[str] = []
        for _start, part_names, _count in firsts:
            if part_names is None:
                return None
            names.extend(part_names)
        if len(set(names)) != len(names):
            return None  # the general import names the duplicates
        renamed: dict[int, str] = {}
        taken = self.taken
        if taken:
            for k, name in enumerate(names):
                final = unique_name(name, taken)
                taken.add(final)
                if final != name:
                    renamed[k] = final
        finals = names if not renamed else [renamed.get(k, name) for k, name in enumerate(names)]
        self.journal = write_journal(str(self.store.root), self.images_dir, finals, uuid.uuid4().hex[:8])
        bases, total = {}, 0
        for start, _names, count in firsts:
            bases[start] = total
            total += count
        ann_ids, changed = assign_ids(
            list(range(1, total + 1)), {a["id"] for a in self.store.annotations}, allow_zero=False
        )
        self.anns_changed = changed
        return _Plan(renamed, bases, ann_ids if changed else None)

    # -- step 2, in every process: write the images, make the records --------------------------
    def second(self, start: int, stop: int, plan: _Plan | None) -> Any:
        imgs, anns, names = self.parsed.pop(start)
        if plan is None:
            return imgs, anns  # to the general import
        base = plan.ann_bases[start]
        make = self.records.make
        warnings = self.records.warnings
        seen_warnings = len(warnings)
        img_ids = self.img_ids
        new_images = []
        with _Writer(self.images_dir) as write:
            for j, img in enumerate(imgs):
                k = start + j
                final = plan.renamed.get(k, names[j])
                emb: Embedded = img["_embedded"]
                write(emb, final, img["id"])
                new_images.append(
                    make(img, img["id"], names[j], img_ids[k], final, emb.width, emb.height, emb.sha256)
                )
        new_ids = (
            plan.ann_ids[base : base + len(anns)]
            if plan.ann_ids is not None
            else [base + a["id"] for a in anns]
            if base
            else [a["id"] for a in anns]
        )
        # no private keys: an annotation that has one (_problem, _where...) went to the general import
        finish_annotations(anns, new_ids, self.img_map, self.ann_cat_map, private_keys=False)
        # As JSON: unpickling records would cost the parent 5x what making the JSON costs here,
        # and the store only writes them out.
        return dumps(new_images), dumps(anns), len(new_images), len(anns), warnings[seen_warnings:]

    # -- commit, in this process ---------------------------------------------------------------
    def commit(self, plan: _Plan, parts: list[Any]) -> ImportResult:
        store = self.store
        n_images = n_anns = 0
        warnings: list[str] = []
        for _images, _anns, part_images, part_anns, part_warnings in parts:
            n_images += part_images
            n_anns += part_anns
            warnings.extend(part_warnings)
        store.add_categories(self.added_cats)
        report = write_report(
            store,
            self.scan.source,
            self.scan.format,
            self.policy,
            warnings,
            n_images,
            n_anns,
            self.now,
            accounts={"kept": {"boxes": n_anns} if n_anns else {}},  # TFRecord holds boxes alone
        )
        journal = self.journal
        assert journal is not None
        store.after_write(lambda: os.unlink(journal))
        for part_images, part_anns, *_counts in parts:
            store.append_serialized(part_images, part_anns)
        return ImportResult(
            store=store.root,
            images=n_images,
            annotations=n_anns,
            new_categories=[c["name"] for c in self.added_cats],
            skipped=self.policy.skipped,
            warnings=warnings,
            report=report,
            id_changes={
                "images": self.imgs_changed,
                "annotations": self.anns_changed,
                "categories": self.cats_changed,
            },
            format=self.scan.format,
            kept={"boxes": n_anns} if n_anns else {},
        )


class _Writer:
    """Copies embedded images out of their container files into new files of ``images/``."""

    def __init__(self, images_dir: str) -> None:
        self.prefix = os.path.join(images_dir, "")
        self.readers = FileWindows()
        self.made: set[str] = set()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.readers.__exit__()

    def __call__(self, emb: Embedded, final: str, image_id: int) -> None:
        try:
            data = self.readers[emb.path].read(emb.offset, emb.length)
            if len(data) != emb.length:
                raise DataError(
                    f"{emb.path}: read {len(data)} of {emb.length} bytes of image {image_id} ({final}); "
                    "did the file change during the import?"
                )
            dest = self.prefix + final
            if "/" in final:
                parent = os.path.dirname(dest)
                if parent not in self.made:
                    os.makedirs(parent, exist_ok=True)
                    self.made.add(parent)
            write_new_file(dest, data)
        except OSError as exc:
            raise ImageError(
                f"image {image_id} ({final}): cannot copy it from {emb.path} into the store: "
                f"{exc.strerror or exc}",
                item=f"image {image_id}",
                reason="unreadable file",
            ) from None
