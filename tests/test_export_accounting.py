"""Every export says what it kept, approximated and dropped per label type, writes the category
table it used beside it, and an import can take that table back so ids never shuffle (issue 20)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataforge.api import export_dataset, import_dataset
from dataforge.errors import DataError
from dataforge.store import Store
from tests.conftest import file_bytes, shapes_store


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    """Shapes with exact masks and the triangles' keypoints, and an image-level label on image 1."""
    store = shapes_store(tmp_path, n=4, seed=3, size_wh=(48, 36))
    doc = json.loads((store / "annotations.json").read_text())
    doc["images"][0]["labels"] = [doc["categories"][0]["id"]]
    (store / "annotations.json").write_text(json.dumps(doc))
    return store


def counts(store: Path) -> dict[str, int]:
    s = Store.open(store)
    return {
        "boxes": len(s.annotations),
        "masks": sum(1 for a in s.annotations if a.get("segmentation")),
        "keypoints": sum(1 for a in s.annotations if a.get("keypoints")),
        "image labels": 1,
    }


def test_each_format_says_what_it_kept_and_dropped(shapes: Path, tmp_path: Path) -> None:
    n = counts(shapes)
    assert all(n.values())
    coco = export_dataset(shapes, format="coco", out=tmp_path / "coco")
    assert coco.kept == n and not coco.dropped
    tf = export_dataset(shapes, format="tfrecord", out=tmp_path / "tf")
    assert tf.kept == {"boxes": n["boxes"]}
    assert tf.dropped == {
        "masks (the tfrecord format holds no masks)": n["masks"],
        "keypoints (the tfrecord format holds no keypoints)": n["keypoints"],
        "image labels (the tfrecord format holds no image labels)": 1,
    }
    folders = export_dataset(shapes, format="folders", out=tmp_path / "folders")
    assert folders.kept == {"image labels": 1}
    assert folders.dropped["boxes (the folders format holds no boxes)"] == n["boxes"]
    yolo = export_dataset(shapes, format="yolo", out=tmp_path / "yolo", task="segment")
    assert (
        yolo.kept["masks"] == n["masks"]
        and "image labels (the yolo format holds no image labels)" in yolo.dropped
    )


def test_strict_refuses_any_loss_and_writes_nothing(shapes: Path, tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"--strict: the tfrecord format cannot hold all of it as it is: \d+ masks \(the tfrecord",
    ):
        export_dataset(shapes, format="tfrecord", out=tmp_path / "tf", strict=True)
    assert not (tmp_path / "tf").exists()
    # YOLO -seg traces RLE masks as polygons: an approximation, refused after the fact, output removed
    from dataforge.synthetic import make_shapes_dataset

    make_shapes_dataset(tmp_path / "m", n_images=3, size_wh=(48, 36), max_objects=3, seed=4, masks=True)
    import_dataset(tmp_path / "m" / "instances.json", store=tmp_path / "masks-only")
    with pytest.raises(
        DataError, match=r"--strict: the yolo format could only approximate \d+ .*nothing was written"
    ):
        export_dataset(
            tmp_path / "masks-only", format="yolo", out=tmp_path / "y", strict=True, task="segment"
        )
    assert not (tmp_path / "y").exists()
    ok = export_dataset(shapes, format="coco", out=tmp_path / "c", strict=True)
    assert not ok.dropped and not ok.approximated


def test_the_category_table_beside_every_export_brings_the_ids_back(shapes: Path, tmp_path: Path) -> None:
    """YOLO numbers classes 0..K-1 and the importer numbers them again from 0: without the table a
    round trip shifts every id; with --categories each category gets its store id back."""
    export_dataset(shapes, format="yolo", out=tmp_path / "y")
    table = json.loads((tmp_path / "y" / "categories.json").read_text())
    src = {c["name"]: c["id"] for c in Store.open(shapes).data["categories"]}
    assert table["format"] == "yolo" and [(c["name"], c["store_id"]) for c in table["categories"]] == sorted(
        src.items(), key=lambda kv: kv[1]
    )
    assert [c["format_id"] for c in table["categories"]] == list(range(len(src)))
    import_dataset(tmp_path / "y", store=tmp_path / "plain")
    plain = {c["name"]: c["id"] for c in Store.open(tmp_path / "plain").data["categories"]}
    assert plain != src  # the ids moved
    import_dataset(tmp_path / "y", store=tmp_path / "back", categories=tmp_path / "y" / "categories.json")
    back = Store.open(tmp_path / "back")
    assert {c["name"]: c["id"] for c in back.data["categories"]} == src
    names = {c["id"]: c["name"] for c in back.data["categories"]}
    orig = Store.open(shapes)
    orig_names = {c["id"]: c["name"] for c in orig.data["categories"]}
    assert sorted(names[a["category_id"]] for a in back.annotations) == sorted(
        orig_names[a["category_id"]] for a in orig.annotations
    )
    # into a store that numbers a category otherwise: refused, nothing written
    before = file_bytes(tmp_path / "plain")
    with pytest.raises(DataError, match=r"category '\w+' has id \d+ there, but categories.json gives it \d+"):
        import_dataset(
            tmp_path / "y", store=tmp_path / "plain", categories=tmp_path / "y" / "categories.json"
        )
    assert file_bytes(tmp_path / "plain") == before


