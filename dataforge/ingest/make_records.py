"""The store records an import makes: shared by the general import and the direct one
(:mod:`dataforge.ingest.direct`), so that both write exactly the same store."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from dataforge.ingest.checks import assign_ids

_NOT_COPIED = ("id", "file_name", "width", "height", "labelstudio")


def plan_categories(
    store_cats: list[dict[str, Any]], cats: dict[int, dict[str, Any]]
) -> tuple[dict[int, int], list[dict[str, Any]], int]:
    """Merge by name, ids kept when free: ({batch id: store id}, categories to add, ids changed)."""
    by_name = {c["name"]: c["id"] for c in store_cats}
    cat_map = {cid: by_name[cat["name"]] for cid, cat in cats.items() if cat["name"] in by_name}
    fresh = [cid for cid in cats if cid not in cat_map]
    fresh_ids, changed = assign_ids(fresh, set(by_name.values()))
    added = []
    for cid, new_id in zip(fresh, fresh_ids, strict=True):
        added.append({**cats[cid], "id": new_id})
        cat_map[cid] = new_id
    return cat_map, added, changed


@dataclass(slots=True)
class ImageRecords:
    """Makes the store's image records of one import (the batch's fields, less private ones and
    the ones the store sets, plus the real size, hash, tags, split and where it came from)."""

    format: str
    source: str
    images_root: str
    now: str
    tags: list[str]
    split: str | None
    cat_map: dict[int, int]
    warnings: list[str]

    def make(
        self,
        img: dict[str, Any],
        iid: int,
        name: str,
        new_id: int,
        final: str,
        width: int,
        height: int,
        sha256: str,
        orientation: int = 1,
    ) -> dict[str, Any]:
        source: dict[str, Any] = {
            "format": self.format,
            "file": self.source,
            "image_id": iid,
            "file_name": img.get("file_name"),
            "imported": self.now,
        }
        if "_src" in img:
            source["path"] = os.path.join(self.images_root, img["_src"])
        if isinstance(img.get("labelstudio"), dict):
            source["labelstudio"] = img["labelstudio"]
        stated = (img.get("width"), img.get("height"))
        if stated != (None, None) and stated != (width, height):
            source["stated_size"] = list(stated)
            self.warnings.append(
                f"image {iid} ({name}): the file says {stated[0]}x{stated[1]}, the image is "
                f"{width}x{height}; using the image's size"
            )
        record = {k: v for k, v in img.items() if k not in _NOT_COPIED and k[:1] != "_"}
        if "labels" in record:
            record["labels"] = [self.cat_map[c] for c in record["labels"]]
        old_tags = record.get("tags")
        if old_tags is None:
            tag_list = self.tags.copy()
        else:
            tag_list = [t for t in old_tags if isinstance(t, str)] if isinstance(old_tags, list) else []
            tag_list += [t for t in self.tags if t not in tag_list]
        record["id"] = new_id
        record["file_name"] = final
        record["width"] = width
        record["height"] = height
        record["sha256"] = sha256
        record["tags"] = tag_list
        if orientation != 1:  # shown rotated or mirrored; the boxes are in the stored pixels' frame
            record["exif_orientation"] = orientation
        else:
            record.pop("exif_orientation", None)
        if self.split is not None:
            record["split"] = self.split
        elif not isinstance(record.get("split"), str):
            record.pop("split", None)
        old_source = record.get("source")
        record["source"] = {**old_source, **source} if isinstance(old_source, dict) else source
        return record


def finish_annotations(
    anns: list[dict[str, Any]],
    new_ids: list[int],
    img_map: dict[int, int] | None,
    cat_map: dict[int, int] | None,
    *,
    private_keys: bool,
) -> None:
    """Give checked annotations their store ids (``img_map``/``cat_map``: None when unchanged) and
    the COCO fields the store always has; private (``_``) keys go."""
    for ann, ann_id in zip(anns, new_ids, strict=True):
        if private_keys:
            for key in [k for k in ann if k.startswith("_")]:
                del ann[key]
        if ann.get("id") != ann_id:
            ann["id"] = ann_id
        if img_map is not None:
            ann["image_id"] = img_map[ann["image_id"]]
        if cat_map is not None:
            ann["category_id"] = cat_map[ann["category_id"]]
        area = ann.get("area")
        if type(area) not in (int, float) or not area >= 0:  # type: ignore[operator]
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
        crowd = ann.get("iscrowd", 0)
        if type(crowd) is not int or crowd not in (0, 1):
            ann["iscrowd"] = 1 if crowd in (1, True, "1") else 0
        if "segmentation" not in ann:
            ann["segmentation"] = []
        elif ann.get("iscrowd") is None:
            ann["iscrowd"] = 0
