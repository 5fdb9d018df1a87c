"""The direct TFRecord import (``dataforge.ingest.direct``: parse, check and write images in the
parsing processes) makes exactly the store the general import makes, hands anything the error
policy must judge to the general import, and leaves the store as it was when it fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import dataforge.ingest.direct as direct
from dataforge.api import export_dataset, import_dataset, split_store
from dataforge.errors import DataError, ImageError
from dataforge.formats.tfrecord import TfrecordFormat, TfrecordScan
from dataforge.formats.tfrecord.example import encode_example, parse_example
from dataforge.formats.tfrecord.framing import read_records, write_record
from dataforge.ingest import ingest
from dataforge.store import Store
from dataforge.synthetic import make_shapes_dataset
from tests.conftest import file_bytes

N = 120


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TFRecord shards (train/val) of N generated images, with a label map."""
    tmp = tmp_path_factory.mktemp("tf")
    make_shapes_dataset(tmp / "src", n_images=N, size_wh=(40, 30), seed=5)
    import_dataset(tmp / "src" / "instances.json", store=tmp / "s")
    split_store(tmp / "s", ratios={"train": 0.75, "val": 0.25}, seed=1)
    assert len(Store.open(tmp / "s").images) == N
    export_dataset(tmp / "s", format="tfrecord", out=tmp / "tf", shards=2)
    return tmp / "tf"


def _stored(store: Path) -> dict[str, Any]:
    data = json.loads((store / "annotations.json").read_text())
    for img in data["images"]:
        img["source"].pop("imported", None)
    return {k: data[k] for k in ("images", "annotations", "categories")}


def _images(store: Path) -> dict[str, bytes]:
    return {k: v for k, v in file_bytes(store).items() if k.startswith("images/")}


@pytest.fixture
def general_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the times records were gathered into one batch for the general import."""
    calls: list[int] = []
    real = TfrecordScan.batch

    def counted(self: TfrecordScan, parts: Any) -> Any:
        calls.append(1)
        return real(self, parts)

    monkeypatch.setattr(TfrecordScan, "batch", counted)
    return calls


def _general(src: Path, store: Path, **kwargs: Any) -> Any:
    return ingest(store, TfrecordFormat().read(src), **kwargs)


def _colliding(coco_factory: Callable[..., Path]) -> Path:
    """A COCO dataset whose image ids, annotation ids, a file name and a category collide with
    the records'."""
    return coco_factory(
        [(1, "train/000003.jpg", (40, 30)), (2, "other.jpg", (40, 30))],
        [(1, 1, "dog", [1, 1, 5, 5]), (2, 2, "zebra", [2, 2, 5, 5])],
        categories=((1, "dog"), (2, "zebra")),
    )


@pytest.mark.parametrize("case", ["fresh", "collisions", "split-and-tags"])
def test_direct_import_makes_the_store_the_general_import_makes(
    records: Path,
    tmp_path: Path,
    coco_factory: Callable[..., Path],
    general_calls: list[int],
    case: str,
) -> None:
    kwargs: dict[str, Any] = {"split": "val", "tags": ["new", "x"]} if case == "split-and-tags" else {}
    stores = {"direct": tmp_path / "direct", "general": tmp_path / "general"}
    if case == "collisions":
        coco = _colliding(coco_factory)
        for store in stores.values():
            import_dataset(coco, store=store)
    got = import_dataset(records, store=stores["direct"], format="tfrecord", **kwargs)
    assert general_calls == []  # it went the direct way
    want = _general(records, stores["general"], **kwargs)
    assert general_calls == [1]
    assert (got.images, got.annotations) == (want.images, want.annotations) == (N, want.annotations)
    assert got.id_changes == want.id_changes
    assert got.new_categories == want.new_categories
    if case == "collisions":
        assert got.id_changes["images"] > 0 and got.id_changes["annotations"] > 0
        assert "zebra" not in got.new_categories and "dog" not in got.new_categories
    assert _stored(stores["direct"]) == _stored(stores["general"])
    assert _images(stores["direct"]) == _images(stores["general"])
    names = {img["file_name"] for img in Store.open(stores["direct"]).images}
    if case == "collisions":
        assert {"train/000003.jpg", "train/000003~2.jpg"} <= names
    assert Store.open(stores["direct"]).history()[-1]["images"] == N
    assert not list(stores["direct"].glob(".commit-*"))


