"""Masks and keypoints in the store: COCO person_keypoints and instance masks round-trip, the typed
records hand them out, and every malformed mask or keypoint list is a one-line error naming its
annotation (or skipped and reported), the store unchanged; ``dataforge validate`` finds the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.api import export_dataset, import_dataset
from dataforge.errors import DataError
from dataforge.keypoints import flip_permutation
from dataforge.masks import _rle_total, decode, encode, iou, segmentation_problem
from dataforge.store import Store
from dataforge.validate import validate_store
from tests.conftest import jpeg_bytes

PERSON = {
    "id": 1,
    "name": "person",
    "supercategory": "person",
    "keypoints": ["nose", "left_eye", "right_eye", "left_wrist", "right_wrist"],
    "skeleton": [[1, 2], [1, 3], [2, 4], [3, 5]],
}
W, H = 64, 48


def holed_rle() -> dict[str, Any]:
    m = np.zeros((H, W), bool)
    m[4:30, 4:40] = True
    m[10:20, 10:20] = False  # a hole
    m[35:45, 50:60] = True  # a second part
    return encode(m)


def person_coco(root: Path, anns: list[dict[str, Any]], cats: list[dict[str, Any]] | None = None) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images" / "a.jpg").write_bytes(jpeg_bytes((W, H)))
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, **a} for i, a in enumerate(anns)
        ],
        "categories": cats or [PERSON],
    }
    path = root / "person_keypoints.json"
    path.write_text(json.dumps(doc))
    return path


def import_person(src: Path, store: Path, **options: Any) -> Any:
    """Import a :func:`person_coco` file (its images beside it)."""
    return import_dataset(src, store=store, format="coco", images=src.parent / "images", **options)


GOOD = [
    {
        "bbox": [10, 5, 30, 41],
        "area": 600.0,
        "segmentation": [[10, 5, 40, 5, 40, 40, 10, 40], [12, 41, 20, 41, 16, 46]],
        "keypoints": [25, 10, 2, 20, 8, 2, 30, 8, 1, 0, 0, 0, 38, 30, 2],
        "num_keypoints": 4,
    },
    {"bbox": [4, 4, 56, 41], "area": 1000.0, "segmentation": holed_rle(), "iscrowd": 1},
]


def test_person_keypoints_and_masks_round_trip_through_the_store_and_coco(tmp_path: Path) -> None:
    import_person(person_coco(tmp_path / "src", GOOD), tmp_path / "s")
    store = Store.open(tmp_path / "s")
    (cat,) = store.categories
    assert cat.keypoints == tuple(PERSON["keypoints"]) and cat.skeleton == ((1, 2), (1, 3), (2, 4), (3, 5))
    rec = store.record(store.images[0])
    masks = rec.masks()
    assert masks.shape == (2, H, W) and masks.dtype == bool
    assert np.array_equal(masks[1], decode(holed_rle(), H, W)) and not masks[1][15, 15]  # the hole survives
    assert masks[0][42, 16] and masks[0][20, 20]  # both parts of the polygon
    a0 = rec.annotations[0]
    assert a0.keypoints is not None and a0.keypoints.shape == (5, 3) and a0.keypoints[3].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="keypoint layout"):
        rec.keypoints  # noqa: B018 - the second annotation has none
    export_dataset(tmp_path / "s", format="coco", out=tmp_path / "out")
    back = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert back["categories"][0]["keypoints"] == PERSON["keypoints"]
    assert back["categories"][0]["skeleton"] == PERSON["skeleton"]
    by_id = {a["id"]: a for a in back["annotations"]}
    for a in GOOD:
        got = next(b for b in by_id.values() if b["bbox"] == a["bbox"])
        assert got["segmentation"] == a["segmentation"] and got.get("keypoints") == a.get("keypoints")
        assert iou(decode(got["segmentation"], H, W), decode(a["segmentation"], H, W)) == 1.0


def _with(**change: Any) -> list[dict[str, Any]]:
    return [{**GOOD[0], **change}]


BAD = {
    "polygon of 2 points": (_with(segmentation=[[10, 5, 40, 5]]), "at least 3"),
    "zero-area polygon": (_with(segmentation=[[10, 5, 20, 5, 30, 5]]), "zero area"),
    "polygon outside the image": (
        _with(segmentation=[[10, 5, 90, 5, 40, 40]], bbox=[10, 5, 80, 35]),
        "outside the 64x48",
    ),
    "RLE of another size": (_with(segmentation={"size": [40, 64], "counts": [0, 2560]}), "RLE size"),
    "RLE counts != H*W": (_with(segmentation={"size": [H, W], "counts": [100, 200]}), "cover 300 pixels"),
    "garbage RLE string": (_with(segmentation={"size": [H, W], "counts": "\x01\x02"}), "cannot be decoded"),
    "box not enclosing mask": (_with(bbox=[20, 20, 10, 10]), "outside its box"),
    "wrong-length keypoints": (_with(keypoints=[25, 10, 2, 20, 8, 2]), "names 5 points"),
    "v not in 0,1,2": (_with(keypoints=[25, 10, 3, 20, 8, 2, 30, 8, 1, 0, 0, 0, 38, 30, 2]), "visibility 3"),
    "labelled keypoint outside": (
        _with(keypoints=[25, 10, 2, 20, 8, 2, 30, 80, 1, 0, 0, 0, 38, 30, 2]),
        "outside the 64x48",
    ),
    "num_keypoints mismatch": (_with(num_keypoints=5), "num_keypoints is 5"),
    "keypoints without names": (_with(), "names none"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_mask_or_keypoint_list_is_a_one_line_error_and_the_store_is_unchanged(
    case: str, tmp_path: Path
) -> None:
    anns, match = BAD[case]
    cats = [{"id": 1, "name": "person"}] if case == "keypoints without names" else None
    src = person_coco(tmp_path / "src", anns, cats)
    with pytest.raises(DataError, match=match) as info:
        import_person(src, tmp_path / "s")
    assert "\n" not in info.value.message and "annotation 1" in info.value.message
    assert not (tmp_path / "s" / "annotations.json").exists() or not Store.open(tmp_path / "s").annotations
    res = import_person(src, tmp_path / "t", on_error="skip")
    assert res.annotations == 0 and res.images == 1
    report = json.loads(res.report.read_text())
    assert any(s.get("kind") == "annotation" for s in report["skipped"]), report


def test_nan_in_a_polygon_is_refused(tmp_path: Path) -> None:
    """JSON has no NaN, but Python's json writes it: such a file is read, and the polygon check
    names the annotation; no store is made."""
    src = person_coco(tmp_path / "src", _with(segmentation=[[10, 5, float("nan"), 5, 40, 40]]))
    with pytest.raises(DataError, match=r"annotation 1 \(image 1\): polygon 0 has a NaN"):
        import_person(src, tmp_path / "s")
    assert not (tmp_path / "s").exists()
    assert "NaN" in str(segmentation_problem([[10, 5, float("nan"), 5, 40, 40]], W, H))


def test_validate_finds_what_import_refuses(tmp_path: Path) -> None:
    """A store edited by hand after import: validate names each broken mask and keypoint list."""
    import_person(person_coco(tmp_path / "src", GOOD), tmp_path / "s")
    path = tmp_path / "s" / "annotations.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["keypoints"][2] = 7
    doc["annotations"][1]["segmentation"]["size"] = [10, 10]
    doc["categories"][0]["skeleton"].append([1, 9])
    path.write_text(json.dumps(doc))
    rep = validate_store(Store.open(tmp_path / "s"), check_files=False)
    codes = {f.code for f in rep.errors}
    assert {"bad-keypoints", "bad-segmentation", "bad-keypoint-category"} <= codes, codes


def test_a_keypoint_category_with_a_bad_flip_idx_is_refused(tmp_path: Path) -> None:
    src = person_coco(tmp_path / "src", GOOD, [{**PERSON, "flip_idx": [0, 1, 1, 3, 4]}])
    with pytest.raises(DataError, match="flip_idx"):
        import_person(src, tmp_path / "s")


@settings(max_examples=200, deadline=None)
@given(counts=st.binary(max_size=40), h=st.integers(1, 30), w=st.integers(1, 30))
def test_rle_checks_never_crash_and_agree_with_pycocotools(counts: bytes, h: int, w: int) -> None:
    """Any string: the check answers (never crashes, never hands pycocotools a buffer overrun); what
    it accepts decodes to a mask of the right size whose area pycocotools agrees with."""
    text = counts.decode("latin-1")
    why = segmentation_problem({"size": [h, w], "counts": text}, w, h)
    if why is None:
        m = decode({"size": [h, w], "counts": text}, h, w)
        assert m.shape == (h, w)
        assert encode(m)["counts"] and _rle_total(encode(m)["counts"]) == h * w


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(1, 40), w=st.integers(1, 40))
def test_encode_decode_is_exact(seed: int, h: int, w: int) -> None:
    m = np.random.default_rng(seed).random((h, w)) < 0.4
    rle = encode(m)
    assert segmentation_problem(rle, w, h) is None and np.array_equal(decode(rle, h, w), m)


def test_flip_permutation_pairs_left_and_right_names() -> None:
    coco = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder"]
    assert flip_permutation(coco) == [0, 2, 1, 4, 3, 6, 5]
    assert flip_permutation(["l_knee", "r_knee", "Left Hand", "Right Hand", "tail", "left_only"]) == [
        1,
        0,
        3,
        2,
        4,
        5,
    ]
    with pytest.raises(ValueError, match="flip_idx"):
        flip_permutation(["a", "b"], [1, 1])


def test_datumaro_keypoint_categories_without_names_import_with_what_was_changed_said(tmp_path: Path) -> None:
    """Datumaro's person_keypoints sample: ``keypoints: []`` and a 0-based skeleton, three points on
    each annotation, a crowd RLE (list counts) that carries points too."""
    from tests.conftest import INTEROP

    root = INTEROP / "coco" / "datumaro-coco_person_keypoints"
    src = json.loads((root / "annotations" / "person_keypoints_val.json").read_text())
    res = import_dataset(
        root / "annotations" / "person_keypoints_val.json", store=tmp_path / "s", format="coco"
    )
    assert any("named them 1..3" in w for w in res.warnings) and any("from 0" in w for w in res.warnings)
    store = Store.open(tmp_path / "s")
    assert [(c.keypoints, c.skeleton) for c in store.categories] == [(("1", "2", "3"), ((1, 2), (2, 3)))] * 2
    rec = store.record(store.images[0])
    by_bbox = {tuple(a["bbox"]): a for a in src["annotations"]}
    for a, m in zip(rec.annotations, rec.masks(), strict=True):
        x0, y0, x1, y1 = a.bbox_xyxy
        orig = by_bbox[(x0, y0, x1 - x0, y1 - y0)]
        assert a.keypoints is not None and a.keypoints.reshape(-1).tolist() == orig["keypoints"]
        assert np.array_equal(m, decode(orig["segmentation"], rec.height, rec.width)) and m.any()
    assert validate_store(store).ok
