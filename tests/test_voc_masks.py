"""Pascal VOC segmentation: SegmentationObject PNGs give each XML object its instance mask,
SegmentationClass PNGs the semantic regions; 255 (void) belongs to no mask; export writes both back
and they re-import exactly; a PNG that disagrees with its XML is a one-line error naming it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dataforge.api import export_dataset, import_dataset
from dataforge.errors import DataError
from dataforge.formats.voc import VOC_CLASSES
from dataforge.masks import decode, read_label_map, voc_palette, write_label_map
from dataforge.store import Store
from tests.conftest import INTEROP, shapes_store

W, H = 40, 30


def voc2012(root: Path, *, rgb: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One VOC2012-style image: a cat (object 1) and a person (object 2), with a void boundary."""
    for d in (
        "Annotations",
        "JPEGImages",
        "SegmentationObject",
        "SegmentationClass",
        "ImageSets/Segmentation",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "JPEGImages" / "2012_000001.jpg"), np.full((H, W, 3), 90, np.uint8))
    objects = np.zeros((H, W), np.int64)
    objects[5:15, 4:20] = 1
    objects[12:28, 22:36] = 2
    objects[4, 4:20] = objects[15, 4:20] = 255  # the boundary VOC draws round each object
    classes = np.where(objects == 1, 8, np.where(objects == 2, 15, 0))
    classes[objects == 255] = 255
    for folder, m in (("SegmentationObject", objects), ("SegmentationClass", classes)):
        png = root / folder / "2012_000001.png"
        if rgb:  # as Datumaro's samples: RGB files in the VOC colours
            p = np.array(voc_palette(), np.uint8).reshape(256, 3)
            Image.fromarray(p[m]).save(png)
        else:
            write_label_map(png, m)
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
        f"<ymax>{y1}</ymax></bndbox></object>"
        for n, (x0, y0, x1, y1) in (("cat", (4, 5, 20, 15)), ("person", (22, 12, 36, 28)))
    )
    (root / "Annotations" / "2012_000001.xml").write_text(
        f"<annotation><filename>2012_000001.jpg</filename><size><width>{W}</width><height>{H}</height>"
        f"<depth>3</depth></size><segmented>1</segmented>{objs}</annotation>"
    )
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2012_000001\n")
    return objects, classes


@pytest.mark.parametrize("rgb", [False, True], ids=["palette", "rgb"])
def test_voc_segmentation_pngs_import_as_instance_masks_and_semantic_regions(
    rgb: bool, tmp_path: Path
) -> None:
    objects, classes = voc2012(tmp_path / "voc", rgb=rgb)
    import_dataset(tmp_path / "voc", store=tmp_path / "s", format="voc", masks="true")
    store = Store.open(tmp_path / "s")
    names = store.index.category_names
    inst = [a for a in store.annotations if not a.get("semantic")]
    sem = {names[a["category_id"]]: a for a in store.annotations if a.get("semantic")}
    assert [names[a["category_id"]] for a in inst] == ["cat", "person"]
    for k, a in enumerate(inst, start=1):
        assert np.array_equal(decode(a["segmentation"], H, W), objects == k)  # void excluded
        assert a["area"] == int((objects == k).sum())
    assert sorted(sem) == ["background", "cat", "person"]
    for name, a in sem.items():
        assert np.array_equal(decode(a["segmentation"], H, W), classes == VOC_CLASSES.index(name))
    assert {c["name"]: c["label_value"] for c in store.data["categories"]} == {
        "cat": 8,
        "person": 15,
        "background": 0,
    }
    only = import_dataset(tmp_path / "voc", store=tmp_path / "o", format="voc", masks="objects")
    assert only.annotations == 2


def test_voc_masks_round_trip_exactly(tmp_path: Path) -> None:
    voc2012(tmp_path / "voc")
    import_dataset(tmp_path / "voc", store=tmp_path / "s", format="voc", masks="true")
    res = export_dataset(tmp_path / "s", format="voc", out=tmp_path / "out")
    assert res.dropped == {} and (tmp_path / "out" / "labelmap.txt").is_file()
    # the class PNG keeps its values and its void; the object PNG its instances
    sem = read_label_map(tmp_path / "out" / "SegmentationClass" / "2012_000001.png")
    assert np.array_equal(sem, read_label_map(tmp_path / "voc" / "SegmentationClass" / "2012_000001.png"))
    import_dataset(tmp_path / "out", store=tmp_path / "s2", format="voc", masks="true")
    a, b = Store.open(tmp_path / "s").annotations, Store.open(tmp_path / "s2").annotations
    assert [(x["segmentation"], x.get("semantic", False)) for x in a] == [
        (y["segmentation"], y.get("semantic", False)) for y in b
    ]


