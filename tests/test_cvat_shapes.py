"""CVAT for images XML: polygons and masks become instance masks (CVAT's mask RLE decoded exactly),
skeletons keypoints with their names and edges, points and polylines keypoints 1..K; a shape CVAT
could not have written is a one-line error naming the image and shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataforge.api import export_dataset, import_dataset
from dataforge.errors import DataError
from dataforge.masks import decode
from dataforge.store import Store
from tests.conftest import jpeg_bytes

W, H = 40, 30

SKELETON_META = """
<label><name>person</name><type>skeleton</type>
  <svg>&lt;line x1="1" y1="1" x2="2" y2="2" data-type="edge" data-node-from="1" data-node-to="2"&gt;&lt;/line&gt;
  &lt;line x1="1" y1="1" x2="2" y2="2" data-type="edge" data-node-from="1" data-node-to="3"&gt;&lt;/line&gt;
  &lt;circle r="0.75" cx="1" cy="1" data-type="element node" data-element-id="1" data-node-id="1" data-label-name="nose"&gt;&lt;/circle&gt;
  &lt;circle r="0.75" cx="2" cy="2" data-type="element node" data-element-id="2" data-node-id="2" data-label-name="left_eye"&gt;&lt;/circle&gt;
  &lt;circle r="0.75" cx="3" cy="3" data-type="element node" data-element-id="3" data-node-id="3" data-label-name="right_eye"&gt;&lt;/circle&gt;</svg>
</label>
<label><name>nose</name><type>points</type><parent>person</parent></label>
<label><name>left_eye</name><type>points</type><parent>person</parent></label>
<label><name>right_eye</name><type>points</type><parent>person</parent></label>
<label><name>car</name><type>any</type></label>
"""


def cvat_rle(mask: np.ndarray) -> str:
    """CVAT's mask encoding, written independently of the importer: row-major runs, 0s first."""
    runs, current, n = [], False, 0
    for v in mask.reshape(-1).tolist():
        if v == current:
            n += 1
        else:
            runs.append(n)
            current, n = v, 1
    runs.append(n)
    return ", ".join(map(str, runs))


def cvat_xml(root: Path, shapes: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / "images" / "a.jpg").write_bytes(jpeg_bytes((W, H)))
    path = root / "annotations.xml"
    path.write_text(
        f"<annotations><version>1.1</version><meta><task><labels>{SKELETON_META}</labels></task></meta>"
        f'<image id="0" name="a.jpg" width="{W}" height="{H}">{shapes}</image></annotations>'
    )
    return path


def test_masks_polygons_and_skeletons_import_exactly(tmp_path: Path) -> None:
    crop = np.zeros((8, 10), bool)
    crop[1:7, 2:9] = True
    crop[3:5, 4:6] = False  # a hole: RLE keeps it
    shapes = (
        f'<mask label="car" occluded="0" rle="{cvat_rle(crop)}" left="5" top="6" width="10" height="8" z_order="0"/>'
        '<polygon label="car" occluded="0" points="20,5;35,5;35,20;20,20" z_order="1"/>'
        '<skeleton label="person" occluded="0" z_order="0">'
        '<points label="nose" occluded="0" outside="0" points="10,20"/>'
        '<points label="left_eye" occluded="1" outside="0" points="12,18"/>'
        '<points label="right_eye" occluded="0" outside="1" points="8,18"/>'
        "</skeleton>"
    )
    import_dataset(cvat_xml(tmp_path / "src", shapes), store=tmp_path / "s")
    store = Store.open(tmp_path / "s")
    person = next(c for c in store.data["categories"] if c["name"] == "person")
    assert person["keypoints"] == ["nose", "left_eye", "right_eye"] and person["skeleton"] == [[1, 2], [1, 3]]
    assert [c["name"] for c in store.data["categories"]] == ["person", "car"]  # sub-labels are not categories
    mask_ann, poly_ann, skel = store.annotations
    want = np.zeros((H, W), bool)
    want[6:14, 5:15] = crop
    assert np.array_equal(decode(mask_ann["segmentation"], H, W), want)
    assert mask_ann["bbox"] == [7.0, 7.0, 7.0, 6.0] and mask_ann["area"] == int(crop.sum())
    assert poly_ann["segmentation"] == [[20.0, 5.0, 35.0, 5.0, 35.0, 20.0, 20.0, 20.0]]
    assert skel["keypoints"] == [10.0, 20.0, 2, 12.0, 18.0, 1, 0.0, 0.0, 0] and skel["num_keypoints"] == 2
    # and out again through COCO and back: masks and points unchanged
    export_dataset(tmp_path / "s", format="coco", out=tmp_path / "coco")
    import_dataset(tmp_path / "coco" / "annotations.json", store=tmp_path / "s2", format="coco")
    back = Store.open(tmp_path / "s2").annotations
    assert [a["segmentation"] for a in back] == [a["segmentation"] for a in store.annotations]
    assert back[2]["keypoints"] == skel["keypoints"]