def _rewrite(shard: Path, edit: Callable[[int, dict[str, Any]], None]) -> None:
    recs = list(read_records(shard.open("rb")))
    out = []
    for i, rec in enumerate(recs):
        ex: dict[str, Any] = {k: list(v) for k, v in parse_example(rec).items()}
        edit(i, ex)
        floats = {k: v for k, v in ex.items() if "bbox" in k}
        ints = {
            k: v for k, v in ex.items() if k in ("image/width", "image/height", "image/object/class/label")
        }
        out.append(
            encode_example({k: v for k, v in ex.items() if k not in floats and k not in ints}, floats, ints)
        )
    with shard.open("wb") as f:
        for r in out:
            write_record(f, r)


def test_a_stated_size_that_differs_is_the_same_warning(
    records: Path, tmp_path: Path, general_calls: list[int]
) -> None:
    src = tmp_path / "tf"
    shutil.copytree(records, src)

    def wrong_width(i: int, ex: dict[str, Any]) -> None:
        if i == 2:
            ex["image/width"] = [41]

    _rewrite(next(src.glob("train.tfrecord-00000-*")), wrong_width)
    got = import_dataset(src, store=tmp_path / "d", format="tfrecord")
    assert general_calls == []
    want = _general(src, tmp_path / "g")
    assert len(got.warnings) == 1 and "the file says 41x30, the image is 40x30" in got.warnings[0]
    assert got.warnings == want.warnings
    assert _stored(tmp_path / "d") == _stored(tmp_path / "g")


def test_two_records_with_one_name_go_to_the_general_import(
    records: Path, tmp_path: Path, general_calls: list[int]
) -> None:
    src = tmp_path / "tf"
    shutil.copytree(records, src)
    shard = next(src.glob("train.tfrecord-00001-*"))
    first = parse_example(next(iter(read_records(next(src.glob("train.tfrecord-00000-*")).open("rb")))))
    same = first["image/filename"][0]

    def same_name(i: int, ex: dict[str, Any]) -> None:
        if i == 0:
            ex["image/filename"] = [same]

    _rewrite(shard, same_name)
    with pytest.raises(DataError, match=r"file_name 'train/.*' is also used by image"):
        import_dataset(src, store=tmp_path / "d", format="tfrecord")
    assert general_calls == [1]
    assert not (tmp_path / "d").exists()  # a failed first import leaves no store
    res = import_dataset(src, store=tmp_path / "d", format="tfrecord", on_error="skip")
    assert res.images == N - 1 and res.skipped_by_reason == {"image: duplicate file_name": 1}


def test_images_already_in_the_store_go_to_the_general_import(
    records: Path, tmp_path: Path, general_calls: list[int]
) -> None:
    store = tmp_path / "s"
    import_dataset(records, store=store, format="tfrecord")
    before = file_bytes(store)
    assert general_calls == []
    res = import_dataset(records, store=store, format="tfrecord", on_error="skip")
    assert general_calls == [1]
    assert res.images == 0 and res.skipped_by_reason["image: already in the store"] == N
    assert _images(store) == {k: v for k, v in before.items() if k.startswith("images/")}


def test_a_box_outside_its_image_is_reported_by_the_general_import(
    records: Path, tmp_path: Path, general_calls: list[int]
) -> None:
    src = tmp_path / "tf"
    shutil.copytree(records, src)

    def outside(i: int, ex: dict[str, Any]) -> None:
        if i == 3 and ex["image/object/bbox/xmax"]:
            ex["image/object/bbox/xmax"][0] = 1.5

    _rewrite(next(src.glob("val.tfrecord-00000-*")), outside)
    with pytest.raises(DataError, match=r"extends outside the 40x30 image"):
        import_dataset(src, store=tmp_path / "d", format="tfrecord")
    assert general_calls == [1]


@pytest.mark.parametrize("failing_call", [1, 70])
def test_a_failed_write_leaves_the_store_as_it_was(
    records: Path,
    tmp_path: Path,
    coco_factory: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    failing_call: int,
) -> None:
    store = tmp_path / "s"
    import_dataset(_colliding(coco_factory), store=store)
    before = file_bytes(store)
    real = direct._Writer.__call__
    calls = []

    def failing(self: Any, emb: Any, final: str, image_id: int) -> None:
        calls.append(final)
        if len(calls) == failing_call:
            raise ImageError(f"image {image_id} ({final}): cannot copy it: No space left on device")
        real(self, emb, final, image_id)

    monkeypatch.setattr(direct._Writer, "__call__", failing)
    with pytest.raises(ImageError, match="No space left on device"):
        import_dataset(records, store=store, format="tfrecord")
    assert len(calls) == failing_call
    assert file_bytes(store) == before  # the images written before it are gone, and the journal