def test_instance_masks_from_another_format_round_trip_through_voc(tmp_path: Path) -> None:
    store = Store.open(shapes_store(tmp_path, n=4, seed=2))
    export_dataset(store.root, format="voc", out=tmp_path / "voc")
    import_dataset(tmp_path / "voc", store=tmp_path / "s2", format="voc", masks="objects")
    back = Store.open(tmp_path / "s2")
    assert len(back.annotations) == len(store.annotations)
    for img in store.images:
        h, w = img["height"], img["width"]
        objs = store.index.anns_by_image.get(img["id"], [])
        got = back.index.anns_by_image.get(
            next(i["id"] for i in back.images if i["file_name"] == img["file_name"]), []
        )
        assert len(got) == len(objs)
        masks = [decode(a["segmentation"], h, w) for a in objs]
        for k, (a, b) in enumerate(zip(masks, got, strict=True)):
            # object k keeps the pixels no later object covers (VOC's instance PNG holds one id a pixel)
            later = np.zeros((h, w), bool)
            for m in masks[k + 1 :]:
                later |= m
            assert np.array_equal(decode(b["segmentation"], h, w), a & ~later)


def test_datumaro_voc_sample_with_masks(tmp_path: Path) -> None:
    """voc_dataset1's PNGs are RGB and cover the whole image (class 2 = bicycle, instance 1), while
    its XML says object 1 is a cat in a 2x2 box: the class map imports, the object mask is refused
    with the file named."""
    src = INTEROP / "voc" / "datumaro-voc_dataset1"
    res = import_dataset(src, store=tmp_path / "s", format="voc", masks="classes")
    store = Store.open(tmp_path / "s")
    (sem,) = [a for a in store.annotations if a.get("semantic")]
    assert store.index.category_names[sem["category_id"]] == "bicycle" and sem["area"] == 200
    assert res.annotations == 3
    with pytest.raises(DataError, match=r"object 1 \(mask SegmentationObject/2007_000001.png instance 1\)"):
        import_dataset(src, store=tmp_path / "t", format="voc", masks="true")


@pytest.mark.parametrize(
    "case, match",
    [
        ("instance without object", r"SegmentationObject/2012_000001.png: instance 3 has no <object>"),
        ("class outside the table", r"SegmentationClass/2012_000001.png: class values 40 are not in"),
        ("wrong size", r"SegmentationObject/2012_000001.png: the mask is 20x30 but the XML says"),
    ],
)
def test_a_voc_mask_that_disagrees_is_a_one_line_error(case: str, match: str, tmp_path: Path) -> None:
    objects, classes = voc2012(tmp_path / "voc")
    if case == "instance without object":
        objects[0:2, 0:2] = 3
        write_label_map(tmp_path / "voc" / "SegmentationObject" / "2012_000001.png", objects)
    elif case == "class outside the table":
        classes[0:2, 0:2] = 40
        write_label_map(tmp_path / "voc" / "SegmentationClass" / "2012_000001.png", classes)
    else:
        write_label_map(tmp_path / "voc" / "SegmentationObject" / "2012_000001.png", objects[:, :20])
    with pytest.raises(DataError, match=match) as info:
        import_dataset(tmp_path / "voc", store=tmp_path / "s", format="voc", masks="true")
    assert "\n" not in info.value.message and not (tmp_path / "s" / "annotations.json").exists()
    res = import_dataset(tmp_path / "voc", store=tmp_path / "t", format="voc", masks="true", on_error="skip")
    assert res.images == 0
    assert json.loads(res.report.read_text())["skipped"][0]["kind"] == "image"


def test_masks_option_is_checked(tmp_path: Path) -> None:
    from dataforge.errors import UsageError

    voc2012(tmp_path / "voc")
    with pytest.raises(UsageError, match="masks must be one of false, true, objects, classes"):
        import_dataset(tmp_path / "voc", store=tmp_path / "s", format="voc", masks="yes please")