def test_points_and_polylines_become_keypoints_that_augment_moves(tmp_path: Path) -> None:
    shapes = (
        '<points label="car" occluded="0" points="5,5;10,6;15,7"/>'
        '<points label="car" occluded="1" points="20,20"/>'
    )
    import_dataset(cvat_xml(tmp_path / "src", shapes), store=tmp_path / "s")
    store = Store.open(tmp_path / "s")
    car = next(c for c in store.data["categories"] if c["name"] == "car")
    assert car["keypoints"] == ["1", "2", "3"] and car["skeleton"] == []
    a, b = store.annotations
    assert a["keypoints"] == [5.0, 5.0, 2, 10.0, 6.0, 2, 15.0, 7.0, 2]
    assert b["keypoints"] == [20.0, 20.0, 1, 0.0, 0.0, 0, 0.0, 0.0, 0]  # padded, unlabelled
    assert b["bbox"] == [19.5, 19.5, 1.0, 1.0]  # one point: a 1 px box round it
    line = '<polyline label="car" occluded="0" points="1,1;5,5;9,1"/>'
    import_dataset(cvat_xml(tmp_path / "src2", line), store=tmp_path / "t")
    car = next(c for c in Store.open(tmp_path / "t").data["categories"] if c["name"] == "car")
    assert car["skeleton"] == [[1, 2], [2, 3]]


@pytest.mark.parametrize(
    "shape, match",
    [
        (
            '<mask label="car" rle="1, 2" left="0" top="0" width="4" height="4"/>',
            "rle runs cover 3 pixels, not",
        ),
        ('<mask label="car" rle="16" left="38" top="0" width="4" height="4"/>', "outside the 40x30 image"),
        ('<polygon label="car" points="1,1;5,nan;9,1"/>', "NaN"),
        ('<polygon label="car" points="1,1;5"/>', "points must be 'x,y;x,y'"),
        ('<polygon label="car" points="1,1;5,5"/>', "a polygon needs at least 3"),
        ('<skeleton label="person"><points label="ear" points="1,1"/></skeleton>', "'ear' is not one of"),
        (
            '<skeleton label="car"><points label="nose" points="1,1"/></skeleton>',
            "not declared as a skeleton",
        ),
        ('<polygon label="" points="1,1;5,5;9,1"/>', "a polygon has an empty label"),
    ],
)
def test_a_bad_shape_is_a_one_line_error_naming_it(shape: str, match: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=match) as info:
        import_dataset(cvat_xml(tmp_path / "src", shape), store=tmp_path / "s")
    assert "\n" not in info.value.message and "a.jpg" in info.value.message
    assert not (tmp_path / "s" / "annotations.json").exists()
    res = import_dataset(tmp_path / "src" / "annotations.xml", store=tmp_path / "t", on_error="skip")
    assert res.images == 1 and res.annotations == 0 and len(res.skipped) == 1
