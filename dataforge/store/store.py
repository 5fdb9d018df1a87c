"""The dataset store: a directory that is a valid COCO dataset.

Layout::

    <store>/annotations.json   COCO (images, annotations, categories) + dataforge fields
    <store>/images/             the media, immutable once written; file_name is relative to it
    <store>/history.jsonl       one JSON line per operation that changed the store
    <store>/reports/            import reports (skipped items and why)
    <store>/.lock               the inter-process lock

Per image the store records ``width``/``height`` (read from the file), ``sha256``, ``tags``
(list of strings), ``split`` (string or absent) and ``source`` (lineage). The top-level
``dataforge`` block holds the schema version and a revision counter that every save bumps.

Writes happen under the lock, through a temp file and a rename. ``Store.edit`` holds the lock
from load to save, so concurrent ``dataforge tag`` processes serialize and lose nothing.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import os
import shutil
import socket
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dataforge import __version__
from dataforge.errors import DataError, StoreError, UsageError
from dataforge.jsonio import atomic_write_bytes, dumps, load_json
from dataforge.records import Category, ImageRecord, annotation_from_coco, image_from_coco
from dataforge.store.lock import StoreLock

SCHEMA_VERSION = 1
ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"
HISTORY_FILE = "history.jsonl"
REPORTS_DIR = "reports"


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def empty_dataset() -> dict[str, Any]:
    return {
        "info": {"description": "dataforge store", "date_created": utc_now()},
        "licenses": [],
        "images": [],
        "annotations": [],
        "categories": [],
        "dataforge": {"schema_version": SCHEMA_VERSION, "revision": 0, "category_id_policy": "keep"},
    }


class Store:
    """A dataset store on disk. Open with :meth:`open`, :meth:`create` or :meth:`edit`."""

    def __init__(self, root: Path, data: dict[str, Any]) -> None:
        self.root = root
        self.data = data
        self._index: _Index | None = None
        self._after_write: list[Callable[[], None]] = []
        #: the store lock's file descriptor while ``Store.edit`` holds it: a helper process that
        #: writes into the store keeps it open, so the lock outlives the helper's last write
        self.lock_fds: tuple[int, ...] = ()

    # -- opening -------------------------------------------------------------------------
    @staticmethod
    def is_store(path: str | os.PathLike[str]) -> bool:
        return (Path(path) / ANNOTATIONS_FILE).is_file() and (Path(path) / IMAGES_DIR).is_dir()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Store:
        """Load a store read-only (a snapshot). Call :meth:`save` to write changes back."""
        root = Path(path)
        if not root.exists():
            raise StoreError(
                f"{root}: no such store (the directory does not exist)",
                hint="create one with `dataforge import ... --store " + str(root) + "`",
            )
        if not cls.is_store(root):
            raise StoreError(
                f"{root}: not a dataforge store (expected {ANNOTATIONS_FILE} and {IMAGES_DIR}/ inside)",
                hint="create one with `dataforge import`, or point at the store directory",
            )
        return cls(root, _load(root))

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> Store:
        """Create an empty store. Refuses a directory that has anything in it."""
        root = Path(path)
        if root.exists() and any(root.iterdir()):
            raise StoreError(f"{root}: cannot create a store in a directory that is not empty")
        (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        store = cls(root, empty_dataset())
        with StoreLock(root):
            store._write()
        return store

    @classmethod
    @contextmanager
    def edit(
        cls,
        path: str | os.PathLike[str],
        op: str,
        *,
        create: bool = False,
        details: dict[str, Any] | None = None,
    ) -> Iterator[Store]:
        """Lock, load, yield, then save and append to history if the block ends without error.

        ``details`` (mutable: the block may add to it) is written to the history entry.
        """
        root = Path(path)
        made_root = create and not root.exists()
        if made_root:
            root.mkdir(parents=True)
        if not create and not cls.is_store(root):
            cls.open(root)  # raises the right error
        with StoreLock(root) as lock:
            new_store = False
            if cls.is_store(root):
                store = cls(root, _load(root))
                store.recover()
            elif create:
                if any(p.name != ".lock" for p in root.iterdir()):
                    raise StoreError(f"{root}: cannot create a store in a directory that is not empty")
                (root / IMAGES_DIR).mkdir(exist_ok=True)
                store = cls(root, empty_dataset())
                new_store = True
            else:  # pragma: no cover - the check above raised
                raise StoreError(f"{root}: not a store")
            store.lock_fds = (lock.fd,)
            try:
                yield store
            except BaseException:
                if new_store:  # a failed first write leaves no half-made store behind
                    shutil.rmtree(root / IMAGES_DIR, ignore_errors=True)
                    shutil.rmtree(root / REPORTS_DIR, ignore_errors=True)
                    if made_root:
                        shutil.rmtree(root, ignore_errors=True)
                raise
            store._write()
            for fn in store._after_write:
                fn()
            store._after_write.clear()
            store._append_history(op, details or {})

    def after_write(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (under the lock) once ``annotations.json`` has been replaced by ``Store.edit``."""
        self._after_write.append(fn)

    def recover(self) -> int:
        """Remove what an interrupted import left behind (call only while holding the lock)."""
        from dataforge.store.staging import recover

        return recover(
            str(self.root), str(self.images_dir), lambda: {img["file_name"] for img in self.images}
        )

    @classmethod
    def write_new(cls, root: Path, data: dict[str, Any], *, op: str, details: dict[str, Any]) -> Store:
        """Write a complete dataset as the new store at ``root`` (whose images are already in
        place) and record ``op`` in its history. The caller holds ``StoreLock(root)`` and owns
        ``root``: a job that made the images under it (and, re-run after being killed between
        writing the store and finishing, writes the same store again)."""
        store = cls(root, data)
        store._write()
        store._append_history(op, details)
        return store

    def save(self, op: str = "save", details: dict[str, Any] | None = None) -> None:
        """Write this snapshot back. Fails if another process saved the store since it was opened."""
        with StoreLock(self.root):
            if (self.root / ANNOTATIONS_FILE).exists():
                on_disk = _load(self.root)["dataforge"].get("revision", 0)
                if on_disk != self.revision:
                    raise StoreError(
                        f"{self.root}: the store changed on disk since it was opened "
                        f"(revision {self.revision} here, {on_disk} on disk); nothing was written",
                        hint="re-open the store and apply the change again, or use Store.edit()",
                    )
            self._write()
            self._append_history(op, details or {})

    # -- writing -------------------------------------------------------------------------
    def _write(self) -> None:
        meta = self.data.setdefault("dataforge", {})
        meta["schema_version"] = SCHEMA_VERSION
        meta["revision"] = int(meta.get("revision", 0)) + 1
        meta["dataforge_version"] = __version__
        atomic_write_bytes(self.root / ANNOTATIONS_FILE, dumps(self.data))

    def _append_history(self, op: str, details: dict[str, Any]) -> None:
        entry = {
            "time": utc_now(),
            "op": op,
            "revision": self.revision,
            "user": _user(),
            "host": socket.gethostname(),
            "dataforge": __version__,
            **details,
        }
        with open(self.root / HISTORY_FILE, "ab") as f:
            f.write(dumps(entry) + b"\n")
            f.flush()
            os.fsync(f.fileno())

    def history(self) -> list[dict[str, Any]]:
        path = self.root / HISTORY_FILE
        if not path.exists():
            return []
        import orjson

        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]

    # -- reading -------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return int(self.data.get("dataforge", {}).get("revision", 0))

    @property
    def images_dir(self) -> Path:
        return self.root / IMAGES_DIR

    @property
    def images(self) -> list[dict[str, Any]]:
        return self.data["images"]  # type: ignore[no-any-return,unused-ignore]

    @property
    def annotations(self) -> list[dict[str, Any]]:
        return self.data["annotations"]  # type: ignore[no-any-return,unused-ignore]

    @property
    def categories(self) -> list[Category]:
        return [
            Category(
                int(c["id"]),
                str(c["name"]),
                c.get("supercategory"),
                keypoints=tuple(c.get("keypoints") or ()),
                skeleton=tuple(tuple(e) for e in c.get("skeleton") or ()),
            )
            for c in self.data["categories"]
        ]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def index(self) -> _Index:
        if self._index is None:
            self._index = _Index(self.data)
        return self._index

    def invalidate(self) -> None:
        """Call after changing ``data`` directly, so the index is rebuilt."""
        self._index = None

    # -- changes (inside Store.edit, or before save) ------------------------------------------
    def add_categories(self, categories: Iterable[dict[str, Any]]) -> None:
        self.data["categories"].extend(categories)
        self.invalidate()

    @property
    def licenses(self) -> list[dict[str, Any]]:
        """COCO ``licenses`` (images refer to them by ``license`` id)."""
        return [lic for lic in self.data.get("licenses", []) if isinstance(lic, dict)]

    def add_licenses(self, licenses: Iterable[dict[str, Any]]) -> None:
        """Add COCO license records (ids already assigned)."""
        self.data.setdefault("licenses", []).extend(licenses)

    def add_records(self, images: Iterable[dict[str, Any]], annotations: Iterable[dict[str, Any]]) -> None:
        """Add image and annotation records (ids already assigned, files already in place)."""
        self.images.extend(images)
        self.annotations.extend(annotations)
        self.invalidate()

    def set_annotations(self, annotations: list[dict[str, Any]]) -> None:
        """Replace every annotation record (a pull that rewrites the images it covers)."""
        self.data["annotations"] = annotations
        self.invalidate()

    def set_tool_state(self, tool: str, key: str, value: Any) -> None:
        """What a tool remembers in the store between runs (``dataforge.<tool>.<key>``)."""
        self.data.setdefault("dataforge", {}).setdefault(tool, {})[key] = value

    def append_serialized(self, images: bytes, annotations: bytes) -> None:
        """Append image and annotation records that are already JSON arrays (made by the processes
        that built the records); ``annotations.json`` gets them as they are, without parsing them
        again. Only as the last change of a ``Store.edit`` block: the new records are not dicts
        in this snapshot, so nothing may read its records afterwards."""
        import orjson

        for key, array in (("images", images), ("annotations", annotations)):
            body = array.strip()
            if not (body.startswith(b"[") and body.endswith(b"]")):
                raise ValueError(f"append_serialized: {key} must be a JSON array")
            body = body[1:-1].strip()
            if body:  # the records, comma-separated, written where one list item would go
                self.data[key].append(orjson.Fragment(body))
        self._index = None

    def record(self, img: dict[str, Any]) -> ImageRecord:
        names = self.index.category_names
        anns = tuple(
            annotation_from_coco(a, names.get(a["category_id"], "?"))
            for a in self.index.anns_by_image[img["id"]]
        )
        return image_from_coco(img, self.images_dir, anns)

    def get(self, image_id: int) -> ImageRecord:
        try:
            img = self.index.image_by_id[image_id]
        except KeyError:
            raise DataError(f"{self.root}: no image with id {image_id}") from None
        return self.record(img)

    def __iter__(self) -> Iterator[ImageRecord]:
        return self.iter_images()

    def iter_images(self, where: str | None = None, *, split: str | None = None) -> Iterator[ImageRecord]:
        """Images with their annotations as typed records, optionally filtered (see ``dataforge.query``)."""
        for img in self.select(where, split=split):
            yield self.record(img)

    def select(self, where: str | None = None, *, split: str | None = None) -> list[dict[str, Any]]:
        """The raw image dicts that match a ``--where`` expression and/or split."""
        images: Iterable[dict[str, Any]] = self.images
        if split is not None:
            images = [i for i in images if i.get("split") == split]
        if not where:
            return list(images)
        from dataforge.query import compile_query

        predicate = compile_query(where)
        return [img for img in images if predicate(self.index.context(img))]

    # -- changing ------------------------------------------------------------------------
    def add_tags(self, image_ids: Iterable[int], tags: Iterable[str]) -> int:
        """Add tags to images; returns how many images changed."""
        return self._retag(image_ids, list(tags), add=True)

    def remove_tags(self, image_ids: Iterable[int], tags: Iterable[str]) -> int:
        """Remove tags from images; returns how many images changed."""
        return self._retag(image_ids, list(tags), add=False)

    def _retag(self, image_ids: Iterable[int], tags: list[str], *, add: bool) -> int:
        for t in tags:
            check_tag(t)
        by_id = self.index.image_by_id
        changed = 0
        for iid in image_ids:
            img = by_id[iid]
            current = list(img.get("tags", []))
            new = (
                current + [t for t in tags if t not in current]
                if add
                else [t for t in current if t not in tags]
            )
            if new != current:
                img["tags"] = new
                changed += 1
        return changed

    def set_labels(self, image_id: int, labels: list[int]) -> None:
        """Set an image's image-level category ids (classification labels)."""
        self.index.image_by_id[image_id]["labels"] = list(labels)

    def set_lineage(self, image_id: int, key: str, value: dict[str, Any]) -> None:
        """Record under the image's ``source[key]`` where its annotations came from (a Label Studio task)."""
        self.index.image_by_id[image_id].setdefault("source", {})[key] = value

    def set_splits(self, assignment: dict[int, str | None]) -> None:
        """Set each image's split (``None`` removes it)."""
        by_id = self.index.image_by_id
        for iid, split in assignment.items():
            if split is None:
                by_id[iid].pop("split", None)
            else:
                by_id[iid]["split"] = split


