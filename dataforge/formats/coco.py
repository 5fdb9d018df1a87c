"""COCO instances JSON: import (file + images folder) and export (standalone dataset).

Import keeps segmentation (polygons, RLE), ``iscrowd``, ``attributes`` and any unknown fields.
Export writes ``<out>/annotations.json`` and ``<out>/images/`` with an explicit category-id
policy, recorded in the output's ``dataforge`` block:

* ``keep``: the store's ids as they are;
* ``contiguous-from-1``: 1..K in the order of the store's category ids (the COCO convention);
* ``contiguous-from-0``: 0..K-1 in that order (what many training codebases expect).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ExportResult, ImportBatch
from dataforge.formats.common import copy_store_images, prepare_out_dir, problem
from dataforge.jsonio import load_json, write_json
from dataforge.store.store import utc_now

if TYPE_CHECKING:
    from dataforge.store import Store

CATEGORY_ID_POLICIES = ("keep", "contiguous-from-1", "contiguous-from-0")


def category_id_map(category_ids: list[int], policy: str) -> dict[int, int]:
    """Store category id to exported id under ``policy`` (see module docs)."""
    ordered = sorted(category_ids)
    if policy == "keep":
        return {c: c for c in ordered}
    if policy == "contiguous-from-1":
        return {c: i + 1 for i, c in enumerate(ordered)}
    if policy == "contiguous-from-0":
        return {c: i for i, c in enumerate(ordered)}
    raise UsageError(f"unknown category-id policy {policy!r} (choose from {', '.join(CATEGORY_ID_POLICIES)})")


def subset_of(ann_file: Path) -> str:
    """The subset an annotation file names: ``instances_train2017.json`` -> ``train2017``; Roboflow's
    ``train/_annotations.coco.json`` -> ``train`` (its folder)."""
    if ann_file.name == "_annotations.coco.json":
        return ann_file.parent.name
    return ann_file.stem.rsplit("_", 1)[-1]


def split_of(subset: str) -> str | None:
    """A subset name as a store split: train, val (also valid, validation) or test, with a year or
    number after it allowed (``train2017``); None for any other (``default``)."""
    base = subset.lower().rstrip("0123456789").rstrip("_-")
    return {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}.get(base)


def guess_images_root(ann_file: Path, first_file_name: str | None) -> Path:
    """Where ``file_name`` values resolve: the first candidate that holds the first image."""
    here = ann_file.parent
    subset = subset_of(ann_file)
    candidates = [
        here,
        here / "images",
        here.parent / "images" / subset,
        here.parent / subset,
        here.parent / "images",
        here.parent,
    ]
    if first_file_name:
        for c in candidates:
            if (c / first_file_name.replace("\\", "/")).is_file():
                return c
    for c in candidates[1:]:
        if c.is_dir():
            return c
    return here


class CocoFormat:
    name: ClassVar[str] = "coco"
    description: ClassVar[str] = (
        "COCO instances JSON (file + images folder); export with a category-id policy"
    )
    can_import: ClassVar[bool] = True
    can_export: ClassVar[bool] = True
    image_labels: ClassVar[bool] = True  # image-level labels (see formats.accounting)
    #: the label types beyond boxes it holds (an export counts the others as dropped)
    carries: ClassVar[frozenset[str]] = frozenset({"masks", "keypoints", "semantic"})

    def detect(self, path: Path) -> bool:
        if path.is_file():
            if path.suffix.lower() != ".json":
                return False
            with open(path, "rb") as f:
                head = f.read(4096)
            return (
                head.lstrip()[:1] == b"{"
                and b'"dataforge_categories"' not in head
                and (
                    b'"images"' in head
                    or b'"annotations"' in head
                    or b'"categories"' in head
                    or b'"info"' in head
                )
            )
        return path.is_dir() and bool(self.annotation_files(path))

    def annotation_files(self, folder: Path) -> list[Path]:
        """The COCO files of a dataset folder, where the tools that write them put them:
        ``annotations/*.json`` (the COCO download, CVAT's ``instances_default.json``, Datumaro's
        ``instances_<subset>.json``), ``*.json`` at the top, Roboflow's
        ``<split>/_annotations.coco.json``."""
        found = [
            *sorted(folder.glob("annotations/*.json")),
            *sorted(folder.glob("*.json")),
            *sorted(folder.glob("*/_annotations.coco.json")),
        ]
        return [p for p in dict.fromkeys(found) if p.is_file() and self.detect(p)]

    def read(
        self, path: Path, *, images: Path | None = None, masks: Any = "true", **options: Any
    ) -> ImportBatch:
        if options:
            raise UsageError(f"coco import: unknown options {sorted(options)} (known: masks)")
        if str(masks).lower() not in ("true", "false"):
            raise UsageError(f"coco import: masks must be true or false, not {masks!r}")
        if path.is_dir():
            return self._read_folder(path, images, masks)
        data = load_json(path, what="COCO annotation file")
        if not isinstance(data, dict):
            raise DataError(
                f"{path}: expected a JSON object with 'images', 'annotations' and 'categories', "
                f"found a {type(data).__name__}",
                source=str(path),
            )
        for key in ("images", "categories"):
            if not isinstance(data.get(key), list):
                raise DataError(
                    f"{path}: '{key}' must be a list (found {type(data.get(key)).__name__})",
                    source=str(path),
                    hint="is this a COCO instances file?",
                )
        anns = data.get("annotations", [])
        if not isinstance(anns, list):
            raise DataError(
                f"{path}: 'annotations' must be a list (found {type(anns).__name__})", source=str(path)
            )
        panoptic = bool(anns) and isinstance(anns[0], dict) and "segments_info" in anns[0]
        if panoptic:
            anns = panoptic_to_instances(anns, path)
            if str(masks).lower() == "true":
                read_panoptic_masks(path, data["images"], anns, data["categories"])
        elif str(masks).lower() == "false":
            raise UsageError("coco import: masks=false applies to panoptic files (their PNG segment maps)")
        imgs = data["images"]
        first = imgs[0].get("file_name") if imgs and isinstance(imgs[0], dict) else None
        root = (
            images
            if images is not None
            else guess_images_root(path, first if isinstance(first, str) else None)
        )
        warnings = keypoint_layouts(data["categories"], anns)
        info: dict[str, Any] = data["info"] if isinstance(data.get("info"), dict) else {}
        licenses: list[dict[str, Any]] = data["licenses"] if isinstance(data.get("licenses"), list) else []
        return ImportBatch(
            format=self.name,
            source=str(path.resolve()),
            images_root=Path(root),
            images=imgs,
            annotations=anns,
            categories=data["categories"],
            info=info,
            licenses=licenses,
            warnings=warnings,
            private_keys=panoptic,
        )

    def _read_folder(self, folder: Path, images: Path | None, masks: Any) -> ImportBatch:
        """Every COCO file of a dataset folder, one subset each, as one batch: images and
        annotations renumbered apart, file names relative to the images' common folder, each
        image's split from its subset's name (train, val, test) where it is one."""
        files = self.annotation_files(folder)
        if not files:
            raise DataError(
                f"{folder}: no COCO annotation file in annotations/, at the top, or in <split>/ "
                "(Roboflow's _annotations.coco.json)",
                source=str(folder),
                hint="pass the annotation file itself",
            )
        by_subset: dict[str, list[Path]] = {}
        for f in files:
            by_subset.setdefault(subset_of(f), []).append(f)
        several = {k: v for k, v in by_subset.items() if len(v) > 1}
        if several:
            subset, paths = next(iter(several.items()))
            raise DataError(
                f"{folder}: {len(paths)} annotation files for subset {subset!r} "
                f"({', '.join(p.name for p in paths)}): they would import its images twice",
                source=str(folder),
                hint="import one of them: pass the file itself",
            )
        batches: list[tuple[Path, ImportBatch]] = []
        warnings = [
            f"{folder}: read {len(files)} COCO files: {', '.join(str(f.relative_to(folder)) for f in files)}"
        ]
        for f in files:
            root = (
                images / subset_of(f) if images is not None and (images / subset_of(f)).is_dir() else images
            )
            batch = self.read(f, images=root, masks=masks)
            batches.append((f, batch))
            warnings += batch.warnings
        if len(batches) == 1:
            batch = batches[0][1]
            batch.warnings = warnings
            return batch
        import os

        common = Path(os.path.commonpath([str(b.images_root.resolve()) for _, b in batches]))
        cats: dict[Any, dict[str, Any]] = {}
        out_imgs: list[dict[str, Any]] = []
        out_anns: list[dict[str, Any]] = []
        for f, batch in batches:
            for c in batch.categories:
                known = cats.setdefault(c.get("id"), c)
                if known.get("name") != c.get("name"):
                    raise DataError(
                        f"{folder}: category id {c.get('id')} is {known.get('name')!r} in one file and "
                        f"{c.get('name')!r} in {f.name}",
                        source=str(f),
                        hint="import the files one at a time into stores of their own",
                    )
            prefix = os.path.relpath(batch.images_root.resolve(), common).replace(os.sep, "/")
            split = split_of(subset_of(f))
            ids: dict[Any, int] = {}
            for img in batch.images:
                if not isinstance(img, dict):
                    continue
                ids[img.get("id")] = len(out_imgs) + 1
                new = {**img, "id": len(out_imgs) + 1}
                name = img.get("file_name")
                if isinstance(name, str) and prefix != ".":
                    new["file_name"] = f"{prefix}/{name}"
                if split and "split" not in img:
                    new["split"] = split
                out_imgs.append(new)
            for a in batch.annotations:
                if isinstance(a, dict):
                    out_anns.append(
                        {**a, "id": len(out_anns) + 1, "image_id": ids.get(a.get("image_id"), -1)}
                    )
        return ImportBatch(
            format=self.name,
            source=str(folder.resolve()),
            images_root=common,
            images=out_imgs,
            annotations=out_anns,
            categories=list(cats.values()),
            info=batches[0][1].info,
            licenses=batches[0][1].licenses,
            warnings=warnings,
            private_keys=any(b.private_keys for _, b in batches),
        )

    def export(
        self,
        store: Store,
        out: Path,
        *,
        image_ids: list[int],
        category_ids: str = "keep",
        link: bool = False,
        **options: Any,
    ) -> ExportResult:
        if options:
            raise UsageError(f"coco export: unknown options {sorted(options)}")
        cmap = category_id_map([c["id"] for c in store.data["categories"]], category_ids)
        prepare_out_dir(out)
        wanted = set(image_ids)
        images = [copy.deepcopy(img) for img in store.images if img["id"] in wanted]
        anns = []
        for a in store.annotations:
            if a["image_id"] in wanted:
                a = copy.deepcopy(a)
                a["category_id"] = cmap[a["category_id"]]
                anns.append(a)
        cats = [{**copy.deepcopy(c), "id": cmap[c["id"]]} for c in store.data["categories"]]
        cats.sort(key=lambda c: c["id"])
        copy_store_images(
            store, out, [(img["file_name"], f"images/{img['file_name']}") for img in images], link=link
        )
        doc = {
            "info": {**store.data.get("info", {}), "date_created": utc_now()},
            "licenses": store.data.get("licenses", []),
            "images": images,
            "annotations": anns,
            "categories": cats,
            "dataforge": {
                "exported_from": str(store.root.resolve()),
                "store_revision": store.revision,
                "category_id_policy": category_ids,
                "category_id_map": {str(k): v for k, v in cmap.items()},
            },
        }
        ann_path = out / "annotations.json"
        write_json(ann_path, doc, indent=False)
        return ExportResult(
            out=out,
            images=len(images),
            annotations=len(anns),
            files=[ann_path],
            notes=[f"category ids: {category_ids}"],
            category_ids=dict(cmap),
        )


