"""Mask R-CNN and Keypoint R-CNN in the torchvision detector: their training targets follow the pixels
through the pipeline, an object without a mask is refused, and their predictions (RLE masks,
keypoints) go through `dataforge evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dataforge.api import evaluate, import_dataset, split_store
from dataforge.errors import DataError
from dataforge.synthetic import make_shapes_dataset
from dataforge.training.run import predict, train


def shapes_store(root: Path, n_images: int, *, keypoints: bool = False, seed: int = 5) -> Path:
    """Shapes with exact masks (and, with ``keypoints``, the triangles' corners), split 80/20."""
    make_shapes_dataset(
        root / "src",
        n_images=n_images,
        size_wh=(160, 120),
        max_objects=3,
        seed=seed,
        masks=True,
        keypoints=keypoints,
    )
    import_dataset(source=root / "src" / "instances.json", store=root / "store")
    split_store(root / "store", ratios={"train": 0.8, "val": 0.2}, seed=0)
    return root / "store"


def dataset(store_path: Path, pipeline: dict | None, **targets: object):  # type: ignore[no-untyped-def]
    from dataforge.store import Store
    from dataforge.training.data import StoreDataset, category_table, keypoint_count, samples

    store = Store.open(store_path)
    cats = category_table(store)
    wants = {"with_masks": bool(targets.get("masks")), "with_keypoints": bool(targets.get("keypoints"))}
    items = samples(store, "detection", None, cats, **wants)
    k = keypoint_count(cats) if wants["with_keypoints"] else 0
    return StoreDataset(
        items, "detection", pipeline=pipeline, with_masks=wants["with_masks"], keypoint_count=k
    )


FLIP = {"seed": 0, "steps": [{"type": "hflip", "p": 1}]}


def test_instance_masks_and_their_boxes_follow_a_flip(tmp_path: Path) -> None:
    store = shapes_store(tmp_path, 6)
    plain, flipped = dataset(store, None, masks=True), dataset(store, FLIP, masks=True)
    objects = 0
    for i in range(len(plain.items)):
        (img, t), (_, ft) = plain[i], flipped[i]
        assert t["masks"].dtype.is_floating_point is False and t["masks"].shape[1:] == img.shape[1:]
        assert np.array_equal(ft["masks"].numpy(), t["masks"].numpy()[:, :, ::-1])
        for m, box in zip(ft["masks"].numpy(), ft["boxes"].numpy(), strict=True):  # the box is the mask's
            ys, xs = np.nonzero(m)
            assert np.allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        objects += len(t["masks"])
    assert objects > 0


def test_keypoints_follow_a_flip_and_swap_sides(tmp_path: Path) -> None:
    """The triangles' apex stays the apex; left_base and right_base swap (their names pair), each
    point mirrored; objects of classes without points get K unlabelled ones."""
    store = shapes_store(tmp_path, 8, keypoints=True)
    plain, flipped = dataset(store, None, keypoints=True), dataset(store, FLIP, keypoints=True)
    labelled = 0
    for i in range(len(plain.items)):
        (img, t), (_, ft) = plain[i], flipped[i]
        assert t["keypoints"].shape == (len(t["boxes"]), 3, 3)
        for pts, fpts in zip(t["keypoints"].numpy(), ft["keypoints"].numpy(), strict=True):
            if pts[:, 2].max() == 0:
                assert fpts[:, 2].max() == 0
                continue
            labelled += 1
            expected = pts[[0, 2, 1]].copy()
            expected[:, 0] = img.shape[-1] - expected[:, 0]
            assert np.allclose(fpts, expected, atol=1e-4)
    assert labelled > 0


def test_an_object_without_a_mask_is_refused(tmp_path: Path) -> None:
    make_shapes_dataset(tmp_path / "src", n_images=3, size_wh=(64, 48), max_objects=2, seed=1, masks=True)
    data = json.loads((tmp_path / "src" / "instances.json").read_text())
    data["annotations"][0]["segmentation"] = []
    (tmp_path / "bare.json").write_text(json.dumps(data))
    import_dataset(source=tmp_path / "bare.json", store=tmp_path / "s", images=tmp_path / "src" / "images")
    first = data["annotations"][0]
    with pytest.raises(DataError, match=rf"1 objects have no mask \(first: annotation {first['id']} of"):
        dataset(tmp_path / "s", None, masks=True)


@pytest.mark.parametrize(
    ("model", "iou_types"),
    [
        ("maskrcnn_mobilenet_v3_large_fpn", ["bbox", "segm"]),
        ("keypointrcnn_mobilenet_v3_large_fpn", ["bbox", "keypoints"]),
    ],
)
def test_instance_models_train_predict_and_evaluate(tmp_path: Path, model: str, iou_types: list[str]) -> None:
    """One short epoch each: the loop runs with the heads' targets, validation reports their AP,
    and predictions carry RLE masks (or keypoints) that `dataforge evaluate` scores by COCO segm
    (or OKS). Whether they learn is test_mask_rcnn_learns_shapes' (and the margins benchmark's)."""
    kp = model.startswith("keypoint")
    store = shapes_store(tmp_path, 20, keypoints=kp)
    res = train(
        store,
        trainer="torchvision-detector",
        out=tmp_path / "run",
        sets=[
            f"model={model}",
            "epochs=1",
            "batch_size=4",
            "min_size=96",
            "max_size=128",
            "rois_per_image=16",
            "log_images=0",
        ],
    )
    metric = "val_keypoint_map50" if kp else "val_mask_map50"
    assert metric in res.history[0]
    predict([tmp_path / "run"], store, out=tmp_path / "preds.json", split="val")
    preds = json.loads((tmp_path / "preds.json").read_text())
    assert preds, "an untrained model still proposes boxes above the 0.05 score threshold"
    bird = next(
        c["id"]
        for c in json.loads((store / "annotations.json").read_text())["categories"]
        if c["name"] == "bird"
    )
    if kp:  # points on the birds' boxes (the class with keypoints), the others' boxes alone
        assert all(("keypoints" in p) == (p["category_id"] == bird) for p in preds)
        assert all(len(p["keypoints"]) == 9 for p in preds if "keypoints" in p)
    else:
        assert all(p["segmentation"]["size"] == [120, 160] for p in preds)
    report = evaluate(tmp_path / "preds.json", store=store, split="val")
    assert report.report["iou_types"] == iou_types and report.detection is not None
    assert (report.keypoint_stats if kp else report.segm_stats) is not None
