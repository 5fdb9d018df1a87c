"""YOLO -seg and -pose: round trips through the store (masks IoU >= 0.999, keypoints within 1e-3
px), Ultralytics-written layouts, bad label lines as one-line errors, and exports that say what
they approximated or dropped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.api import export_dataset, import_dataset
from dataforge.errors import DataError
from dataforge.formats.yolo import _join_parts
from dataforge.masks import decode, has_holes, iou, polygons
from dataforge.store import Store
from tests.conftest import jpeg_bytes, shapes_store


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shapes_store(tmp_path_factory.mktemp("yolo"), n=12, seed=21)


def _pairs(a: Store, b: Store) -> list[tuple]:
    """(original record, re-imported record) by file name."""
    by_name = {i["file_name"].split("/")[-1]: i for i in b.images}
    return [(a.record(i), b.record(by_name[i["file_name"].split("/")[-1]])) for i in a.images]


def test_masks_round_trip_through_yolo_seg(shapes: Path, tmp_path: Path) -> None:
    res = export_dataset(shapes, format="yolo", out=tmp_path / "y", task="segment")
    assert any(k.startswith("RLE masks traced as polygons") for k in res.approximated), res.approximated
    assert any("keypoints" in k for k in res.dropped)  # segment lines hold no keypoints: said
    import_dataset(tmp_path / "y", store=tmp_path / "s", format="yolo")
    src, back = Store.open(shapes), Store.open(tmp_path / "s")
    n = 0
    for a, b in _pairs(src, back):
        for x, y, mx, my in zip(a.annotations, b.annotations, a.masks(), b.masks(), strict=True):
            assert x.category == y.category
            want = mx if not has_holes(mx) else decode(polygons(mx), *mx.shape)  # holes fill: counted
            assert iou(want, my) >= 0.999, (a.file_name, iou(want, my))
            n += 1
    assert n == len(src.annotations) > 20


def test_keypoints_round_trip_through_yolo_pose_with_flip_idx(shapes: Path, tmp_path: Path) -> None:
    res = export_dataset(shapes, format="yolo", out=tmp_path / "y")  # auto: the store has keypoints
    assert "task: pose" in res.notes and any("masks" in k for k in res.dropped)
    text = (tmp_path / "y" / "data.yaml").read_text()
    assert "kpt_shape:\n- 3\n- 3" in text and "flip_idx:\n- 0\n- 2\n- 1" in text
    import_dataset(tmp_path / "y", store=tmp_path / "s", format="yolo")
    back = Store.open(tmp_path / "s")
    bird = next(c for c in back.data["categories"] if c["name"] == "bird")
    assert bird["keypoints"] == ["apex", "left_base", "right_base"] and bird["flip_idx"] == [0, 2, 1]
    worst, n = 0.0, 0
    for a, b in _pairs(Store.open(shapes), back):
        for x, y in zip(a.annotations, b.annotations, strict=True):
            if x.keypoints is not None:
                assert y.keypoints is not None and (x.keypoints[:, 2] == y.keypoints[:, 2]).all()
                worst = max(worst, float(np.abs(x.keypoints - y.keypoints).max()))
                n += 1
    assert n > 5 and worst <= 1e-3, worst


def ultralytics_pose(
    root: Path, lines: list[str], yaml_extra: str = "kpt_shape: [3, 3]\nflip_idx: [0, 2, 1]\n"
) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "images" / "train" / "a.jpg").write_bytes(jpeg_bytes((100, 50)))
    (root / "labels" / "train" / "a.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames:\n  0: person\n{yaml_extra}")
    return root


def test_an_ultralytics_pose_dataset_with_2d_points(tmp_path: Path) -> None:
    """kpt_shape [K, 2]: a point at (0, 0) is unlabelled, the others visible (Ultralytics' reading)."""
    root = ultralytics_pose(tmp_path / "d", ["0 0.5 0.5 0.4 0.6 0.5 0.3 0.4 0.7 0 0"], "kpt_shape: [3, 2]\n")
    import_dataset(root, store=tmp_path / "s", format="yolo")
    store = Store.open(tmp_path / "s")
    (a,) = store.annotations
    assert a["keypoints"] == [50.0, 15.0, 2, 40.0, 35.0, 2, 0, 0, 0] and a["num_keypoints"] == 2
    assert store.data["categories"][0]["keypoints"] == ["1", "2", "3"]


BAD_LINES = {
    "pose line of the wrong length": (
        ["0 0.5 0.5 0.4 0.6 0.5 0.3 2"],
        "labels/train/a.txt:1: expected 14 values",
    ),
    "visibility 3": (["0 0.5 0.5 0.4 0.6 0.5 0.3 3 0.4 0.7 2 0 0 0"], "visibility 3"),
    "keypoint outside the image": (["0 0.5 0.5 0.4 0.6 1.5 0.3 2 0.4 0.7 2 0 0 0"], "outside the 100x50"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_pose_lines_are_one_line_errors(case: str, tmp_path: Path) -> None:
    lines, match = BAD_LINES[case]
    root = ultralytics_pose(tmp_path / "d", lines)
    with pytest.raises(DataError, match=match) as info:
        import_dataset(root, store=tmp_path / "s", format="yolo")
    assert "\n" not in info.value.message
    res = import_dataset(root, store=tmp_path / "t", format="yolo", on_error="skip")
    assert res.annotations == 0 and res.images == 1


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("kpt_shape: [3, 4]\n", "kpt_shape must be"),
        ("kpt_shape: [3, 3]\nflip_idx: [0, 1]\n", "flip_idx must list 3"),
    ],
)
def test_a_bad_kpt_shape_or_flip_idx_is_refused(tmp_path: Path, extra: str, match: str) -> None:
    root = ultralytics_pose(tmp_path / "d", ["0 0.5 0.5 0.4 0.6 0.5 0.3 2 0.4 0.7 2 0 0 0"], extra)
    with pytest.raises(DataError, match=match):
        import_dataset(root, store=tmp_path / "s", format="yolo")


def test_an_ultralytics_seg_dataset_and_its_bad_lines(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "images" / "train" / "a.jpg").write_bytes(jpeg_bytes((100, 50)))
    (root / "data.yaml").write_text("train: images/train\nnames: [part]\n")
    label = root / "labels" / "train" / "a.txt"
    label.write_text("0 0.1 0.2 0.5 0.2 0.5 0.8 0.1 0.8\n0 0.6 0.2 0.9 0.5 0.6 0.8\n")
    import_dataset(root, store=tmp_path / "s", format="yolo")
    anns = Store.open(tmp_path / "s").annotations
    assert anns[0]["segmentation"] == [[10.0, 10.0, 50.0, 10.0, 50.0, 40.0, 10.0, 40.0]]
    assert np.allclose(anns[0]["bbox"], [10, 10, 40, 30], atol=1e-9) and len(anns[1]["segmentation"][0]) == 6
    label.write_text("0 0.1 0.2 0.5 0.2 0.5 0.8\n0 0.1 0.2 0.5 0.2 0.5\n")  # the second: 2.5 points
    with pytest.raises(DataError, match=r"a.txt:2: expected 5 values 'class cx cy w h' or a polygon"):
        import_dataset(root, store=tmp_path / "t", format="yolo")


def test_formats_without_masks_or_keypoints_count_them_as_dropped(shapes: Path, tmp_path: Path, cli) -> None:
    r = cli("export", shapes, "--format", "csv", "--out", tmp_path / "csv")
    assert r.code == 0 and "masks (the csv format holds no masks) could not be written" in r.err
    assert "keypoints (the csv format holds no keypoints)" in r.err
    r = cli("export", shapes, "--format", "voc", "--out", tmp_path / "voc")  # VOC holds masks (its PNGs)
    assert r.code == 0 and "masks" not in r.err and "keypoints (the voc format holds no keypoints)" in r.err


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_traced_and_joined_polygons_rasterize_back_to_the_mask(seed: int) -> None:
    """Random multi-part masks (no holes): their traced polygons, and those joined into one (YOLO's
    one polygon per object), decode to exactly the mask's pixels."""
    rng = np.random.default_rng(seed)
    m = np.repeat(np.repeat(rng.random((6, 8)) < 0.3, 5, axis=0), 5, axis=1)
    if not m.any() or has_holes(m):
        return
    parts = polygons(m)
    assert np.array_equal(decode(parts, *m.shape), m)
    assert np.array_equal(decode([_join_parts(parts)], *m.shape), m)


def test_coco_export_keeps_what_yolo_import_read(tmp_path: Path) -> None:
    root = ultralytics_pose(tmp_path / "d", ["0 0.5 0.5 0.4 0.6 0.5 0.3 2 0.4 0.7 1 0 0 0"])
    import_dataset(root, store=tmp_path / "s", format="yolo")
    export_dataset(tmp_path / "s", format="coco", out=tmp_path / "c")
    doc = json.loads((tmp_path / "c" / "annotations.json").read_text())
    assert doc["categories"][0]["flip_idx"] == [0, 2, 1]
    assert doc["annotations"][0]["keypoints"] == [50.0, 15.0, 2, 40.0, 35.0, 1, 0, 0, 0]