def keypoint_layouts(categories: list[Any], anns: list[Any]) -> list[str]:
    """Keypoint categories as other tools write them, made COCO's (in place), each change said.

    Datumaro writes ``"keypoints": []`` (no point names) with a 0-based ``skeleton`` and 3-number
    points on the annotations: the points are named ``"1"``..``"K"`` (K from the annotations, which
    must agree) and the skeleton moved to COCO's 1-based indices. A category with an empty names
    list and no annotation with points keeps no ``keypoints``/``skeleton``.
    """
    counts: dict[Any, set[int]] = {}
    for a in anns:
        if isinstance(a, dict) and isinstance(a.get("keypoints"), list) and a["keypoints"]:
            counts.setdefault(a.get("category_id"), set()).add(len(a["keypoints"]) // 3)
    warnings = []
    for c in categories:
        if not isinstance(c, dict) or "keypoints" not in c:
            continue
        name, names, skeleton = c.get("name"), c.get("keypoints"), c.get("skeleton")
        if names == []:
            k = counts.get(c.get("id"), set())
            if not k:
                c.pop("keypoints")
                c.pop("skeleton", None)
                warnings.append(
                    f"category {name!r}: empty keypoints list and no annotation with points; dropped"
                )
                continue
            if len(k) == 1:
                (n,) = k
                c["keypoints"] = names = [str(i + 1) for i in range(n)]
                warnings.append(
                    f"category {name!r} names no keypoints; its annotations have {n}: named them 1..{n}"
                )
        if (
            isinstance(names, list)
            and names
            and isinstance(skeleton, list)
            and skeleton
            and all(isinstance(e, list) and len(e) == 2 and all(type(v) is int for v in e) for e in skeleton)
            and min(min(e) for e in skeleton) == 0
            and max(max(e) for e in skeleton) < len(names)
        ):
            c["skeleton"] = [[e[0] + 1, e[1] + 1] for e in skeleton]
            warnings.append(
                f"category {name!r}: its skeleton counts points from 0; stored from 1, as COCO does"
            )
    return warnings


def panoptic_to_instances(anns: list[Any], path: Path) -> list[dict[str, Any]]:
    """COCO panoptic: one annotation per segment (its bbox, category, area, iscrowd), the PNG's
    file name and the segment id kept in ``attributes``; :func:`read_panoptic_masks` adds the masks."""
    out: list[dict[str, Any]] = []
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict) or not isinstance(ann.get("segments_info"), list):
            raise DataError(f"{path}: panoptic annotation #{i} has no 'segments_info' list", source=str(path))
        for seg in ann["segments_info"]:
            if not isinstance(seg, dict):
                raise DataError(
                    f"{path}: panoptic annotation #{i}: a segment is not an object", source=str(path)
                )
            extra = {
                k: v for k, v in seg.items() if k not in ("id", "category_id", "bbox", "area", "iscrowd")
            }
            out.append(
                {
                    "id": seg.get("id"),
                    "image_id": ann.get("image_id"),
                    "category_id": seg.get("category_id"),
                    "bbox": seg.get("bbox"),
                    "area": seg.get("area"),
                    "iscrowd": seg.get("iscrowd", 0),
                    "segmentation": [],
                    **extra,
                    "attributes": {
                        "panoptic_segment_id": seg.get("id"),
                        "panoptic_png": ann.get("file_name"),
                    },
                }
            )
    return out