def check_tag(tag: str) -> None:
    if not isinstance(tag, str) or not tag.strip() or tag != tag.strip() or "," in tag:
        raise UsageError(
            f"invalid tag {tag!r}: tags are non-empty strings without commas or surrounding spaces"
        )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry inside some containers
        return str(os.getuid())


def _load(root: Path) -> dict[str, Any]:
    try:
        data = load_json(root / ANNOTATIONS_FILE, what="store annotations file")
    except DataError as exc:
        raise StoreError(
            f"store {root}: {exc.message}", hint="restore annotations.json from a backup"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise StoreError(
            f"{root / ANNOTATIONS_FILE}: not a COCO file (needs lists 'images', 'annotations', 'categories')"
        )
    meta = data.setdefault("dataforge", {"schema_version": SCHEMA_VERSION, "revision": 0})
    if int(meta.get("schema_version", SCHEMA_VERSION)) > SCHEMA_VERSION:
        raise StoreError(
            f"{root}: store schema version {meta['schema_version']} is newer than this dataforge understands "
            f"({SCHEMA_VERSION})",
            hint="upgrade dataforge",
        )
    return data


class _Index:
    """Lookups over the raw COCO dicts, built once per load."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.image_by_id: dict[int, dict[str, Any]] = {img["id"]: img for img in data["images"]}
        self.category_names: dict[int, str] = {c["id"]: c["name"] for c in data["categories"]}
        self.category_ids: dict[str, int] = {c["name"]: c["id"] for c in data["categories"]}
        self.anns_by_image: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
        for ann in data["annotations"]:
            self.anns_by_image[ann["image_id"]].append(ann)

    def context(self, img: dict[str, Any]) -> dict[str, Any]:
        """What a ``--where`` expression sees for one image."""
        anns = self.anns_by_image.get(img["id"], [])
        names = self.category_names
        counts = Counter(names.get(a["category_id"], "?") for a in anns)
        return {
            "id": img["id"],
            "file": img["file_name"],
            "width": img.get("width", 0),
            "height": img.get("height", 0),
            "split": img.get("split"),
            "tags": img.get("tags", []),
            "boxes": len(anns),
            "counts": counts,
            "labels": [names.get(c, "?") for c in img.get("labels", ())],
        }

    def labels_of(self, img_id: int) -> set[int]:
        """The category ids present on an image."""
        return {a["category_id"] for a in self.anns_by_image.get(img_id, [])}