def test_a_container_that_shrank_after_the_scan_is_a_clear_error(records: Path, tmp_path: Path) -> None:
    src = tmp_path / "tf"
    shutil.copytree(records, src)
    scan = TfrecordFormat().scan(src)
    shard = Path(scan.sources[-1][0])
    os.truncate(shard, shard.stat().st_size // 2)
    store = tmp_path / "s"
    with pytest.raises(DataError, match=r"record \d+: truncated|read \d+ of \d+ bytes"):
        direct.ingest_records(store, scan)
    assert not store.exists()


_TWO_STEPS = """
import os
from dataforge.errors import DataError
from dataforge.parallel import map_ranges_in_two_steps
kept = {}
def first(a, b):
    kept[a] = os.getpid()  # state that the second step, in the same process, finds again
    return a, b
def second(a, b, decision):
    return a, b, decision, kept[a] == os.getpid()
def decide(firsts):
    return sum(b - a for a, b in firsts)
decision, out = map_ranges_in_two_steps(first, decide, second, 3000, processes=3)
print(decision, out)
def bad_first(a, b):
    if a:
        raise DataError(f"bad first {a}")
    return a
def bad_second(a, b, d):
    if a:
        raise DataError(f"bad second {a} after {d}")
    return a
for f, s in ((bad_first, second), (first, bad_second)):
    try:
        map_ranges_in_two_steps(f, lambda firsts: "go", s, 2000, processes=2)
    except DataError as exc:
        print(exc)
"""


def test_two_steps_keep_each_range_in_its_process_and_pass_errors_back() -> None:
    out = subprocess.run([sys.executable, "-c", _TWO_STEPS], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[0] == ("3000 [(0, 1000, 3000, True), (1000, 2000, 3000, True), (2000, 3000, 3000, True)]")
    assert lines[1:] == ["bad first 1000", "bad second 1000 after go"]


def test_append_serialized_writes_the_records_as_they_are(tmp_path: Path) -> None:
    with Store.edit(tmp_path / "s", "test", create=True) as store:
        store.data["categories"].append({"id": 1, "name": "cat"})
        store.append_serialized(b'[{"id": 7, "file_name": "a.jpg", "width": 2, "height": 3}]', b"[]")
        with pytest.raises(ValueError, match="must be a JSON array"):
            store.append_serialized(b"{}", b"[]")
    data = json.loads((tmp_path / "s" / "annotations.json").read_text())
    assert data["images"] == [{"id": 7, "file_name": "a.jpg", "width": 2, "height": 3}]
    assert data["annotations"] == []


def test_the_writer_names_a_container_that_changed_and_never_overwrites(tmp_path: Path) -> None:
    from dataforge.formats.base import Embedded

    container = tmp_path / "c.tfrecord"
    container.write_bytes(b"x" * 100)
    (tmp_path / "images").mkdir()
    with direct._Writer(str(tmp_path / "images")) as write:
        write(Embedded(str(container), 10, 20, 1, 1, ""), "sub/a.jpg", 1)
        with pytest.raises(
            DataError, match=r"read 10 of 20 bytes of image 2 \(b\.jpg\); did the file change"
        ):
            write(Embedded(str(container), 90, 20, 1, 1, ""), "b.jpg", 2)
        with pytest.raises(ImageError, match=r"image 3 \(sub/a\.jpg\): cannot copy it .*File exists"):
            write(Embedded(str(container), 0, 20, 1, 1, ""), "sub/a.jpg", 3)
    assert (tmp_path / "images" / "sub" / "a.jpg").read_bytes() == b"x" * 20
    assert not (tmp_path / "images" / "b.jpg").exists()


def test_features_read_only_when_needed_still_name_files_and_unknown_labels(
    records: Path, tmp_path: Path
) -> None:
    """With a label map, ``image/format`` is read only for a record without a file name, and
    ``class/text`` only for a record with a label outside the map."""
    src = tmp_path / "tf"
    shutil.copytree(records, src)

    def edit(i: int, ex: dict[str, Any]) -> None:
        if i == 0:
            ex["image/filename"] = []
            ex["image/source_id"] = [b"src-0"]
            ex["image/format"] = [b"PNG"]
        if i == 1 and ex["image/object/class/label"]:
            ex["image/object/class/label"][0] = 99
            ex["image/object/class/text"][0] = b"unicorn"

    _rewrite(next(src.glob("val.tfrecord-00001-*")), edit)
    res = import_dataset(src, store=tmp_path / "s", format="tfrecord", on_error="skip")
    assert [s.message for s in res.skipped] == [
        "val.tfrecord-00001-of-00002 record 1 object 0: class/label 99 ('unicorn') is not in the label map"
    ]
    assert "val/src-0.png" in {img["file_name"] for img in Store.open(tmp_path / "s").images}
