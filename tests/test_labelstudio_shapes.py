"""Label Studio polygons, brush masks and keypoints, both ways: the brush RLE agrees with Label
Studio's own encoder and decoder (label_studio_sdk.converter.brush), a store round-trips through
tasks.json with masks exact and keypoints within 1e-3 px, and a malformed region is a one-line
error naming its task and region."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from label_studio_sdk.converter import brush

from dataforge.api import export_dataset, import_dataset
from dataforge.errors import DataError
from dataforge.formats.labelstudio_json import ls_rle_decode, ls_rle_encode
from dataforge.masks import decode
from dataforge.store import Store
from tests.conftest import jpeg_bytes, shapes_store

W, H = 50, 40


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(1, 40), w=st.integers(1, 40))
def test_brush_rle_agrees_with_label_studios_codec(seed: int, h: int, w: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((h, w)) < rng.random()
    ours = ls_rle_encode(mask)
    assert np.array_equal(brush.decode_rle(ours).reshape(h, w, 4)[..., 3] > 0, mask)
    theirs = brush.mask2rle(mask.astype(np.uint8) * 255)
    assert np.array_equal(ls_rle_decode(theirs, w, h), mask)


def tasks_file(root: Path, results: list[dict[str, Any]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "a.jpg").write_bytes(jpeg_bytes((W, H)))
    path = root / "export.json"
    path.write_text(
        json.dumps([{"id": 7, "data": {"image": "a.jpg"}, "annotations": [{"id": 1, "result": results}]}])
    )
    return path


def region(kind: str, value: dict[str, Any], rid: str = "r1", **extra: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "from_name": extra.pop("from_name", kind[:-6]),
        "to_name": "image",
        "type": kind,
        "original_width": W,
        "original_height": H,
        "value": value,
        **extra,
    }


def test_polygons_brushes_and_keypoints_import(tmp_path: Path) -> None:
    mask = np.zeros((H, W), bool)
    mask[5:20, 10:30] = True
    mask[10:12, 15:17] = False  # a hole
    results = [
        region("polygonlabels", {"points": [[10, 10], [50, 10], [50, 50]], "polygonlabels": ["leaf"]}),
        region(
            "brushlabels",
            {"format": "rle", "rle": brush.mask2rle(mask.astype(np.uint8) * 255), "brushlabels": ["leaf"]},
            "r2",
        ),
        region(
            "rectanglelabels",
            {"x": 20, "y": 25, "width": 40, "height": 50, "rotation": 0, "rectanglelabels": ["face"]},
            "face1",
            from_name="label",
        ),
        region(
            "keypointlabels",
            {"x": 30, "y": 40, "width": 1, "keypointlabels": ["nose"]},
            "k1",
            parentID="face1",
            from_name="kp",
        ),
        region(
            "keypointlabels",
            {"x": 50, "y": 50, "width": 1, "keypointlabels": ["left_eye"]},
            "k2",
            parentID="face1",
            from_name="kp",
        ),
        region(
            "keypointlabels", {"x": 10, "y": 10, "width": 1, "keypointlabels": ["nose"]}, "k3", from_name="kp"
        ),
    ]
    import_dataset(tasks_file(tmp_path / "src", results), store=tmp_path / "s")
    store = Store.open(tmp_path / "s")
    cats = {c["name"]: c for c in store.data["categories"]}
    poly, brushed, face, loose = store.annotations
    assert poly["segmentation"] == [[5.0, 4.0, 25.0, 4.0, 25.0, 20.0]]
    assert np.array_equal(decode(brushed["segmentation"], H, W), mask)
    assert cats["face"]["keypoints"] == ["nose", "left_eye"]
    assert face["keypoints"] == [15.0, 16.0, 2, 25.0, 20.0, 2] and face["num_keypoints"] == 2
    assert store.index.category_names[loose["category_id"]] == "kp"  # loose points: the control's name
    assert loose["keypoints"] == [5.0, 4.0, 2]


def test_a_store_round_trips_through_label_studio(tmp_path: Path) -> None:
    store = Store.open(shapes_store(tmp_path, n=5, seed=4))
    res = export_dataset(store.root, format="labelstudio", out=tmp_path / "ls")
    assert res.dropped == {}
    config = (tmp_path / "ls" / "label_config.xml").read_text()
    assert "<BrushLabels" in config and "<KeyPointLabels" in config  # the shapes are exact RLE
    import_dataset(tmp_path / "ls" / "tasks.json", store=tmp_path / "s2", images=tmp_path / "ls")
    back = Store.open(tmp_path / "s2")
    assert len(back.annotations) == len(store.annotations)
    for a, b in zip(store.annotations, back.annotations, strict=True):
        img = next(i for i in store.images if i["id"] == a["image_id"])
        h, w = img["height"], img["width"]
        # RLE masks travel as brush regions: exact
        assert np.array_equal(decode(a["segmentation"], h, w), decode(b["segmentation"], h, w))
        if a.get("keypoints") and any(a["keypoints"][2::3]):  # all-unlabelled points have no region
            pa, pb = np.reshape(a["keypoints"], (-1, 3)), np.reshape(b["keypoints"], (-1, 3))
            assert np.abs(pa[:, :2] - pb[:, :2])[pa[:, 2] > 0].max() <= 1e-3
            assert ((pa[:, 2] > 0) == (pb[:, 2] > 0)).all()


@pytest.mark.parametrize(
    "result, match",
    [
        (
            region("polygonlabels", {"points": [[10, 10], [50, 10]], "polygonlabels": ["a"]}),
            "at least 3 finite points",
        ),
        (
            region("polygonlabels", {"points": "nope", "polygonlabels": ["a"]}),
            r"points must be \[\[x, y\], ...\]",
        ),
        (
            region("brushlabels", {"format": "rle", "rle": [1, 2, 3], "brushlabels": ["a"]}),
            "brush RLE: 'rle' must be",
        ),
        (
            region(
                "brushlabels",
                {"format": "rle", "rle": brush.mask2rle(np.zeros((3, 3), np.uint8)), "brushlabels": ["a"]},
            ),
            "it holds 36 values, not width . height . 4 = 8000",
        ),
        (region("keypointlabels", {"x": "?", "keypointlabels": ["nose"]}), "a keypoint needs x, y numbers"),
        (
            region("polygonlabels", {"points": [[1, 1], [5, 5], [9, 1]], "polygonlabels": []}),
            "polygon without a label",
        ),
    ],
)
def test_a_bad_region_is_a_one_line_error(result: dict[str, Any], match: str, tmp_path: Path) -> None:
    src = tasks_file(tmp_path / "src", [result])
    with pytest.raises(DataError, match=match) as info:
        import_dataset(src, store=tmp_path / "s")
    assert "\n" not in info.value.message and "task 7" in info.value.message
    res = import_dataset(src, store=tmp_path / "t", on_error="skip")
    assert res.images == 1 and res.annotations == 0
