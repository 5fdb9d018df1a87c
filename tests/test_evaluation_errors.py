"""The error breakdown (TIDE) against the `tidecv` package on generated problems (issue 17):
every dAP, the special errors, the AP and the counts, overall and per class."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dataforge.evaluation.errors import ERROR_TYPES, breakdown


def problem(seed: int, n_images: int = 60, n_classes: int = 4) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ground truth and predictions with every kind of error in them: found objects (jittered),
    wrong classes, loose boxes, duplicates, background boxes, misses, crowd regions, and images
    with no prediction or no ground truth."""
    rng = np.random.default_rng(seed)
    images, anns, preds = [], [], []
    for iid in range(1, n_images + 1):
        images.append({"id": iid, "file_name": f"{iid}.jpg", "width": 200, "height": 150})
        for _ in range(rng.integers(0, 6)):
            w, h = rng.uniform(10, 60, 2)
            box = [float(rng.uniform(0, 200 - w)), float(rng.uniform(0, 150 - h)), float(w), float(h)]
            cat = int(rng.integers(1, n_classes + 1))
            crowd = rng.random() < 0.05
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": cat,
                    "bbox": box,
                    "area": w * h,
                    "iscrowd": int(crowd),
                }
            )
            for _k in range(int(rng.choice([0, 1, 1, 1, 2]))):  # missed, found, or found twice
                kind = rng.choice(["good", "good", "good", "class", "loose", "both"])
                j = rng.uniform(-0.08, 0.08, 4) if kind in ("good", "class") else rng.uniform(-0.6, 0.6, 4)
                pbox = [box[0] + j[0] * w, box[1] + j[1] * h, w * (1 + j[2]), h * (1 + j[3])]
                pcat = cat if kind in ("good", "loose") else int(rng.integers(1, n_classes + 1))
                preds.append(
                    {"image_id": iid, "category_id": pcat, "bbox": pbox, "score": float(rng.random())}
                )
        for _ in range(rng.poisson(0.7)):  # background
            w, h = rng.uniform(5, 40, 2)
            box = [float(rng.uniform(0, 200 - w)), float(rng.uniform(0, 150 - h)), float(w), float(h)]
            preds.append(
                {
                    "image_id": iid,
                    "category_id": int(rng.integers(1, n_classes + 1)),
                    "bbox": box,
                    "score": float(rng.random()),
                }
            )
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, n_classes + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, preds


def tidecv_numbers(gt: dict[str, Any], preds: list[dict[str, Any]], max_dets: int = 100) -> dict[str, Any]:
    from tidecv import TIDE, Data
    from tidecv.errors.main_errors import (
        BackgroundError,
        BoxError,
        ClassError,
        DuplicateError,
        FalseNegativeError,
        FalsePositiveError,
        MissedError,
        OtherError,
    )

    g = Data("gt", max_dets=max_dets)
    for img in gt["images"]:
        g.add_image(img["id"], img["file_name"])
    for a in gt["annotations"]:
        if a["iscrowd"]:
            g.add_ignore_region(a["image_id"], a["category_id"], box=a["bbox"])
        else:
            g.add_ground_truth(a["image_id"], a["category_id"], box=a["bbox"])
    d = Data("preds")
    for p in preds:
        d.add_detection(p["image_id"], p["category_id"], p["score"], box=p["bbox"])
    run = TIDE().evaluate(g, d, mode=TIDE.BOX)
    names = {
        ClassError: "classification",
        BoxError: "localization",
        OtherError: "both",
        DuplicateError: "duplicate",
        BackgroundError: "background",
        MissedError: "missed",
        FalsePositiveError: "false_positives",
        FalseNegativeError: "false_negatives",
    }
    dap = {names[k]: v / 100 for k, v in run.fix_main_errors().items()}
    dap |= {names[k]: v / 100 for k, v in run.fix_special_errors().items()}
    return {"ap": run.ap / 100, "dAP": dap, "counts": {names[k]: v for k, v in run.count_errors().items()}}


@pytest.mark.parametrize("seed", range(6))
def test_every_number_equals_tidecv(seed: int) -> None:
    gt, preds = problem(seed)
    ours, _table = breakdown(gt, preds)
    theirs = tidecv_numbers(gt, preds)
    assert ours["ap"] == pytest.approx(theirs["ap"], abs=1e-12)
    for name, value in theirs["dAP"].items():
        assert ours["dAP"][name] == pytest.approx(value, abs=1e-12), name
    # tidecv special dAPs can be negative (it does not clip them); ours are >= 0
    assert ours["counts"] == theirs["counts"]
    assert sum(ours["counts"][k] for k in ERROR_TYPES if k != "missed") > 0


def test_max_dets_cuts_per_image_over_all_classes() -> None:
    gt, preds = problem(11, n_images=20)
    ours, _t = breakdown(gt, preds, max_dets=2)
    theirs = tidecv_numbers(gt, preds, max_dets=2)
    assert ours["ap"] == pytest.approx(theirs["ap"], abs=1e-12)
    assert ours["counts"] == theirs["counts"]


def test_a_perfect_detector_has_no_errors_and_ap_one() -> None:
    gt, _preds = problem(3, n_images=10)
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in gt["annotations"]
        if not a["iscrowd"]
    ]
    ours, _t = breakdown(gt, perfect)
    assert ours["ap"] == 1.0 and all(v == 0 for v in ours["counts"].values())
    assert all(v == 0 for v in ours["dAP"].values())


def test_masks_equal_tidecv_in_mask_mode() -> None:
    """--iou-type segm: the same breakdown by mask IoU (the generated boxes as polygon masks,
    predictions as RLEs, as instance segmenters write them), against tidecv's mask mode."""
    from pycocotools import mask as mask_utils
    from tidecv import TIDE, Data

    gt, preds = problem(8, n_images=30)
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    rles = []
    for p in preds:
        x, y, w, h = p["bbox"]
        rle = mask_utils.frPyObjects([[x, y, x + w, y, x + w, y + h * 0.7, x, y + h]], 150, 200)[0]
        rles.append({**p, "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    ours, _t = breakdown(gt, rles, iou_type="segm")
    g, d = Data("gt"), Data("preds")
    for img in gt["images"]:
        g.add_image(img["id"], img["file_name"])
    for a in gt["annotations"]:
        m = mask_utils.frPyObjects(a["segmentation"], 150, 200)[0]
        add = g.add_ignore_region if a["iscrowd"] else g.add_ground_truth
        add(a["image_id"], a["category_id"], box=a["bbox"], mask=m)
    for p in rles:
        d.add_detection(p["image_id"], p["category_id"], p["score"], box=p["bbox"], mask=p["segmentation"])
    run = TIDE().evaluate(g, d, mode=TIDE.MASK)
    assert ours["ap"] == pytest.approx(run.ap / 100, abs=1e-12)
    theirs = {type_.short_name: v / 100 for type_, v in run.fix_main_errors().items()}
    names = {
        "Cls": "classification",
        "Loc": "localization",
        "Both": "both",
        "Dupe": "duplicate",
        "Bkg": "background",
        "Miss": "missed",
    }
    for short, value in theirs.items():
        assert ours["dAP"][names[short]] == pytest.approx(value, abs=1e-12), short
