"""Datasets laid out as other tools write them, imported with `--format auto`: each either imports
right or is refused naming what was seen, never imported wrong (issue 20).

COCO layouts (file and folder names as each tool writes them):
- the COCO download: ``annotations/instances_train2017.json`` + ``train2017/`` beside it;
- Datumaro's COCO export: ``annotations/instances_<subset>.json`` + ``images/<subset>/``;
- CVAT's COCO 1.0 export: ``annotations/instances_default.json`` + ``images/`` (no subset);
- Roboflow's COCO export: ``<train|valid|test>/_annotations.coco.json`` beside the images;
- a folder holding only ``instances_default.json``, the images elsewhere (``--images``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dataforge.api import import_dataset
from dataforge.errors import DataError, UsageError
from dataforge.formats import detect_format
from dataforge.store import Store
from tests.conftest import jpeg_bytes


def coco_doc(names: list[str], *, first_id: int = 1, boxes_per_image: int = 1) -> dict[str, Any]:
    """A COCO dict for 40x30 images ``names`` (ids from ``first_id``: subsets of the COCO download
    number their images apart), each with ``boxes_per_image`` boxes of alternating class."""
    images = [{"id": first_id + i, "file_name": n, "width": 40, "height": 30} for i, n in enumerate(names)]
    anns = [
        {
            "id": 100 * img["id"] + k,
            "image_id": img["id"],
            "category_id": 1 + (img["id"] + k) % 2,
            "bbox": [2 + k, 3, 10, 8],
            "area": 80,
            "iscrowd": 0,
        }
        for img in images
        for k in range(boxes_per_image)
    ]
    cats = [{"id": 1, "name": "cat", "supercategory": ""}, {"id": 2, "name": "dog", "supercategory": ""}]
    return {"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats}


def write(root: Path, rel: str, doc: dict[str, Any]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def images_at(folder: Path, names: list[str]) -> None:
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(jpeg_bytes((40, 30)))


def imported(src: Path, store: Path, **kw: Any) -> Store:
    assert detect_format(src).name == "coco"
    import_dataset(source=src, store=store, format="auto", **kw)
    return Store.open(store)


def test_the_coco_download_layout(tmp_path: Path) -> None:
    src = tmp_path / "coco"
    write(src, "annotations/instances_train2017.json", coco_doc(["000000000009.jpg", "000000000025.jpg"]))
    write(src, "annotations/instances_val2017.json", coco_doc(["000000000139.jpg"], first_id=1))
    images_at(src / "train2017", ["000000000009.jpg", "000000000025.jpg"])
    images_at(src / "val2017", ["000000000139.jpg"])
    s = imported(src, tmp_path / "store")
    assert sorted((i["file_name"], i["split"]) for i in s.images) == [
        ("train2017/000000000009.jpg", "train"),
        ("train2017/000000000025.jpg", "train"),
        ("val2017/000000000139.jpg", "val"),
    ]
    assert len(s.annotations) == 3  # both subsets' ids were 1..: renumbered apart, none lost
    by_file = {i["file_name"]: i["id"] for i in s.images}
    assert {a["image_id"] for a in s.annotations} == set(by_file.values())


def test_datumaros_layout_is_coco_not_class_folders(tmp_path: Path) -> None:
    """The kind that was imported as class folders: every image labelled "images", no boxes."""
    src = tmp_path / "datumaro"
    write(src, "annotations/instances_train.json", coco_doc(["a.jpg", "b.jpg"], boxes_per_image=2))
    write(src, "annotations/instances_val.json", coco_doc(["c.jpg"], first_id=3))
    images_at(src / "images" / "train", ["a.jpg", "b.jpg"])
    images_at(src / "images" / "val", ["c.jpg"])
    s = imported(src, tmp_path / "store")
    assert sorted(i["file_name"] for i in s.images) == ["train/a.jpg", "train/b.jpg", "val/c.jpg"]
    assert len(s.annotations) == 5 and sorted(c.name for c in s.categories) == ["cat", "dog"]
    assert all(not i.get("labels") for i in s.images)


def test_cvats_coco_export(tmp_path: Path) -> None:
    src = tmp_path / "cvat"
    write(src, "annotations/instances_default.json", coco_doc(["frame_000000.jpg", "frame_000001.jpg"]))
    images_at(src / "images", ["frame_000000.jpg", "frame_000001.jpg"])
    s = imported(src, tmp_path / "store")
    assert sorted(i["file_name"] for i in s.images) == ["frame_000000.jpg", "frame_000001.jpg"]
    assert all(i.get("split") is None for i in s.images) and len(s.annotations) == 2


def test_roboflows_coco_export(tmp_path: Path) -> None:
    src = tmp_path / "roboflow"
    for split, names in (
        ("train", ["x_jpg.rf.1.jpg", "y_jpg.rf.2.jpg"]),
        ("valid", ["z_jpg.rf.3.jpg"]),
        ("test", ["w.jpg"]),
    ):
        write(src, f"{split}/_annotations.coco.json", coco_doc(names, first_id=0))  # Roboflow counts from 0
        images_at(src / split, names)
    (src / "README.roboflow.txt").write_text("exported from roboflow")
    s = imported(src, tmp_path / "store")
    assert sorted((i["file_name"], i["split"]) for i in s.images) == [
        ("test/w.jpg", "test"),
        ("train/x_jpg.rf.1.jpg", "train"),
        ("train/y_jpg.rf.2.jpg", "train"),
        ("valid/z_jpg.rf.3.jpg", "val"),
    ]
    assert len(s.annotations) == 4


def test_a_folder_with_only_instances_default_and_the_images_elsewhere(tmp_path: Path) -> None:
    write(tmp_path / "labels", "instances_default.json", coco_doc(["p.jpg", "q.jpg"]))
    images_at(tmp_path / "pictures", ["p.jpg", "q.jpg"])
    s = imported(tmp_path / "labels", tmp_path / "store", images=tmp_path / "pictures")
    assert len(s.images) == 2 and len(s.annotations) == 2


def test_two_files_for_one_subset_are_refused(tmp_path: Path) -> None:
    """instances_ and person_keypoints_ of one subset hold the same images: importing both would
    bring each image in twice."""
    src = tmp_path / "coco"
    write(src, "annotations/instances_val2017.json", coco_doc(["a.jpg"]))
    write(src, "annotations/person_keypoints_val2017.json", coco_doc(["a.jpg"]))
    images_at(src / "val2017", ["a.jpg"])
    with pytest.raises(
        DataError,
        match=r"2 annotation files for subset 'val2017' \(instances_val2017.json, person_keypoints_val2017.json\)",
    ):
        import_dataset(source=src, store=tmp_path / "store", format="auto")
    assert not (tmp_path / "store").exists()


def test_class_folders_with_label_files_are_never_imported_as_classes(tmp_path: Path) -> None:
    """Folders of images that also hold label files in no layout dataforge reads: `--format auto`
    refuses and names the files; `--format folders` refuses too (the folder names would become the
    labels and the files' labels would be lost)."""
    src = tmp_path / "odd"
    images_at(src / "images" / "train", ["a.jpg"])
    (src / "labels").mkdir()
    (src / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(
        UsageError, match=r"could not detect the dataset format \(it holds 1 label files, e.g. labels/a.txt"
    ):
        detect_format(src)
    with pytest.raises(
        DataError, match=r"holds label files that class folders do not read \(1, e.g. labels/a.txt\)"
    ):
        import_dataset(source=src, store=tmp_path / "store", format="folders")


def test_cvats_yolo_export_with_the_images_elsewhere(tmp_path: Path) -> None:
    """CVAT's YOLO 1.1 export without images ("save images" off): obj.data, obj.names, train.txt
    listing data/obj_train_data/<name>, the label .txt files in obj_train_data/. With --images the
    listed names are found there by their tail; without, each image is missing (one-line errors)."""
    src = tmp_path / "cvat-yolo"
    (src / "obj_train_data").mkdir(parents=True)
    (src / "obj.names").write_text("cat\ndog\n")
    (src / "obj.data").write_text(
        "classes = 2\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n"
    )
    (src / "train.txt").write_text(
        "data/obj_train_data/frame_000000.jpg\ndata/obj_train_data/frame_000001.jpg\n"
    )
    (src / "obj_train_data" / "frame_000000.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    (src / "obj_train_data" / "frame_000001.txt").write_text("0 0.25 0.25 0.1 0.2\n")
    with pytest.raises(DataError, match=r"frame_000000.jpg.*missing on disk"):
        import_dataset(source=src, store=tmp_path / "none", format="auto")
    images_at(tmp_path / "frames", ["frame_000000.jpg", "frame_000001.jpg"])
    import_dataset(source=src, store=tmp_path / "store", format="auto", images=tmp_path / "frames")
    s = Store.open(tmp_path / "store")
    got = sorted(
        (i["file_name"], a["category_id"], a["bbox"])
        for i in s.images
        for a in s.index.anns_by_image[i["id"]]
    )
    names = {c.id: c.name for c in s.categories}
    assert [(f, names[c], b) for f, c, b in got] == [
        ("train/frame_000000.jpg", "dog", [15.0, 7.5, 10.0, 15.0]),
        ("train/frame_000001.jpg", "cat", [8.0, 4.5, 4.0, 6.0]),
    ]


def labelimg_xml(name: str, folder: str, path: str, box: tuple[int, int, int, int]) -> str:
    """An XML as LabelImg writes it: <folder> the images folder's name, <path> the author's path."""
    x0, y0, x1, y1 = box
    return (
        f"<annotation><folder>{folder}</folder><filename>{name}</filename><path>{path}</path>"
        "<source><database>Unknown</database></source><size><width>40</width><height>30</height>"
        "<depth>3</depth></size><segmented>0</segmented><object><name>cat</name><pose>Unspecified</pose>"
        f"<truncated>0</truncated><difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>"
    )


def test_labelimgs_voc_with_images_in_a_sibling_folder(tmp_path: Path) -> None:
    """XMLs in annotations/, images in images/ (<folder>images</folder>), <path> from the author's
    Windows machine; one XML whose <filename> is stale but whose <path> names the file. Found by
    <folder>, then by <path>'s base name; the report says which rule found them."""
    src = tmp_path / "labelimg"
    (src / "annotations").mkdir(parents=True)
    images_at(src / "images", ["dog1.jpg", "dog2.jpg"])
    (src / "annotations" / "dog1.xml").write_text(
        labelimg_xml("dog1.jpg", "images", "C:\\Users\\ann\\images\\dog1.jpg", (2, 3, 12, 13))
    )
    (src / "annotations" / "dog2.xml").write_text(
        labelimg_xml("old-name.jpg", "images", "C:\\Users\\ann\\images\\dog2.jpg", (4, 5, 14, 15))
    )
    res = import_dataset(source=src, store=tmp_path / "store", format="auto")
    s = Store.open(tmp_path / "store")
    assert len(s.images) == 2 and len(s.annotations) == 2
    assert any(
        "images found by: <folder> images/ (1), <folder> images/ by <path>'s file name (1)" in w
        for w in res.warnings
    )
    # the annotations folder itself, the images beside it
    import_dataset(source=src / "annotations", store=tmp_path / "store2", format="voc")
    assert len(Store.open(tmp_path / "store2").images) == 2


OI_HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"


def test_open_images_as_the_download_and_fiftyone_lay_it_out(tmp_path: Path) -> None:
    """validation-annotations-bbox.csv, class-descriptions-boxable.csv (no header), validation/<id>.jpg:
    detected by its header (the CSV importer stopped at "no image column"), MIDs named, IsGroupOf
    as iscrowd, the other flags as attributes (-1: unknown, left out), coordinates made pixels."""
    src = tmp_path / "oi"
    images_at(src / "validation", ["0001eeaf4aed83f9.jpg", "000595fe6fee6369.jpg"])
    (src / "class-descriptions-boxable.csv").write_text("/m/01yrx,Cat\n/m/0bt9lr,Dog\n")
    (src / "validation-annotations-bbox.csv").write_text(
        OI_HEADER
        + "\n0001eeaf4aed83f9,xclick,/m/01yrx,1,0.25,0.75,0.1,0.5,0,1,0,0,-1\n"
        + "000595fe6fee6369,xclick,/m/0bt9lr,1,0.0,0.5,0.0,1.0,1,0,1,-1,0\n"
    )
    assert (
        detect_format(src).name == "openimages"
        and detect_format(src / "validation-annotations-bbox.csv").name == "openimages"
    )
    import_dataset(source=src, store=tmp_path / "store", format="auto")
    s = Store.open(tmp_path / "store")
    cats = {c["id"]: c for c in s.data["categories"]}
    got = sorted(
        (
            i["file_name"],
            i["split"],
            cats[a["category_id"]]["name"],
            cats[a["category_id"]]["mid"],
            a["bbox"],
            a["iscrowd"],
            a.get("attributes"),
        )
        for i in s.images
        for a in s.index.anns_by_image[i["id"]]
    )
    assert got == [
        (
            "validation/0001eeaf4aed83f9.jpg",
            "val",
            "Cat",
            "/m/01yrx",
            [10.0, 3.0, 20.0, 12.0],
            0,
            {
                "IsOccluded": False,
                "IsTruncated": True,
                "IsDepiction": False,
                "Source": "xclick",
                "Confidence": "1",
            },
        ),
        (
            "validation/000595fe6fee6369.jpg",
            "val",
            "Dog",
            "/m/0bt9lr",
            [0.0, 0.0, 20.0, 30.0],
            1,
            {
                "IsOccluded": True,
                "IsTruncated": False,
                "IsInside": False,
                "Source": "xclick",
                "Confidence": "1",
            },
        ),
    ]


def test_open_images_as_datumaro_writes_it_and_back(tmp_path: Path) -> None:
    """annotations/oidv6-train-annotations-bbox.csv, annotations/oidv6-class-descriptions.csv (with its
    LabelName,DisplayName header), images/train/<id>.jpg; then export and import again: the same
    boxes (1e-9 of a pixel), names, MIDs, group flags."""
    src = tmp_path / "dm"
    images_at(src / "images" / "train", ["a1.jpg", "b2.jpg"])
    (src / "annotations").mkdir()
    (src / "annotations" / "oidv6-class-descriptions.csv").write_text(
        "LabelName,DisplayName\n/m/01yrx,Cat\n/m/0bt9lr,Dog\n"
    )
    (src / "annotations" / "oidv6-train-annotations-bbox.csv").write_text(
        OI_HEADER
        + "\na1,activemil,/m/01yrx,1,0.1,0.3,0.2,0.6,0,0,0,0,0\nb2,activemil,/m/0bt9lr,1,0.5,0.9,0.3,0.9,0,0,1,0,0\n"
    )
    from dataforge.api import export_dataset

    import_dataset(source=src, store=tmp_path / "a", format="auto")
    export_dataset(tmp_path / "a", format="openimages", out=tmp_path / "out")
    assert (tmp_path / "out" / "train-annotations-bbox.csv").is_file()
    import_dataset(source=tmp_path / "out", store=tmp_path / "b", format="auto")

    def boxes(path: Path) -> list:
        s = Store.open(path)
        names = {c["id"]: (c["name"], c["mid"]) for c in s.data["categories"]}
        return sorted(
            (i["file_name"].rsplit("/", 1)[-1], names[a["category_id"]], a["iscrowd"], a["bbox"])
            for i in s.images
            for a in s.index.anns_by_image[i["id"]]
        )

    first, again = boxes(tmp_path / "a"), boxes(tmp_path / "b")
    assert (
        [x[:3] for x in first]
        == [x[:3] for x in again]
        == [("a1.jpg", ("Cat", "/m/01yrx"), 0), ("b2.jpg", ("Dog", "/m/0bt9lr"), 1)]
    )
    for x, y in zip(first, again, strict=True):
        assert x[3] == pytest.approx(y[3], abs=1e-9)


def test_open_images_without_descriptions_and_with_a_bad_row(tmp_path: Path) -> None:
    src = tmp_path / "oi"
    images_at(src / "test", ["c3.jpg"])
    (src / "test-annotations-bbox.csv").write_text(
        OI_HEADER + "\nc3,xclick,/m/01yrx,1,0.1,0.3,0.2,0.6,0,0,0,0,0\n"
    )
    res = import_dataset(source=src, store=tmp_path / "s", format="auto")
    assert [c.name for c in Store.open(tmp_path / "s").categories] == ["/m/01yrx"]
    assert any("1 classes have no description" in w for w in res.warnings)
    (src / "test-annotations-bbox.csv").write_text(
        OI_HEADER + "\nc3,xclick,/m/01yrx,1,0.1,wide,0.2,0.6,0,0,0,0,0\n"
    )
    with pytest.raises(
        DataError, match=r"test-annotations-bbox.csv:2: XMin, XMax, YMin, YMax must be numbers"
    ):
        import_dataset(source=src, store=tmp_path / "t", format="auto")


AWKWARD = ["a b/Café 1.JPG", "日本/sub dir/x.jpeg", "UPPER/IMG_0001.JPG"]


@pytest.mark.parametrize("layout", ["coco", "yolo", "voc", "csv"])
def test_awkward_file_names_in_every_layout(tmp_path: Path, layout: str) -> None:
    """Spaces, non-ASCII names, upper-case extensions and nested folders, as people's datasets
    have them: each imports with every image and box, under the names it was given."""
    src = tmp_path / layout
    boxes = {n: [2.0 + k, 3.0, 10.0, 8.0] for k, n in enumerate(AWKWARD)}
    if layout == "coco":
        doc = coco_doc(AWKWARD)
        for a, n in zip(doc["annotations"], AWKWARD, strict=True):
            a["bbox"], a["category_id"] = boxes[n], 1
        write(src, "annotations.json", doc)
        images_at(src / "images", AWKWARD)
        entry = src / "annotations.json"
    elif layout == "yolo":
        images_at(src / "images" / "train", AWKWARD)
        (src / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cat, dog]\n")
        for n, (x, y, w, h) in boxes.items():
            label = src / "labels" / "train" / Path(n).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(f"0 {(x + w / 2) / 40} {(y + h / 2) / 30} {w / 40} {h / 30}\n")
        entry = src
    elif layout == "voc":
        images_at(src / "JPEGImages", AWKWARD)
        for n, (x, y, w, h) in boxes.items():
            xml = src / "Annotations" / Path(n).with_suffix(".xml")
            xml.parent.mkdir(parents=True, exist_ok=True)
            xml.write_text(
                f"<annotation><filename>{Path(n).name}</filename><size><width>40</width><height>30</height>"
                f"<depth>3</depth></size><object><name>cat</name><bndbox><xmin>{x}</xmin><ymin>{y}</ymin>"
                f"<xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object></annotation>",
                encoding="utf-8",
            )
        entry = src
    else:
        images_at(src / "images", AWKWARD)
        rows = ["filename,class,xmin,ymin,xmax,ymax"] + [
            f'"{n}",cat,{x},{y},{x + w},{y + h}' for n, (x, y, w, h) in boxes.items()
        ]
        (src / "boxes.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        entry = src / "boxes.csv"
    res = import_dataset(source=entry, store=tmp_path / "store", format="auto")
    assert res.format == layout
    s = Store.open(tmp_path / "store")
    got = {i["file_name"].rsplit("/", 1)[-1]: s.index.anns_by_image[i["id"]][0]["bbox"] for i in s.images}
    assert got.keys() == {Path(n).name for n in AWKWARD}
    for n, box in boxes.items():
        assert got[Path(n).name] == pytest.approx(box, abs=1e-6)


def test_makesense_ai_csv_export(tmp_path: Path) -> None:
    """makesense.ai writes label_name,bbox_x,bbox_y,bbox_width,bbox_height,image_name,image_width,
    image_height: boxes, not image labels (bbox_x was not a known header: the rows became labels)."""
    src = tmp_path / "makesense"
    images_at(src, ["p1.jpg", "p2.jpg"])
    (src / "labels_my-project_2026-12-07.csv").write_text(
        "label_name,bbox_x,bbox_y,bbox_width,bbox_height,image_name,image_width,image_height\n"
        "cat,2,3,10,8,p1.jpg,40,30\ndog,5,6,7,9,p2.jpg,40,30\n"
    )
    import_dataset(source=src, store=tmp_path / "s", format="auto")
    s = Store.open(tmp_path / "s")
    assert sorted(a["bbox"] for a in s.annotations) == [[2.0, 3.0, 10.0, 8.0], [5.0, 6.0, 7.0, 9.0]]
    assert all(not i.get("labels") for i in s.images)
    (src / "labels_my-project_2026-12-07.csv").write_text(
        "label_name,bbox_width,bbox_height,image_name\ncat,10,8,p1.jpg\n"
    )
    with pytest.raises(DataError, match=r"box columns are incomplete \(bbox_height, bbox_width\)"):
        import_dataset(source=src, store=tmp_path / "t", format="auto")


def test_kaggles_global_wheat_detection_csv(tmp_path: Path) -> None:
    """train.csv: image_id (no extension), width, height, bbox as "[x, y, w, h]", source; images in
    train/. No class column: refused with the way through (--option label=wheat); then each box is
    read as x, y, width, height (its boxes are not valid as corners), which the report says."""
    src = tmp_path / "global-wheat-detection"
    images_at(src / "train", ["b6ab77fd7.jpg", "b53afdf5c.jpg"])
    (src / "train.csv").write_text(
        "image_id,width,height,bbox,source\n"
        'b6ab77fd7,40,30,"[12.0, 3.0, 10.0, 8.0]",usask_1\n'
        'b6ab77fd7,40,30,"[2.0, 5.0, 6.0, 9.0]",usask_1\n'
        'b53afdf5c,40,30,"[20.0, 10.0, 15.0, 12.0]",arvalis_1\n'
    )
    with pytest.raises(DataError, match=r"train.csv: boxes but no class column.*--option label=NAME"):
        import_dataset(source=src / "train.csv", store=tmp_path / "none")
    res = import_dataset(source=src / "train.csv", store=tmp_path / "s", label="wheat")
    s = Store.open(tmp_path / "s")
    assert sorted(a["bbox"] for a in s.annotations) == [
        [2.0, 5.0, 6.0, 9.0],
        [12.0, 3.0, 10.0, 8.0],
        [20.0, 10.0, 15.0, 12.0],
    ]
    assert [c.name for c in s.categories] == ["wheat"] and sorted(i["file_name"] for i in s.images) == [
        "train/b53afdf5c.jpg",
        "train/b6ab77fd7.jpg",
    ]
    assert any(
        "bbox read as [x, y, width, height]: 2 of 3 boxes are not valid as corners" in w for w in res.warnings
    )
