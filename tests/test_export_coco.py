"""COCO export: category-id policies, link/copy, filters, and the round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from dataforge.api import export_dataset, import_dataset, split_store
from dataforge.errors import UsageError
from dataforge.store import Store


@pytest.fixture
def store_path(coco_factory, tmp_path: Path) -> Path:
    src = coco_factory(
        [(1, "a.jpg", (40, 30)), (2, "d/b.jpg", (40, 30))],
        [(1, 1, "cat", [1, 2, 3, 4]), (2, 2, "dog", [5, 6, 7, 8])],
        categories=[(3, "cat"), (10, "dog")],
    )
    import_dataset(src, store=tmp_path / "s")
    return tmp_path / "s"


@pytest.mark.parametrize(
    "policy, ids",
    [
        ("keep", {"cat": 3, "dog": 10}),
        ("contiguous-from-1", {"cat": 1, "dog": 2}),
        ("contiguous-from-0", {"cat": 0, "dog": 1}),
    ],
)
def test_category_id_policies_are_applied_and_recorded(
    store_path: Path, tmp_path: Path, policy: str, ids
) -> None:
    res = export_dataset(store_path, format="coco", out=tmp_path / "out", category_ids=policy)
    doc = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert {c["name"]: c["id"] for c in doc["categories"]} == ids
    assert doc["dataforge"]["category_id_policy"] == policy
    assert doc["dataforge"]["category_id_map"] == {"3": ids["cat"], "10": ids["dog"]}
    by_img = {a["image_id"]: a["category_id"] for a in doc["annotations"]}
    assert by_img == {1: ids["cat"], 2: ids["dog"]}
    assert (res.images, res.annotations) == (2, 2)
    assert COCO(str(tmp_path / "out" / "annotations.json")).getCatIds() == sorted(ids.values())
    assert (tmp_path / "out" / "images" / "d" / "b.jpg").read_bytes() == (
        store_path / "images" / "d" / "b.jpg"
    ).read_bytes()


def test_export_then_import_round_trips(store_path: Path, tmp_path: Path) -> None:
    export_dataset(store_path, format="coco", out=tmp_path / "out", category_ids="contiguous-from-1")
    import_dataset(tmp_path / "out" / "annotations.json", store=tmp_path / "s2")
    a, b = Store.open(store_path), Store.open(tmp_path / "s2")
    key = [(r.file_name, r.size_wh, r.sha256, [(x.category, x.bbox_xyxy) for x in r.annotations]) for r in a]
    assert key == [
        (r.file_name, r.size_wh, r.sha256, [(x.category, x.bbox_xyxy) for x in r.annotations]) for r in b
    ]


def test_link_and_filters(store_path: Path, tmp_path: Path) -> None:
    split_store(store_path, ratios={"train": 0.5, "val": 0.5}, seed=0)
    val = [r.id for r in Store.open(store_path) if r.split == "val"]
    res = export_dataset(store_path, format="coco", out=tmp_path / "o1", split="val", link=True)
    doc = json.loads((tmp_path / "o1" / "annotations.json").read_text())
    assert [i["id"] for i in doc["images"]] == val and res.images == 1
    name = doc["images"][0]["file_name"]
    assert (tmp_path / "o1" / "images" / name).stat().st_ino == (store_path / "images" / name).stat().st_ino
    res = export_dataset(store_path, format="coco", out=tmp_path / "o2", where="category == 'dog'")
    assert res.images == 1 and res.annotations == 1


def test_export_refuses_a_non_empty_directory_and_bad_policies(store_path: Path, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UsageError, match="exists and is not empty"):
        export_dataset(store_path, format="coco", out=tmp_path / "full")
    with pytest.raises(UsageError, match="unknown category-id policy 'odd'"):
        export_dataset(store_path, format="coco", out=tmp_path / "o", category_ids="odd")
