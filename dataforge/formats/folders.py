"""Class folders (ImageNet layout) for classification: ``root/<class>/<image>``.

An optional split level is recognised when every top-level folder is a split name
(``root/train/<class>/...``). The class is the top-level folder under the split (images in deeper
folders belong to it too); images directly under the root (or split) have no class.

The class is stored as an **image-level label**: the image's ``labels`` field in
``annotations.json`` lists category ids (COCO has no image-level labels; other tools ignore the
field). Query it with ``--where "label == 'cat'"``.

Export writes ``out/[<split>/]<class>/<image>`` (subfolders flattened to ``a__b.jpg``) for images
with exactly one label; images with none or several are counted and not written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ExportResult, ImportBatch
from dataforge.formats.common import copy_store_images, flat_name, is_image, list_images, prepare_out_dir, rel

if TYPE_CHECKING:
    from dataforge.store import Store

SPLITS = frozenset({"train", "val", "valid", "validation", "test"})
#: the category table every export writes beside it (not labels)
CATEGORY_TABLE = "categories.json"
#: files that hold labels in some format (COCO/Label Studio JSON, VOC/CVAT XML, YOLO TXT, CSV, YAML)
LABEL_SUFFIXES = frozenset({".json", ".xml", ".txt", ".csv", ".yaml", ".yml", ".tfrecord", ".record"})


def annotation_files(path: Path, depth: int = 3) -> list[Path]:
    """Label files within ``depth`` levels of ``path`` (sorted): what a folder of images holds
    when it is a dataset of some format rather than class folders."""
    found: list[Path] = []
    level = [path]
    for _ in range(depth):
        nxt = []
        for d in level:
            for p in sorted(d.iterdir()):
                if p.name.startswith("."):
                    continue
                if p.is_dir():
                    nxt.append(p)
                elif p.suffix.lower() in LABEL_SUFFIXES and p.name != CATEGORY_TABLE:
                    found.append(p)
        level = nxt
    return found


class ClassFoldersFormat:
    name: ClassVar[str] = "folders"
    description: ClassVar[str] = (
        "class folders root/[split/]<class>/*.jpg (classification, image-level labels)"
    )
    can_import: ClassVar[bool] = True
    can_export: ClassVar[bool] = True
    image_labels: ClassVar[bool] = True  # image-level labels (see formats.accounting)
    boxes: ClassVar[bool] = False  # it holds no boxes (see formats.accounting)
    generic: ClassVar[bool] = True  # chosen by --format auto only when no other format fits

    def detect(self, path: Path) -> bool:
        if not path.is_dir():
            return False
        entries = list(path.iterdir())
        dirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
        others = [
            p
            for p in entries
            if p.is_file() and not is_image(p) and not p.name.startswith(".") and p.name != CATEGORY_TABLE
        ]
        if not dirs or others or annotation_files(path):
            return False  # a folder with label files is a dataset of another format, never classes
        # some image directly inside a class folder
        return any(is_image(f) for d in dirs for f in d.iterdir()) or any(
            is_image(f) for d in dirs for s in d.iterdir() if s.is_dir() for f in s.iterdir()
        )

    def read(self, path: Path, *, images: Path | None = None, **options: Any) -> ImportBatch:
        if options:
            raise UsageError(f"folders import: unknown options {sorted(options)}")
        if not path.is_dir():
            raise UsageError(f"{path}: class folders import needs a directory")
        tops = [p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        split_roots = (
            [(p.name, p) for p in tops] if tops and all(p.name in SPLITS for p in tops) else [(None, path)]
        )
        cats: dict[str, int] = {}
        imgs: list[dict[str, Any]] = []
        for split, root in split_roots:
            for img_path in list_images(root):
                r = rel(img_path, root)
                label = r.split("/", 1)[0] if "/" in r else None
                record: dict[str, Any] = {
                    "id": len(imgs) + 1,
                    "file_name": rel(img_path, path),
                    "labels": [cats.setdefault(label, len(cats) + 1)] if label else [],
                }
                if split:
                    record["split"] = "val" if split in ("valid", "validation") else split
                imgs.append(record)
        unread = annotation_files(path)
        if unread:
            raise DataError(
                f"{path}: holds label files that class folders do not read ({len(unread)}, e.g. "
                f"{', '.join(rel(p, path) for p in unread[:3])}); the folder names would become the labels",
                source=str(path),
                hint="import it with its own format (--format auto lists what it sees), or move those files away",
            )
        return ImportBatch(
            format=self.name,
            source=str(path.resolve()),
            images_root=path,
            images=imgs,
            annotations=[],
            categories=[{"id": c, "name": n} for n, c in cats.items()],
        )

    def export(
        self, store: Store, out: Path, *, image_ids: list[int], link: bool = False, **options: Any
    ) -> ExportResult:
        if options:
            raise UsageError(f"folders export: unknown options {sorted(options)}")
        prepare_out_dir(out)
        names = store.index.category_names
        wanted = set(image_ids)
        copies: list[tuple[str, str]] = []
        used: dict[str, set[str]] = {}
        unlabeled = multi = 0
        for img in store.images:
            if img["id"] not in wanted:
                continue
            labels = img.get("labels") or []
            if len(labels) != 1:
                unlabeled += not labels
                multi += len(labels) > 1
                continue
            folder = (f"{img['split']}/" if img.get("split") else "") + names[labels[0]]
            flat = flat_name(img["file_name"], used.setdefault(folder, set()))
            copies.append((img["file_name"], f"{folder}/{flat}"))
        copy_store_images(store, out, copies, link=link)
        dropped = {
            k: v
            for k, v in (("images without a label", unlabeled), ("images with several labels", multi))
            if v
        }
        return ExportResult(
            out=out,
            images=len(copies),
            annotations=0,
            dropped=dropped,
            notes=["one folder per class; boxes are not part of this format"],
        )