def read_panoptic_masks(
    path: Path, images: list[Any], anns: list[dict[str, Any]], categories: list[Any]
) -> None:
    """Each segment's mask from its PNG segment map (``annotations/<json stem>/<file_name>``, ids as
    ``R + 256 G + 256^2 B``) as COCO RLE; segments of ``isthing: 0`` categories are semantic
    regions ("stuff"). A PNG that is missing, unreadable, unsafely named or not its image's size
    puts a ``_problem`` on the image; a segment that is not in the map, on the annotation."""
    import numpy as np
    from PIL import Image

    from dataforge.ingest.checks import safe_relative_name
    from dataforge.masks import encode_all

    folder = path.parent / path.stem
    stuff = {c.get("id") for c in categories if isinstance(c, dict) and c.get("isthing") == 0}
    image_of = {img.get("id"): img for img in images if isinstance(img, dict)}
    by_png: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for a in anns:
        by_png.setdefault((a["image_id"], a["attributes"]["panoptic_png"]), []).append(a)
    for (image_id, png_name), segs in by_png.items():
        img = image_of.get(image_id)
        if img is None:
            continue  # the import reports annotations of a missing image
        name = safe_relative_name(png_name)
        where = f"{folder.name}/{png_name}"
        if name is None:
            img["_problem"] = problem(
                "bad mask",
                f"{path.name}: image {image_id}: PNG name {png_name!r} is not a relative file name",
            )
            continue
        try:
            with Image.open(folder / name) as im:
                rgb = np.asarray(im.convert("RGB")).astype(np.int64)
        except (OSError, ValueError) as exc:
            img["_problem"] = problem("bad mask", f"{where}: cannot read the segment map ({exc})")
            continue
        h, w = rgb.shape[:2]
        if [img.get("width"), img.get("height")] != [w, h]:
            img["_problem"] = problem(
                "mask size differs from image",
                f"{where}: the segment map is {w}x{h} but image {image_id} is "
                f"{img.get('width')}x{img.get('height')}",
            )
            continue
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        seg_ids = [a["attributes"]["panoptic_segment_id"] for a in segs]
        stack = np.stack([ids == (v if type(v) is int else -1) for v in seg_ids])  # -1: in no map
        rles, areas = encode_all(stack)
        for a, seg_id, rle, area in zip(segs, seg_ids, rles, areas, strict=True):
            a["_where"] = f"{where} segment {seg_id!r}"
            if area == 0:
                a["_problem"] = problem(
                    "bad segmentation", f"{a['_where']}: the segment has no pixels in the map"
                )
                continue
            a["segmentation"], a["area"] = rle, area
            if a.get("category_id") in stuff:
                a["semantic"] = True