def test_exports_with_a_table_still_import_by_auto_detection(shapes: Path, tmp_path: Path) -> None:
    """categories.json is no label file: a class-folders or COCO export with it beside still detects."""
    from dataforge.formats import detect_format

    export_dataset(shapes, format="folders", out=tmp_path / "f")
    export_dataset(shapes, format="coco", out=tmp_path / "c")
    assert detect_format(tmp_path / "f").name == "folders" and detect_format(tmp_path / "c").name == "coco"
    import_dataset(tmp_path / "c", store=tmp_path / "s")
    assert len(Store.open(tmp_path / "s").annotations) == counts(shapes)["boxes"]


CVAT_ODD = """<annotations><version>1.1</version><meta><task><labels><label><name>cat</name></label></labels></task></meta>
<image id="0" name="a.jpg" width="40" height="20"><box label="cat" xtl="1" ytl="1" xbr="5" ybr="6" occluded="0"/>
<ellipse label="cat" cx="10" cy="10" rx="3" ry="2" occluded="0"/><points label="cat" points="3,3;5,5"/></image></annotations>"""


def test_every_import_says_what_it_kept_approximated_and_dropped(tmp_path: Path) -> None:
    """CVAT: an ellipse has no dataforge type (dropped, counted), points become keypoints named
    1..K (approximated); the report and the result hold the counts; --strict refuses and writes
    nothing."""
    from tests.conftest import jpeg_bytes

    (tmp_path / "cvat" / "images").mkdir(parents=True)
    (tmp_path / "cvat" / "images" / "a.jpg").write_bytes(jpeg_bytes((40, 20)))
    (tmp_path / "cvat" / "ann.xml").write_text(CVAT_ODD)
    res = import_dataset(tmp_path / "cvat" / "ann.xml", store=tmp_path / "s")
    assert res.kept == {"boxes": 2, "keypoints": 1}
    assert res.dropped == {"ellipses (dataforge has no such shape)": 1}
    assert res.approximated == {"points and polylines (read as keypoints named 1..K)": 1}
    report = json.loads(res.report.read_text())
    assert report["kept"] == res.kept and report["dropped"] == res.dropped
    with pytest.raises(
        DataError, match=r"--strict: .*ann.xml holds what dataforge cannot store as it is: 1 ellipses"
    ):
        import_dataset(tmp_path / "cvat" / "ann.xml", store=tmp_path / "t", strict=True)
    assert not (tmp_path / "t").exists()


def test_strict_refuses_semantic_regions_a_format_would_write_as_instances(tmp_path: Path) -> None:
    """Semantic regions in YOLO -seg become instance polygons: counted as approximated, and --strict
    refuses before anything is written (this was counted only after the strict check)."""
    from dataforge.synthetic import make_shapes_dataset

    make_shapes_dataset(tmp_path / "src", n_images=3, size_wh=(48, 36), max_objects=2, seed=2, masks=True)
    import_dataset(tmp_path / "src" / "instances.json", store=tmp_path / "i")
    export_dataset(tmp_path / "i", format="masks", out=tmp_path / "maps")
    import_dataset(tmp_path / "maps", store=tmp_path / "sem")
    n = sum(1 for a in Store.open(tmp_path / "sem").annotations if a.get("semantic"))
    res = export_dataset(tmp_path / "sem", format="yolo", out=tmp_path / "y", task="segment")
    assert res.approximated["semantic regions (the yolo format writes them as instance masks)"] == n
    with pytest.raises(
        DataError,
        match=rf"--strict: .*{n} semantic regions \(the yolo format writes them as instance masks\)",
    ):
        export_dataset(tmp_path / "sem", format="yolo", out=tmp_path / "y2", task="segment", strict=True)
    assert not (tmp_path / "y2").exists()
