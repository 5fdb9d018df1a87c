"""COCO import: the happy path, merging, and every kind of real-world mess (fail and skip)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from dataforge.api import import_dataset
from dataforge.errors import DataError, ImageError, UsageError
from dataforge.store import Store
from tests.conftest import file_bytes


def test_import_creates_a_valid_coco_store(simple_coco: Path, tmp_path: Path) -> None:
    res = import_dataset(simple_coco, store=tmp_path / "s", format="coco")
    assert (res.images, res.annotations) == (3, 4)
    store = Store.open(tmp_path / "s")
    coco = COCO(str(tmp_path / "s" / "annotations.json"))  # pycocotools loads the store itself
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert len(coco.getAnnIds()) == 4
    rec = store.get(1)
    assert rec.size_wh == (64, 48)
    assert rec.path.read_bytes() == (simple_coco.parent / "images" / "a.jpg").read_bytes()
    assert [a.category for a in rec.annotations] == ["cat", "dog"]
    assert rec.boxes_xyxy.tolist() == [[1, 2, 11, 22], [5, 5, 25, 15]]
    assert len(rec.sha256 or "") == 64
    assert rec.source["format"] == "coco" and rec.source["image_id"] == 1
    assert store.get(3).file_name == "sub/c.jpg" and store.get(3).annotations == ()
    assert [h["op"] for h in store.history()] == ["import"]


def test_width_and_height_come_from_the_image_not_the_file(coco_factory, tmp_path: Path) -> None:
    src = coco_factory([(1, "a.jpg", (40, 30))], [])
    doc = json.loads(src.read_text())
    doc["images"][0].update(width=400, height=300)
    src.write_text(json.dumps(doc))
    res = import_dataset(src, store=tmp_path / "s")
    img = Store.open(tmp_path / "s").get(1)
    assert img.size_wh == (40, 30)
    assert img.source["stated_size"] == [400, 300]
    assert "the file says 400x300, the image is 40x30" in res.warnings[0]


def test_keeps_segmentation_iscrowd_attributes_and_unknown_fields(coco_factory, tmp_path: Path) -> None:
    src = coco_factory([(7, "a.jpg", (10, 10))], [])
    doc = json.loads(src.read_text())
    doc["images"][0]["my_field"] = {"camera": "x"}
    doc["categories"][0]["keypoints"] = ["nose"]
    doc["annotations"] = [
        {
            "id": 3,
            "image_id": 7,
            "category_id": 1,
            "bbox": [0, 0, 2, 2],
            "area": 4,
            "iscrowd": 0,
            "segmentation": [[0, 0, 2, 0, 2, 2]],
            "attributes": {"occluded": True},
            "score_hint": 0.5,
        },
        {
            "id": 4,
            "image_id": 7,
            "category_id": 2,
            "bbox": [0, 0, 2, 10],
            "area": 20,
            "iscrowd": 1,
            "segmentation": {"counts": [0, 20, 80], "size": [10, 10]},
        },
    ]
    src.write_text(json.dumps(doc))
    import_dataset(src, store=tmp_path / "s")
    data = json.loads((tmp_path / "s" / "annotations.json").read_text())
    a3, a4 = sorted(data["annotations"], key=lambda a: a["id"])
    assert a3["segmentation"] == [[0, 0, 2, 0, 2, 2]] and a3["attributes"] == {"occluded": True}
    assert a3["score_hint"] == 0.5
    assert a4["iscrowd"] == 1 and a4["segmentation"] == {"counts": [0, 20, 80], "size": [10, 10]}
    assert data["images"][0]["my_field"] == {"camera": "x"}
    assert data["categories"][0]["keypoints"] == ["nose"]
    rec = Store.open(tmp_path / "s").get(7)
    assert rec.annotations[0].extra["attributes"] == {"occluded": True}


def test_non_contiguous_and_zero_based_category_ids_are_kept(coco_factory, tmp_path: Path) -> None:
    src = coco_factory(
        [(1, "a.jpg", (20, 20))],
        [(1, 1, "cat", [0, 0, 5, 5]), (2, 1, "dog", [1, 1, 5, 5])],
        categories=[(0, "cat"), (7, "dog")],
    )
    import_dataset(src, store=tmp_path / "s")
    store = Store.open(tmp_path / "s")
    assert [(c.id, c.name) for c in store.categories] == [(0, "cat"), (7, "dog")]
    assert store.get(1).category_ids.tolist() == [0, 7]


def test_merge_into_existing_store_matches_categories_by_name(coco_factory, tmp_path: Path) -> None:
    first = coco_factory([(1, "a.jpg", (20, 20))], [(1, 1, "cat", [0, 0, 5, 5])], categories=[(1, "cat")])
    second = coco_factory(
        [(1, "a.jpg", (30, 30)), (9, "b.jpg", (30, 30))],
        [(1, 1, "dog", [0, 0, 5, 5]), (2, 9, "cat", [1, 1, 5, 5])],
        categories=[(1, "dog"), (2, "cat")],
    )
    import_dataset(first, store=tmp_path / "s", split="train")
    res = import_dataset(second, store=tmp_path / "s", split="val")
    store = Store.open(tmp_path / "s")
    assert {c.name: c.id for c in store.categories} == {"cat": 1, "dog": 2}  # dog's id 1 was taken
    assert res.new_categories == ["dog"]
    assert res.id_changes == {"images": 1, "annotations": 1, "categories": 1}
    # image 1 of the second file collides; it gets max+1 = 10 after 9 kept its id
    assert [(r.id, r.file_name, r.split) for r in store] == [
        (1, "a.jpg", "train"),
        (10, "a~2.jpg", "val"),
        (9, "b.jpg", "val"),
    ]
    moved = store.get(10)
    assert moved.source["image_id"] == 1 and moved.source["file_name"] == "a.jpg"
    assert [(a.category, a.bbox_xyxy) for a in moved.annotations] == [("dog", (0, 0, 5, 5))]
    assert [a.category for a in store.get(9).annotations] == ["cat"]
    assert sorted(a["id"] for a in store.annotations) == [1, 2, 3]


def test_importing_the_same_file_twice_is_refused(simple_coco: Path, tmp_path: Path) -> None:
    import_dataset(simple_coco, store=tmp_path / "s")
    before = file_bytes(tmp_path / "s")
    with pytest.raises(DataError, match=r"image 1 \(a.jpg\) is already in the store as image 1"):
        import_dataset(simple_coco, store=tmp_path / "s")
    assert file_bytes(tmp_path / "s") == before


def test_annotation_id_zero_is_reassigned(coco_factory, tmp_path: Path) -> None:
    src = coco_factory([(1, "a.jpg", (20, 20))], [(0, 1, "cat", [0, 0, 5, 5]), (1, 1, "cat", [1, 1, 5, 5])])
    res = import_dataset(src, store=tmp_path / "s")
    assert sorted(a["id"] for a in Store.open(tmp_path / "s").annotations) == [1, 2]
    assert res.id_changes["annotations"] == 1


# -- mess: each case fails with a clear message and leaves the store untouched, or is skipped ------
def _existing_store(tmp_path: Path, coco_factory) -> Path:
    base = coco_factory([(100, "base.jpg", (20, 20))], [(100, 100, "cat", [0, 0, 5, 5])])
    import_dataset(base, store=tmp_path / "s")
    return tmp_path / "s"


def _corrupt(src: Path, mutate) -> Path:
    doc = json.loads(src.read_text())
    mutate(doc, src.parent)
    src.write_text(json.dumps(doc))
    return src


MESS = {
    "missing image file": (
        lambda d, root: (root / "images" / "b.jpg").unlink(),
        ImageError,
        r"image 2: file 'b.jpg' is listed but missing on disk",
        "image: missing file",
        1,
    ),
    "truncated jpeg": (
        lambda d, root: (root / "images" / "b.jpg").write_bytes(
            (root / "images" / "b.jpg").read_bytes()[:300]
        ),
        ImageError,
        r"image 2 \(b.jpg\): corrupt or truncated image",
        "image: corrupt or truncated image",
        1,
    ),
    "not an image": (
        lambda d, root: (root / "images" / "b.jpg").write_bytes(b"<html>404</html>"),
        ImageError,
        r"image 2 \(b.jpg\): not an image file",
        "image: unreadable image",
        1,
    ),
    "annotation to missing image": (
        lambda d, root: d["annotations"][0].update(image_id=99),
        DataError,
        r"annotation 1 refers to image_id 99, which is not in 'images'",
        "annotation: missing image",
        0,
    ),
    "annotation to missing category": (
        lambda d, root: d["annotations"][0].update(category_id=42),
        DataError,
        r"annotation 1 \(image 1\) refers to category_id 42",
        "annotation: unknown category",
        0,
    ),
    "duplicate image id": (
        lambda d, root: d["images"].append({**d["images"][0], "file_name": "b.jpg"}),
        DataError,
        r"image id 1 appears twice",
        "image: duplicate id",
        0,
    ),
    "duplicate annotation id": (
        lambda d, root: d["annotations"].append(dict(d["annotations"][0])),
        DataError,
        r"annotation id 1 appears twice",
        "annotation: duplicate id",
        0,
    ),
    "duplicate category id": (
        lambda d, root: d["categories"].append({"id": 1, "name": "cow"}),
        DataError,
        r"category id 1 appears twice \('cat' and 'cow'\)",
        "category: duplicate id",
        0,
    ),
    "zero-size box": (
        lambda d, root: d["annotations"][0].update(bbox=[1, 1, 0, 5]),
        DataError,
        r"annotation 1 \(image 1\): box \[1, 1, 0, 5\] has zero or negative",
        "annotation: zero or negative size box",
        0,
    ),
    "negative-size box": (
        lambda d, root: d["annotations"][0].update(bbox=[1, 1, 5, -2]),
        DataError,
        r"zero or negative width/height",
        "annotation: zero or negative size box",
        0,
    ),
    "box outside image": (
        lambda d, root: d["annotations"][0].update(bbox=[30, 30, 20, 20]),
        DataError,
        r"annotation 1 \(image 1\): box xywh \[30, 30, 20, 20\] extends outside the 40x40 image",
        "annotation: box outside the image",
        0,
    ),
    "bbox not numbers": (
        lambda d, root: d["annotations"][0].update(bbox=[1, "a", 2, None]),
        DataError,
        r"bbox must be \[x, y, width, height\] numbers",
        "annotation: bad bbox",
        0,
    ),
    "absolute file_name": (
        lambda d, root: d["images"][1].update(file_name=str(root / "images" / "b.jpg")),
        DataError,
        r"image 2: file_name '/.*' must be a relative path",
        "image: unsafe file_name",
        1,
    ),
    "dot-dot file_name": (
        lambda d, root: d["images"][1].update(file_name="../secret.jpg"),
        DataError,
        r"image 2: file_name '../secret.jpg' must be a relative path",
        "image: unsafe file_name",
        1,
    ),
    "windows dot-dot file_name": (
        lambda d, root: d["images"][1].update(file_name="x\\..\\..\\secret.jpg"),
        DataError,
        r"must be a relative path",
        "image: unsafe file_name",
        1,
    ),
    "symlink escaping the images folder": (
        lambda d, root: (
            (root / "outside.jpg").write_bytes((root / "images" / "b.jpg").read_bytes()),
            (root / "images" / "b.jpg").unlink(),
            (root / "images" / "b.jpg").symlink_to(root / "outside.jpg"),
        ),
        ImageError,
        r"resolves to .*outside.jpg, outside the images folder",
        "image: path outside the images folder",
        1,
    ),
}


@pytest.mark.parametrize("case", sorted(MESS))
def test_bad_input_fails_cleanly_and_leaves_the_store_as_it_was(
    case: str, coco_factory, tmp_path: Path
) -> None:
    mutate, exc_type, pattern, _reason, _lost_images = MESS[case]
    store = _existing_store(tmp_path, coco_factory)
    before = file_bytes(store)
    src = _corrupt(
        coco_factory(
            [(1, "a.jpg", (40, 40)), (2, "b.jpg", (40, 40))],
            [(1, 1, "cat", [1, 1, 10, 10]), (2, 2, "dog", [2, 2, 10, 10])],
        ),
        mutate,
    )
    with pytest.raises(exc_type, match=pattern) as info:
        import_dataset(src, store=store)
    assert "\n" not in str(info.value)
    assert "--on-error skip" in (info.value.hint or "")
    assert file_bytes(store) == before  # all-or-nothing: not one byte changed


@pytest.mark.parametrize("case", sorted(MESS))
def test_bad_input_is_skipped_and_reported_with_on_error_skip(
    case: str, coco_factory, tmp_path: Path
) -> None:
    mutate, _exc, _pattern, reason, lost_images = MESS[case]
    src = _corrupt(
        coco_factory(
            [(1, "a.jpg", (40, 40)), (2, "b.jpg", (40, 40))],
            [(1, 1, "cat", [1, 1, 10, 10]), (2, 2, "dog", [2, 2, 10, 10])],
        ),
        mutate,
    )
    res = import_dataset(src, store=tmp_path / "s", on_error="skip")
    assert reason in res.skipped_by_reason
    assert res.images == 2 - lost_images
    report = json.loads(res.report.read_text())
    assert report["skipped_count"] == len(res.skipped) >= 1
    assert any(s["reason"] == reason.split(": ", 1)[1] and s["message"] for s in report["skipped"])
    store = Store.open(tmp_path / "s")
    assert not list(store.images_dir.rglob(".*.tmp-*"))
    assert all((store.images_dir / img["file_name"]).is_file() for img in store.images)
    assert not any(p.name == "secret.jpg" for p in tmp_path.rglob("*"))


def test_skipping_an_image_also_skips_its_annotations(coco_factory, tmp_path: Path) -> None:
    src = coco_factory(
        [(1, "a.jpg", (40, 40)), (2, "b.jpg", (40, 40))],
        [(1, 1, "cat", [1, 1, 10, 10]), (2, 2, "dog", [2, 2, 10, 10])],
    )
    (src.parent / "images" / "b.jpg").unlink()
    res = import_dataset(src, store=tmp_path / "s", on_error="skip")
    assert res.skipped_by_reason == {"image: missing file": 1, "annotation: its image was skipped": 1}
    assert [a["image_id"] for a in Store.open(tmp_path / "s").annotations] == [1]


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"images": [', r"malformed JSON at line 1, column 13"),
        (b"[1, 2]", r"expected a JSON object with 'images'"),
        (b'{"images": {}, "categories": []}', r"'images' must be a list \(found dict\)"),
    ],
)
def test_malformed_annotation_files(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "images").mkdir()
    bad = tmp_path / "instances.json"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=message):
        import_dataset(bad, store=tmp_path / "s", format="coco")
    assert not (tmp_path / "s" / "annotations.json").exists()


def test_missing_images_folder_is_a_clear_error(simple_coco: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"images folder .*nowhere does not exist"):
        import_dataset(simple_coco, store=tmp_path / "s", images=tmp_path / "nowhere")


def test_unknown_format_lists_the_available_ones(simple_coco: Path, tmp_path: Path) -> None:
    from dataforge.errors import PluginError

    with pytest.raises(PluginError, match=r"unknown format 'cocoa' \(available: .*coco"):
        import_dataset(simple_coco, store=tmp_path / "s", format="cocoa")


def test_missing_source_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or directory"):
        import_dataset(tmp_path / "nope.json", store=tmp_path / "s")


def test_link_mode_hard_links_images(simple_coco: Path, tmp_path: Path) -> None:
    import_dataset(simple_coco, store=tmp_path / "s", link=True)
    src = simple_coco.parent / "images" / "a.jpg"
    assert (tmp_path / "s" / "images" / "a.jpg").stat().st_ino == src.stat().st_ino


def test_png_and_other_formats_are_probed(coco_factory, tmp_path: Path) -> None:
    from tests.conftest import png_bytes

    src = coco_factory([(1, "a.png", (33, 17)), (2, "b.gif", (5, 6))], [])
    (src.parent / "images" / "a.png").write_bytes(png_bytes((33, 17)))
    from PIL import Image

    Image.new("P", (5, 6)).save(src.parent / "images" / "b.gif")
    import_dataset(src, store=tmp_path / "s")
    store = Store.open(tmp_path / "s")
    assert [(r.file_name, r.size_wh) for r in store] == [("a.png", (33, 17)), ("b.gif", (5, 6))]


def test_licenses_merge_by_content_and_images_follow_their_new_ids(coco_factory, tmp_path: Path) -> None:
    """The same license under another id is not added twice; a new license whose id is taken gets a
    free one; each imported image's ``license`` follows its license to the id it has in the store."""
    import json

    from dataforge.store import Store

    cc_by = {"name": "CC-BY", "url": "https://example.invalid/by"}
    cc0 = {"name": "CC0", "url": "https://example.invalid/zero"}

    def with_licenses(path: Path, licenses: list[dict], license_of: dict[str, int]) -> Path:
        doc = json.loads(path.read_text())
        doc["licenses"] = licenses
        for img in doc["images"]:
            img["license"] = license_of[img["file_name"]]
        path.write_text(json.dumps(doc))
        return path

    first = with_licenses(coco_factory([(1, "a.jpg", (16, 16))], []), [{"id": 1, **cc_by}], {"a.jpg": 1})
    second = with_licenses(
        coco_factory([(1, "b.jpg", (16, 16)), (2, "c.jpg", (16, 16))], []),
        [{"id": 1, **cc0}, {"id": 2, **cc_by}],
        {"b.jpg": 1, "c.jpg": 2},
    )
    import_dataset(first, store=tmp_path / "s")
    import_dataset(second, store=tmp_path / "s")
    store = Store.open(tmp_path / "s")
    by_name = {lic["name"]: lic["id"] for lic in store.licenses}
    assert len(store.licenses) == 2 and by_name["CC-BY"] == 1 and by_name["CC0"] != 1
    license_of = {img["file_name"]: img["license"] for img in store.images}
    assert license_of == {"a.jpg": 1, "b.jpg": by_name["CC0"], "c.jpg": 1}
