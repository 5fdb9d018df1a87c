"""Every non-COCO sample under ../shared/interop/ imports and matches facts.json (±0.01 px).

Each format's facts have their own shape; ``CASES`` maps a facts entry to (what to import, which
format, which split of the result to compare) and ``expected_*`` turns the facts into
(source path, size, sorted [(label, xyxy)]) per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dataforge.api import import_dataset
from dataforge.store import Store
from tests.conftest import INTEROP, interop_facts

FACTS = interop_facts()


def yolo_cases() -> list[tuple[str, str, Path, str | None]]:
    out = []
    for key in ("yolo/datumaro-roboflow_yolo", "yolo/datumaro-yolo_dataset"):
        for sub in FACTS[key]:
            if key.endswith("roboflow_yolo"):
                out.append((key, sub, INTEROP / key, sub))
            else:
                layout, _, split = sub.partition("/")
                out.append((key, sub, INTEROP / key / layout, split or None))
    return out


def store_images(store: Store, split: str | None) -> dict[str, Any]:
    """Records by resolved source path."""
    recs = {}
    for r in store:
        if split is not None and r.split != split:
            continue
        path = r.source.get("path") or r.file_name
        recs[str(Path(path).resolve())] = r
    return recs


def boxes_of(rec: Any) -> list[tuple[str, list[float]]]:
    return sorted((a.category, [round(v, 2) for v in a.bbox_xyxy]) for a in rec.annotations)


def assert_boxes_equal(got: list[tuple[str, list[float]]], want: list[tuple[str, list[float]]]) -> None:
    assert [g[0] for g in got] == [w[0] for w in want]
    for (_, g), (_, w) in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=0.01)


@pytest.mark.parametrize("key, sub, path, split", yolo_cases(), ids=lambda v: str(v).split("/")[-1])
def test_yolo_sample_matches_facts(key: str, sub: str, path: Path, split: str | None, tmp_path: Path) -> None:
    facts = FACTS[key][sub]
    res = import_dataset(path, store=tmp_path / "s", format="auto")
    assert res.skipped == []
    store = Store.open(tmp_path / "s")
    assert [[c.id, c.name] for c in store.categories] == facts["names"]
    recs = store_images(store, split)
    assert len(recs) == len(facts["images"])
    for img in facts["images"]:
        rec = recs[str((INTEROP / img["image"]).resolve())]
        assert list(rec.size_wh) == img["image_size"]
        want = sorted((b["label"], b["xyxy"]) for b in img["boxes"])
        assert_boxes_equal(boxes_of(rec), want)


VOC_WITH_IMAGES = ["voc/datumaro-voc_dataset1", "voc/datumaro-voc_dataset3", "voc/datumaro-roboflow_voc"]


def test_every_voc_sample_has_a_case() -> None:
    assert {k for k in FACTS if k.startswith("voc/")} == {*VOC_WITH_IMAGES, "voc/datumaro-voc_dataset2"}


@pytest.mark.parametrize("key", VOC_WITH_IMAGES, ids=lambda k: k.split("/")[-1])
def test_voc_sample_matches_facts(key: str, tmp_path: Path) -> None:
    facts = FACTS[key]
    res = import_dataset(INTEROP / key, store=tmp_path / "s", format="auto")
    assert res.skipped == []
    store = Store.open(tmp_path / "s")
    recs = {Path(r.source["path"]).name: r for r in store}
    assert len(recs) == facts["n_xml"] == len(facts["images"])
    counts: dict[str, int] = {}
    for img in facts["images"]:
        rec = recs[img["filename"]]
        assert list(rec.size_wh) == img["actual_size"]
        assert_boxes_equal(boxes_of(rec), sorted((b["label"], b["xyxy"]) for b in img["boxes"]))
        for a, b in zip(
            sorted(rec.annotations, key=lambda a: (a.category, a.bbox_xyxy)),
            sorted(img["boxes"], key=lambda b: (b["label"], b["xyxy"])),
            strict=True,
        ):
            attrs = a.extra.get("attributes", {})
            for flag in ("difficult", "truncated", "occluded"):
                if flag in b:
                    assert attrs[flag] == (b[flag] == "1")
            if "parts" in b:
                assert [[p["name"], p["bbox_xyxy"]] for p in attrs["parts"]] == b["parts"]
            if "actions_true" in b:
                assert sorted(k for k, v in attrs["actions"].items() if v) == b["actions_true"]
            counts[a.category] = counts.get(a.category, 0) + 1
    assert counts == facts["label_counts"]


def test_voc_sample_without_images(tmp_path: Path) -> None:
    """voc_dataset2 ships XML only (no JPEGImages, no <size>): a store needs the image files, so the
    import refuses with a clear error; the parse itself is checked against the facts."""
    from dataforge.errors import DataError
    from dataforge.formats.voc import VocFormat

    key = "voc/datumaro-voc_dataset2"
    with pytest.raises(DataError, match=r"images folder .*JPEGImages does not exist"):
        import_dataset(INTEROP / key, store=tmp_path / "s", on_error="skip")
    batch = VocFormat().read(INTEROP / key)
    names = {c["id"]: c["name"] for c in batch.categories}
    got = sorted(
        (
            names[a["category_id"]],
            [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]],
        )
        for a in batch.annotations
    )
    want = sorted((b["label"], b["xyxy"]) for img in FACTS[key]["images"] for b in img["boxes"])
    assert_boxes_equal(got, want)
    assert len(batch.images) == FACTS[key]["n_xml"]


def test_tfrecord_od_api_sample_matches_facts(tmp_path: Path) -> None:
    """The train record has an object with class/label 0 and empty text ("unlabelled": 0 is not in
    the 1-based label map). dataforge reports it; everything else must match the facts."""
    key = "tfrecord/datumaro-tf_detection_api_dataset"
    res = import_dataset(INTEROP / key, store=tmp_path / "s", on_error="skip")
    assert [(s.kind, s.reason) for s in res.skipped] == [("annotation", "unknown category")]
    assert (
        "class/label 0: the TF Object Detection API keeps 0 for the implicit background"
        in res.skipped[0].message
    )
    assert "--option class0=skip" in res.skipped[0].message
    # the explicit way through: class 0 left out and counted, nothing else skipped
    explicit = import_dataset(INTEROP / key, store=tmp_path / "s0", class0="skip")
    assert not explicit.skipped
    assert any("1 objects of class 0 (the OD API's background) left out" in w for w in explicit.warnings)
    assert explicit.dropped == {"objects of class 0 (the OD API's background; class0=skip)": 1}
    store = Store.open(tmp_path / "s")
    assert [[c.id, c.name] for c in store.categories] == FACTS[key]["train"]["label_map"]
    by_split = {r.split: r for r in store}
    for split, facts in FACTS[key].items():
        (rec_facts,) = facts["records"]
        rec = by_split[split]
        assert rec.file_name == f"{split}/{rec_facts['filename']}"
        assert list(rec.size_wh) == rec_facts["encoded_actual_size"]
        want = sorted((b["text"], b["xyxy"]) for b in rec_facts["boxes"] if b["label_id"] != 0)
        assert_boxes_equal(boxes_of(rec), want)


def test_tfrecord_roboflow_sample_without_embedded_images(tmp_path: Path) -> None:
    """Roboflow's records carry an empty image/encoded and no image files beside them: nothing can
    be imported; each image is reported, and the parsed boxes are checked against the facts."""
    from dataforge.formats.tfrecord import TfrecordFormat

    key = "tfrecord/datumaro-roboflow_tfrecord"
    res = import_dataset(INTEROP / key, store=tmp_path / "s", on_error="skip")
    assert res.images == 0
    assert "pass --images FOLDER to read the images from there" in res.skipped[0].message
    assert res.skipped_by_reason["image: no embedded image"] == sum(
        len(f["records"]) for f in FACTS[key].values()
    )
    batch = TfrecordFormat().read(INTEROP / key)
    names = {c["id"]: c["name"] for c in batch.categories}
    got = sorted((names[a["category_id"]], a["_bbox_norm"][1]) for a in batch.annotations)
    want = sorted(
        (b["text"], b["norm_xyxy"]) for f in FACTS[key].values() for r in f["records"] for b in r["boxes"]
    )
    assert [g[0] for g in got] == [w[0] for w in want]
    for (_, g), (_, w) in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-6)


@pytest.mark.parametrize(
    "key, sub",
    [
        ("imagenet/datumaro-imagenet_dataset", None),
        *[("imagenet/datumaro-imagenet_subsets_dataset", s) for s in ("train", "val", "test")],
    ],
)
def test_class_folder_sample_matches_facts(key: str, sub: str | None, tmp_path: Path) -> None:
    facts = FACTS[key] if sub is None else FACTS[key][sub]
    import_dataset(INTEROP / key, store=tmp_path / "s", format="auto")
    store = Store.open(tmp_path / "s")
    names = {c.id: c.name for c in store.categories}
    assert sorted(names.values()) == facts["labels"]
    recs = {r.file_name.removeprefix(f"{sub}/") if sub else r.file_name: r for r in store if r.split == sub}
    assert len(recs) == facts["n_files"]
    for f in facts["files"]:
        rec = recs[f["path"]]
        assert list(rec.size_wh) == f["size"]
        assert [names[c] for c in rec.labels] == ([f["top_dir_label"]] if f["top_dir_label"] else [])


CSV_DET = [("csv/datumaro-kaggle_image_csv_det", f) for f in ("ann.csv", "ann2.csv", "ann3.csv")]


@pytest.mark.parametrize("key, name", CSV_DET, ids=lambda v: str(v).split("/")[-1])
def test_csv_detection_sample_matches_facts(key: str, name: str, tmp_path: Path) -> None:
    rows = FACTS[key]["files"][name]
    res = import_dataset(INTEROP / key / name, store=tmp_path / "s", format="auto")
    assert res.skipped == []
    store = Store.open(tmp_path / "s")
    got = sorted(
        (r.file_name, a.category, [round(v, 2) for v in a.bbox_xyxy]) for r in store for a in r.annotations
    )
    want = sorted((row["image"], row["label"], row["xyxy"]) for row in rows)
    assert got == want


@pytest.mark.parametrize("name", ["ann.csv", "ann_wo_ext.csv"])
def test_csv_classification_sample_matches_facts(name: str, tmp_path: Path) -> None:
    key = "csv/datumaro-kaggle_image_csv"
    import_dataset(INTEROP / key / name, store=tmp_path / "s", format="auto")
    store = Store.open(tmp_path / "s")
    names = {c.id: c.name for c in store.categories}
    got = sorted((Path(r.file_name).stem, [names[c] for c in r.labels]) for r in store)
    assert got == sorted((Path(img).stem, [label]) for img, label in FACTS[key]["files"][name])


def test_csv_vott_sample(tmp_path: Path) -> None:
    """VoTT's sample images are 5x5 but most boxes lie far outside them (e.g. [10, 5, 20, 7]):
    dataforge reports those as outside the image; the one box that fits imports exactly."""
    key = "csv/datumaro-vott_csv_dataset"
    facts = FACTS[key]["files"]
    res = import_dataset(INTEROP / key / "dataset", store=tmp_path / "s", on_error="skip")
    rows = facts["dataset/test-export.csv"] + facts["dataset/train-export.csv"]
    inside = [r for r in rows if r["xyxy"][2] <= 5.5 and r["xyxy"][3] <= 5.5]
    assert res.skipped_by_reason == {"annotation: box outside the image": len(rows) - len(inside)}
    store = Store.open(tmp_path / "s")
    got = sorted((r.file_name, a.category, list(a.bbox_xyxy)) for r in store for a in r.annotations)
    assert got == sorted((r["image"], r["label"], r["xyxy"]) for r in inside)
    assert {r.file_name: r.split for r in store}["img0001.jpg"] == "test"


@pytest.mark.parametrize(
    "sub", ["for_images/export_task/train.xml", "for_images/export_project/annotations.xml"]
)
def test_cvat_sample_matches_facts(sub: str, tmp_path: Path) -> None:
    """Boxes, polygons, points and polylines are imported; the task export's shapes with an empty
    label are skipped and reported (there is no category to give them)."""
    key = "cvat/datumaro-cvat_dataset"
    facts = FACTS[key][sub]
    shapes = [s for img in facts["images"] for s in img["shapes"]]
    unlabelled = sum(1 for s in shapes if not s["label"])
    res = import_dataset(INTEROP / key / sub, store=tmp_path / "s", format="auto", on_error="skip")
    assert res.skipped_by_reason == ({"annotation: no label": unlabelled} if unlabelled else {})
    store = Store.open(tmp_path / "s")
    assert [c.name for c in store.categories][: len(facts["declared_labels"])] == facts["declared_labels"]
    recs = {(r.split, Path(r.file_name).name): r for r in store}
    assert len(recs) == facts["n_images"]
    for img in facts["images"]:
        rec = recs[((img["subset"] or "").lower() or None, img["name"])]
        assert list(rec.size_wh) == [img["width"], img["height"]]
        want = sorted((s["label"], s["xyxy"]) for s in img["shapes"] if s["type"] == "box")
        boxes = [a for a in rec.annotations if a.keypoints is None and not a.segmentation]
        assert_boxes_equal(sorted((a.category, list(a.bbox_xyxy)) for a in boxes), want)
        for a, s in zip(boxes, [s for s in img["shapes"] if s["type"] == "box"], strict=True):
            attrs = a.extra["attributes"]
            assert {k: v for k, v in attrs.items() if k not in ("occluded", "z_order")} == s["attributes"]
            assert attrs["occluded"] == (s["occluded"] == "1")
        labelled = [s for s in img["shapes"] if s["label"] and s["type"] != "box"]
        others = [a for a in rec.annotations if a not in boxes]
        assert len(others) == len(labelled)
        for a, s in zip(others, labelled, strict=True):
            x0, y0, x1, y1 = s["points_bbox_xyxy"]  # a polygon's or a point set's extent is its box
            assert a.bbox_xyxy == pytest.approx((x0, y0, x1, y1))
            if s["type"] == "polygon":
                assert len(a.segmentation[0]) == 2 * s["n_points"]
            else:
                assert a.keypoints is not None and int((a.keypoints[:, 2] > 0).sum()) == s["n_points"]


def test_cvat_video_sample_is_refused_clearly(tmp_path: Path) -> None:
    """for_video is a 'CVAT for video' export (tracks): out of scope for the images importer."""
    from dataforge.errors import DataError

    with pytest.raises(DataError, match=r"'CVAT for video' export \(tracks\)"):
        import_dataset(INTEROP / "cvat/datumaro-cvat_dataset/for_video/annotations.xml", store=tmp_path / "s")
    assert FACTS["cvat/datumaro-cvat_dataset"]["for_video/annotations.xml"]["n_tracks"] == 3
