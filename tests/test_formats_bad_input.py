"""Malformed input in each format: a one-line error naming the file and line/record, store unchanged;
with --on-error skip, the item is skipped and reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dataforge.api import import_dataset
from dataforge.errors import DataError
from tests.conftest import file_bytes, jpeg_bytes


def yolo_dataset(root: Path, label_text: str) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "images" / "train" / "a.jpg").write_bytes(jpeg_bytes((40, 20)))
    (root / "images" / "train" / "b.jpg").write_bytes(jpeg_bytes((40, 20), (1, 2, 3)))
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "train" / "b.txt").write_text(label_text)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cat, dog]\n")
    return root


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "1 0.5 0.5 0.2\n",
            r"labels/train/b.txt:1: expected 5 values 'class cx cy w h' or a polygon .*, found 4 values",
        ),
        (
            "0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.2 0.2\n",
            r"labels/train/b.txt:2: class id 7 is past the names list \(2 names\)",
        ),
        ("0 a b c d\n", r"labels/train/b.txt:1: not numbers"),
        ("0 0.5 0.5 0 0.2\n", r"labels/train/b.txt:1 \(image 2\): box \[.*\] has zero or negative"),
        ("0 0.9 0.5 0.4 0.2\n", r"annotation .* \(image 2\): box xywh .* extends outside the 40x20 image"),
    ],
)
def test_yolo_bad_lines(text: str, message: str, tmp_path: Path, simple_coco: Path) -> None:
    import_dataset(simple_coco, store=tmp_path / "s")
    before = file_bytes(tmp_path / "s")
    src = yolo_dataset(tmp_path / "y", text)
    with pytest.raises(DataError, match=message) as info:
        import_dataset(src, store=tmp_path / "s")
    assert "\n" not in str(info.value)
    assert file_bytes(tmp_path / "s") == before
    res = import_dataset(src, store=tmp_path / "s2", on_error="skip")
    assert res.images == 2 and len(res.skipped) == 1


def test_yolo_malformed_yaml(tmp_path: Path) -> None:
    root = yolo_dataset(tmp_path / "y", "")
    (root / "data.yaml").write_text("names: [cat, dog\ntrain: [")
    with pytest.raises(DataError, match=r"data.yaml: malformed YAML"):
        import_dataset(root, store=tmp_path / "s", format="yolo")
    (root / "data.yaml").write_text("train: images/train\n")
    with pytest.raises(DataError, match=r"data.yaml: no 'names' list"):
        import_dataset(root / "data.yaml", store=tmp_path / "s", format="yolo")


def voc_dataset(root: Path, xml_b: str) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for stem, colour in (("a", (1, 1, 1)), ("b", (2, 2, 2))):
        (root / "JPEGImages" / f"{stem}.jpg").write_bytes(jpeg_bytes((40, 20), colour))
    ok = (
        "<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    (root / "Annotations" / "a.xml").write_text(ok)
    (root / "Annotations" / "b.xml").write_text(xml_b)
    return root


@pytest.mark.parametrize(
    "xml, message, lost_images",
    [
        ("<annotation><filename>b.jpg</filename><object>", r"Annotations/b.xml:1: malformed XML", 1),
        ("<root/>", r"Annotations/b.xml: root element is <root>, not <annotation>", 1),
        (
            "<annotation><filename>b.jpg</filename><object><name>dog</name></object></annotation>",
            r"Annotations/b.xml object 1: <bndbox> is missing or not numbers",
            0,
        ),
        (
            "<annotation><filename>b.jpg</filename><object><name>dog</name><bndbox><xmin>1</xmin><ymin>x</ymin>"
            "<xmax>3</xmax><ymax>3</ymax></bndbox></object></annotation>",
            r"<bndbox> is missing or not numbers",
            0,
        ),
        (
            "<annotation><filename>b.jpg</filename><object><bndbox/></object></annotation>",
            r"Annotations/b.xml object 1: <name> is missing or empty",
            0,
        ),
    ],
)
def test_voc_bad_files(xml: str, message: str, lost_images: int, tmp_path: Path, simple_coco: Path) -> None:
    import_dataset(simple_coco, store=tmp_path / "s")
    before = file_bytes(tmp_path / "s")
    src = voc_dataset(tmp_path / "v", xml)
    with pytest.raises(DataError, match=message):
        import_dataset(src, store=tmp_path / "s")
    assert file_bytes(tmp_path / "s") == before
    res = import_dataset(src, store=tmp_path / "s2", on_error="skip")
    assert res.images == 2 - lost_images and len(res.skipped) == 1


def test_voc_devkit_coordinates(tmp_path: Path) -> None:
    from dataforge.store import Store

    src = voc_dataset(tmp_path / "v", "<annotation><filename>b.jpg</filename></annotation>")
    import_dataset(src, store=tmp_path / "s1", format="voc")
    import_dataset(src, store=tmp_path / "s2", format="voc", coordinates="devkit")
    box1 = Store.open(tmp_path / "s1").get(1).annotations[0].bbox_xyxy
    box2 = Store.open(tmp_path / "s2").get(1).annotations[0].bbox_xyxy
    assert box1 == (1, 1, 5, 5) and box2 == (0, 0, 5, 5)
    with pytest.raises(Exception, match="coordinates must be one of as-written, devkit"):
        import_dataset(src, store=tmp_path / "s3", format="voc", coordinates="zero")


def csv_dataset(root: Path, text: str) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.jpg").write_bytes(jpeg_bytes((40, 20)))
    (root / "images" / "b.jpg").write_bytes(jpeg_bytes((40, 20), (3, 3, 3)))
    (root / "boxes.csv").write_text(text)
    return root / "boxes.csv"


@pytest.mark.parametrize(
    "text, message, skipped",
    [
        (
            "picture,class,xmin,ymin,xmax,ymax\na.jpg,cat,1,1,5,5\n",
            r"boxes.csv: no image column \(looked for filename",
            None,
        ),
        (
            "filename,class,xmin,ymin,xmax,ymax\na.jpg,cat,1,1,5,5\nb.jpg,dog,1,1\n",
            r"boxes.csv:3: expected 6 columns, found 4",
            None,
        ),
        (
            "filename,class,xmin,ymin,xmax,ymax\na.jpg,cat,1,1,5,5\nb.jpg,dog,1,x,5,5\n",
            r"boxes.csv:3: the box cells are empty or not numbers",
            1,
        ),
        (
            "filename,class,xmin,ymin,xmax,ymax\na.jpg,cat,1,1,5,5\nb.jpg,,1,1,5,5\n",
            r"boxes.csv:3: the class cell is empty",
            1,
        ),
        (
            "filename,class,xmin,ymin,xmax,ymax\na.jpg,cat,1,1,5,5\nmissing.jpg,dog,1,1,5,5\n",
            r"image 2: file 'missing.jpg' is listed but missing",
            2,
        ),
    ],
)
def test_csv_bad_rows(
    text: str, message: str, skipped: int | None, tmp_path: Path, simple_coco: Path
) -> None:
    import_dataset(simple_coco, store=tmp_path / "s")
    before = file_bytes(tmp_path / "s")
    src = csv_dataset(tmp_path / "c", text)
    with pytest.raises(DataError, match=message):
        import_dataset(src, store=tmp_path / "s")
    assert file_bytes(tmp_path / "s") == before
    if skipped is not None:
        res = import_dataset(src, store=tmp_path / "s2", on_error="skip")
        assert len(res.skipped) == skipped


def test_csv_column_mapping(tmp_path: Path) -> None:
    from dataforge.store import Store

    src = csv_dataset(tmp_path / "c", "img,kind,left,top,right,bottom\na.jpg,cat,1,2,5,6\n")
    import_dataset(
        src,
        store=tmp_path / "s",
        format="csv",
        columns="image:img,label:kind,xmin:left,ymin:top,xmax:right,ymax:bottom",
    )
    assert Store.open(tmp_path / "s").get(1).annotations[0].bbox_xyxy == (1, 2, 5, 6)
    with pytest.raises(DataError, match="--option columns names 'nope', which is not a column"):
        import_dataset(src, store=tmp_path / "s3", format="csv", columns="image:nope")


@pytest.mark.parametrize(
    "xml, message",
    [
        ("<annotations><version>1.1</version><image name='a.jpg'", r"train.xml:1: malformed XML"),
        (
            "<annotations><version>1.1</version><image name='a.jpg' width='40' height='20'>"
            "<box label='cat' xtl='1' ytl='x' xbr='3' ybr='3'/></image></annotations>",
            r"train.xml image 'a.jpg': box 'cat' has missing or non-numeric corners",
        ),
        (
            "<annotations><version>1.1</version><image name='a.jpg' width='40' height='20'>"
            "<box label='' xtl='1' ytl='1' xbr='3' ybr='3'/></image></annotations>",
            r"a box has an empty label",
        ),
    ],
)
def test_cvat_bad_files(xml: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "c" / "images").mkdir(parents=True)
    (tmp_path / "c" / "images" / "a.jpg").write_bytes(jpeg_bytes((40, 20)))
    (tmp_path / "c" / "train.xml").write_text(xml)
    with pytest.raises(DataError, match=message):
        import_dataset(tmp_path / "c" / "train.xml", store=tmp_path / "s", format="cvat")
    assert not (tmp_path / "s").exists()  # a failed first import leaves no half-made store


def test_auto_detection_refuses_when_two_formats_fit(tmp_path: Path) -> None:
    from dataforge.errors import UsageError

    root = yolo_dataset(tmp_path / "both", "")
    (root / "Annotations").mkdir()
    (root / "Annotations" / "a.xml").write_text("<annotation><filename>a.jpg</filename></annotation>")
    with pytest.raises(UsageError, match=r"several formats fit \(voc, yolo\)") as info:
        import_dataset(root, store=tmp_path / "s")
    assert "--format" in (info.value.hint or "")
    assert import_dataset(root, store=tmp_path / "s", format="yolo").images == 2


@pytest.mark.parametrize("fmt", ["tfrecord", "yolo"])
def test_exporters_count_boxes_they_cannot_hold(fmt: str, tmp_path: Path, simple_coco: Path, cli) -> None:
    import json

    import_dataset(simple_coco, store=tmp_path / "s")
    doc = json.loads((tmp_path / "s" / "annotations.json").read_text())
    doc["annotations"][0]["bbox"] = [1, 2, 0, 20]  # degenerate: zero width (written by hand)
    (tmp_path / "s" / "annotations.json").write_text(json.dumps(doc))
    r = cli("export", tmp_path / "s", "--format", fmt, "--out", tmp_path / "out")
    assert r.code == 0 and "exported 3 images, 3 annotations" in r.out
    assert "warning: 1 degenerate boxes could not be written in this format and were dropped" in r.err


@pytest.mark.parametrize("fmt", ["coco", "tfrecord", "yolo", "voc", "csv"])
def test_an_export_that_meets_a_missing_store_image_names_it_and_removes_its_output(
    fmt: str, tmp_path: Path, simple_coco: Path, cli
) -> None:
    import_dataset(simple_coco, store=tmp_path / "s")
    gone = sorted((tmp_path / "s" / "images").rglob("*.jpg"))[-1]
    gone.unlink()
    r = cli("export", str(tmp_path / "s"), "--format", fmt, "--out", str(tmp_path / "out"))
    assert r.code == 3
    assert f"error: store image {gone}: No such file or directory; the export stopped" in r.err
    assert "dataforge validate" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "out").exists()  # nothing half-written; the same command can run again
    (tmp_path / "empty").mkdir()  # a folder that was there (empty) stays, still empty
    assert cli("export", str(tmp_path / "s"), "--format", fmt, "--out", str(tmp_path / "empty")).code == 3
    assert list((tmp_path / "empty").iterdir()) == []


def exported(out: Path) -> dict[str, Any]:
    """The files of an export, with the one field that differs between two runs (COCO's
    ``info.date_created``, to the second) taken out."""
    files: dict[str, Any] = file_bytes(out)
    if "annotations.json" in files:
        doc = json.loads(files["annotations.json"])
        doc["info"].pop("date_created")
        files["annotations.json"] = doc
    return files


@pytest.mark.parametrize("fmt", ["coco", "tfrecord", "yolo"])
def test_an_export_killed_midway_is_redone_by_the_same_command(
    fmt: str, tmp_path: Path, simple_coco: Path, cli
) -> None:
    """A killed export leaves its folder marked incomplete; the same command clears it and
    exports again (a folder without the mark, holding anything, is never touched)."""
    from dataforge.api import export_dataset
    from dataforge.formats.common import EXPORT_INCOMPLETE

    import_dataset(simple_coco, store=tmp_path / "s")
    export_dataset(tmp_path / "s", format=fmt, out=tmp_path / "clean")
    assert not (tmp_path / "clean" / EXPORT_INCOMPLETE).exists()
    # what SIGKILL midway leaves: the mark and part of the files
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / EXPORT_INCOMPLETE).write_text("dataforge export ... is writing this folder\n")
    (out / "images" / "half.jpg").write_bytes(b"\xff\xd8half")
    (out / "label_map.pbtxt").write_text("item {")
    assert cli("export", str(tmp_path / "s"), "--format", fmt, "--out", str(out)).code == 0
    assert exported(out) == exported(tmp_path / "clean")
    # without the mark, a folder that holds anything is refused, and left as it was
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = cli("export", str(tmp_path / "s"), "--format", fmt, "--out", str(tmp_path / "mine"))
    assert r.code == 2 and "exists and is not empty" in r.err
    assert file_bytes(tmp_path / "mine") == {"notes.txt": b"keep me"}
