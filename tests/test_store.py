"""The store: records, tags, splits, saves, history, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dataforge.api import import_dataset
from dataforge.errors import StoreError, UsageError
from dataforge.store import Store


@pytest.fixture
def store_path(simple_coco: Path, tmp_path: Path) -> Path:
    import_dataset(simple_coco, store=tmp_path / "s")
    return tmp_path / "s"


def test_records_are_typed_with_xyxy_boxes(store_path: Path) -> None:
    recs = list(Store.open(store_path))
    assert [r.id for r in recs] == [1, 2, 3]
    r2 = recs[1]
    assert r2.boxes_xyxy.dtype == np.float64 and r2.boxes_xyxy.shape == (2, 4)
    assert r2.boxes_xyxy.tolist() == [[0, 0, 64, 48], [10.5, 10.25, 14.0, 12.25]]
    assert r2.category_ids.tolist() == [1, 1]
    assert recs[2].boxes_xyxy.shape == (0, 4)


def test_tags_and_splits_through_the_python_api(store_path: Path) -> None:
    with Store.edit(store_path, "tag") as s:
        assert s.add_tags([1, 2], ["review", "night"]) == 2
        assert s.add_tags([1], ["review"]) == 0  # already there
        assert s.remove_tags([2], ["night"]) == 1
        s.set_splits({1: "train", 2: "val", 3: None})
    s = Store.open(store_path)
    assert [(r.id, r.tags, r.split) for r in s] == [
        (1, ("review", "night"), "train"),
        (2, ("review",), "val"),
        (3, (), None),
    ]
    assert [r.id for r in s.iter_images("tag == 'night'")] == [1]
    assert [h["op"] for h in s.history()] == ["import", "tag"]


def test_bad_tags_are_refused(store_path: Path) -> None:
    with pytest.raises(UsageError, match="invalid tag 'a,b'"), Store.edit(store_path, "tag") as s:
        s.add_tags([1], ["a,b"])


def test_save_detects_a_concurrent_change(store_path: Path) -> None:
    a = Store.open(store_path)
    b = Store.open(store_path)
    a.add_tags([1], ["x"])
    a.save("tag")
    b.add_tags([2], ["y"])
    with pytest.raises(
        StoreError, match=r"changed on disk since it was opened \(revision 1 here, 2 on disk\)"
    ):
        b.save("tag")
    assert [r.tags for r in Store.open(store_path)] == [("x",), (), ()]


def test_failed_edit_writes_nothing(store_path: Path) -> None:
    before = (store_path / "annotations.json").read_bytes()
    with pytest.raises(RuntimeError), Store.edit(store_path, "tag") as s:
        s.add_tags([1], ["x"])
        raise RuntimeError("boom")
    assert (store_path / "annotations.json").read_bytes() == before
    assert len(Store.open(store_path).history()) == 1


def test_opening_something_that_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such store"):
        Store.open(tmp_path / "missing")
    (tmp_path / "x").mkdir()
    with pytest.raises(StoreError, match=r"not a dataforge store \(expected annotations.json and images/"):
        Store.open(tmp_path / "x")


def test_a_damaged_annotations_file_is_reported(store_path: Path) -> None:
    (store_path / "annotations.json").write_text('{"images": [')
    with pytest.raises(StoreError, match="malformed JSON at line 1"):
        Store.open(store_path)


def test_a_store_from_a_newer_dataforge_is_refused(store_path: Path) -> None:
    doc = json.loads((store_path / "annotations.json").read_text())
    doc["dataforge"]["schema_version"] = 99
    (store_path / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        Store.open(store_path)


def test_create_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(StoreError, match="not empty"):
        Store.create(tmp_path)
    s = Store.create(tmp_path / "new")
    assert len(s) == 0 and Store.is_store(tmp_path / "new")


def test_store_lock_times_out_with_a_clear_message(store_path: Path) -> None:
    from dataforge.store.lock import StoreLock

    with (
        StoreLock(store_path),
        pytest.raises(StoreError, match=r"locked by another dataforge process \(pid \d+\)"),
    ):
        StoreLock(store_path, timeout_s=0.2).acquire()
