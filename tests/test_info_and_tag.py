"""info's numbers on a known store, and tag's selection and error paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataforge.api import import_dataset, info, split_store, tag_images
from dataforge.errors import UsageError


@pytest.fixture
def store_path(simple_coco: Path, tmp_path: Path) -> Path:
    import_dataset(simple_coco, store=tmp_path / "s")
    return tmp_path / "s"


def test_info_counts_per_split_and_category(store_path: Path) -> None:
    with pytest.raises(UsageError, match="no splits given"):
        split_store(store_path, ratios={})
    from dataforge.store import Store

    with Store.edit(store_path, "split") as s:
        s.set_splits({1: "train", 2: "val"})
    d = info(store_path)
    assert (d["images"], d["annotations"], d["images_without_annotations"]) == (3, 4, 1)
    assert d["splits"] == {
        "train": {"images": 1, "boxes": 2},
        "val": {"images": 1, "boxes": 2},
        "(none)": {"images": 1, "boxes": 0},
    }
    cats = {c["name"]: c for c in d["categories"]}
    assert (cats["cat"]["images"], cats["cat"]["boxes"]) == (2, 3)
    assert cats["cat"]["boxes_by_split"] == {"train": 1, "val": 2}
    assert (cats["dog"]["images"], cats["dog"]["boxes"]) == (1, 1)
    # box widths 10, 20, 64, 3.5 and heights 20, 10, 48, 2
    assert d["box_sizes"]["width"]["min"] == 3.5 and d["box_sizes"]["width"]["max"] == 64
    assert d["box_sizes"]["height"]["median"] == 15
    assert d["box_sizes"]["coco_area_buckets"] == {"small": 3, "medium": 1, "large": 0}  # 200, 200, 7; 3072
    assert info(store_path, where="category == 'dog'")["images"] == 1


def test_tag_by_ids_and_where_together(store_path: Path) -> None:
    res = tag_images(store_path, add=["x"], where="category == 'cat'", ids=[2, 3])
    assert (res.matched, res.changed) == (1, 1)  # image 3 has no cat
    res = tag_images(store_path, remove=["x"])
    assert (res.matched, res.changed) == (3, 1)


def test_tag_errors(store_path: Path) -> None:
    with pytest.raises(UsageError, match="nothing to do"):
        tag_images(store_path)
    with pytest.raises(UsageError, match=r"no images with ids \[99\]"):
        tag_images(store_path, add=["x"], ids=[1, 99])
    with pytest.raises(UsageError, match="invalid tag ' x'"):
        tag_images(store_path, add=[" x"])
