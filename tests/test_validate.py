"""validate: each error and warning it promises, and its exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataforge.api import import_dataset, validate


@pytest.fixture
def store_path(simple_coco: Path, tmp_path: Path) -> Path:
    import_dataset(simple_coco, store=tmp_path / "s")
    return tmp_path / "s"


def _edit(store: Path, fn) -> None:
    p = store / "annotations.json"
    doc = json.loads(p.read_text())
    fn(doc)
    p.write_text(json.dumps(doc))


def test_a_clean_store_is_ok(store_path: Path, cli) -> None:
    rep = validate(store_path)
    assert rep.ok and [f.code for f in rep.findings] == []
    r = cli("validate", store_path, "--json")
    assert r.code == 0 and r.json()["ok"] is True


@pytest.mark.parametrize(
    "mutate, code, text",
    [
        (
            lambda d: d["annotations"][0].update(bbox=[60, 40, 10, 10]),
            "box-out-of-bounds",
            "extends outside the 64x48 image",
        ),
        (lambda d: d["annotations"][0].update(bbox=[1, 1, 0, 3]), "degenerate-box", "zero or negative size"),
        (lambda d: d["annotations"][0].update(image_id=77), "dangling-image-id", "refers to image_id 77"),
        (
            lambda d: d["annotations"][0].update(category_id=9),
            "dangling-category-id",
            "refers to category_id 9",
        ),
        (
            lambda d: d["annotations"].append(dict(d["annotations"][0])),
            "duplicate-annotation-id",
            "annotation id 1 is used by 2",
        ),
        (
            lambda d: d["images"][0].update(width=10),
            "size-mismatch",
            "the store says 10x48, the file is 64x48",
        ),
        (
            lambda d: d["images"][0].update(file_name="../x.jpg"),
            "unsafe-file-name",
            "not a clean relative path",
        ),
    ],
)
def test_errors(store_path: Path, cli, mutate, code: str, text: str) -> None:
    _edit(store_path, mutate)
    rep = validate(store_path)
    assert not rep.ok
    assert any(f.code == code and text in f.message for f in rep.errors), rep.findings
    r = cli("validate", store_path)
    assert r.code == 1 and f"[{code}]" in r.out


def test_missing_corrupt_and_changed_images_are_errors(store_path: Path) -> None:
    (store_path / "images" / "a.jpg").unlink()
    (store_path / "images" / "b.jpg").write_bytes((store_path / "images" / "b.jpg").read_bytes()[:200])
    codes = {f.code: f.message for f in validate(store_path).errors}
    assert "images/a.jpg is missing" in codes["missing-image"]
    assert "corrupt or truncated" in codes["corrupt-image"]


def test_a_changed_image_is_an_error(store_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (64, 48), (1, 2, 3)).save(store_path / "images" / "a.jpg")
    assert [f.code for f in validate(store_path).errors] == ["image-changed"]


def test_warnings_unused_category_duplicates_leakage_and_stray_files(store_path: Path) -> None:
    def mutate(d):
        d["categories"].append({"id": 5, "name": "unused"})
        d["images"][1]["sha256"] = d["images"][0]["sha256"]  # pretend b is a copy of a
        d["images"][0]["split"], d["images"][1]["split"] = "train", "val"

    _edit(store_path, mutate)
    (store_path / "images" / "stray.jpg").write_bytes(b"x")
    rep = validate(store_path, check_files=False)
    codes = [f.code for f in rep.warnings]
    assert "unused-category" in codes and "split-leakage" in codes
    assert any(
        "images [1, 2] are the same file (sha256) but sit in different splits (train, val)" in f.message
        for f in rep.warnings
    )
    rep = validate(store_path)
    assert any(f.code == "stray-file" and "images/stray.jpg" in f.message for f in rep.warnings)


def test_exact_duplicates_in_one_split_are_a_warning(store_path: Path) -> None:
    _edit(store_path, lambda d: d["images"][1].update(sha256=d["images"][0]["sha256"]))
    rep = validate(store_path, check_files=False)
    assert rep.ok and [f.code for f in rep.warnings] == ["duplicate-image"]
