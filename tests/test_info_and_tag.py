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


def test_balance_counts_instances_per_class_and_split(tmp_path: Path) -> None:
    """Hand-made: cat has 3 boxes on 2 images (train, test), dog 1 box (train); an image-level
    label counts for classification stores. Imbalance ratio 3/1; the plot is written."""
    import json

    from dataforge.api import import_dataset, info
    from dataforge.info import balance
    from tests.conftest import make_coco

    src = make_coco(
        tmp_path / "src",
        [(1, "a.jpg", (40, 30)), (2, "b.jpg", (40, 30)), (3, "c.jpg", (40, 30))],
        [
            (1, 1, "cat", [1, 1, 5, 5]),
            (2, 1, "cat", [6, 6, 5, 5]),
            (3, 2, "cat", [1, 1, 5, 5]),
            (4, 1, "dog", [10, 10, 5, 5]),
        ],
    )
    doc = json.loads(src.read_text())
    for img, split in zip(doc["images"], ("train", "test", "train"), strict=True):
        img["split"] = split
    src.write_text(json.dumps(doc))
    import_dataset(src, store=tmp_path / "s")
    bal = balance(info(tmp_path / "s"))
    rows = {r["name"]: r for r in bal["categories"]}
    assert (rows["cat"]["instances"], rows["cat"]["images"], rows["cat"]["images_by_split"]) == (
        3,
        2,
        {"train": 1, "test": 1},
    )
    assert (rows["dog"]["instances"], rows["dog"]["images_by_split"]) == (1, {"train": 1})
    assert bal["imbalance_ratio"] == 3.0 and rows["cat"]["share"] == 0.75
    from tests.conftest import run_dataforge

    p = run_dataforge("info", tmp_path / "s", "--balance", "--plot", tmp_path / "b.png")
    assert p.returncode == 0 and "imbalance ratio (commonest / rarest instances): 3.00" in p.stdout
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
