"""COCO detection numbers equal pycocotools' (1e-9) on problems of many shapes; the vectorized
engine's whole precision and recall arrays equal pycocotools' bit for bit."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

from dataforge.evaluation.detection import evaluate_detections, run_cocoeval


def pycocotools_stats(gt: dict, preds: list[dict]) -> np.ndarray:
    """The reference's 12 numbers."""
    return np.asarray(pycocotools_eval(gt, preds).stats)


def pycocotools_eval(gt: dict, preds: list[dict]):
    """The reference: pycocotools' COCOeval, evaluated. An empty prediction list is given as an
    empty result set (pycocotools' loadRes crashes on []; the evaluation itself then runs normally)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy({"info": {}, "licenses": [], **gt})
        coco_gt.createIndex()
        if preds:
            coco_dt = coco_gt.loadRes(copy.deepcopy(preds))
        else:
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def problem(
    seed: int,
    *,
    n_images: int = 30,
    n_cats: int = 4,
    first_cat: int = 1,
    crowd: float = 0.1,
    no_gt_images: int = 3,
    empty_cats: int = 1,
    tie_scores: bool = False,
) -> tuple[dict, list[dict]]:
    """A random detection problem: jittered copies of the ground truth plus noise boxes."""
    rng = np.random.default_rng(seed)
    cats = [{"id": first_cat + k, "name": f"c{k}"} for k in range(n_cats)]
    images, anns, preds = [], [], []
    for i in range(1, n_images + 1):
        w, h = int(rng.integers(60, 400)), int(rng.integers(60, 400))
        images.append({"id": i, "file_name": f"{i}.jpg", "width": w, "height": h})
        n_obj = 0 if i > n_images - no_gt_images else int(rng.integers(0, 8))
        for _ in range(n_obj):
            cid = first_cat + int(rng.integers(0, n_cats - empty_cats))
            bw, bh = float(rng.uniform(2, w / 2)), float(rng.uniform(2, h / 2))
            x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            iscrowd = int(rng.random() < crowd)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cid,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh * float(rng.uniform(0.6, 1.0)),
                    "iscrowd": iscrowd,
                }
            )
            if rng.random() < 0.8:
                j = rng.normal(0, 0.1, 4) * [bw, bh, bw, bh]
                pc = cid if rng.random() < 0.85 else first_cat + int(rng.integers(0, n_cats))
                preds.append(
                    {
                        "image_id": i,
                        "category_id": pc,
                        "bbox": [x + j[0], y + j[1], max(1.0, bw + j[2]), max(1.0, bh + j[3])],
                        "score": 0.5 if tie_scores else float(rng.random()),
                    }
                )
        for _ in range(int(rng.integers(0, 4))):
            bw, bh = float(rng.uniform(2, w / 2)), float(rng.uniform(2, h / 2))
            preds.append(
                {
                    "image_id": i,
                    "category_id": first_cat + int(rng.integers(0, n_cats)),
                    "bbox": [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), bw, bh],
                    "score": 0.5 if tie_scores else float(rng.random()),
                }
            )
    return {"images": images, "annotations": anns, "categories": cats}, preds


CASES = {
    "random": problem(1),
    "class id 0": problem(2, first_cat=0),
    "many crowd boxes": problem(3, crowd=0.4),
    "tied scores": problem(4, tie_scores=True),
    "bigger": problem(5, n_images=200, n_cats=10),
    "no predictions": (problem(6)[0], []),
    "no ground truth boxes": ({**problem(7)[0], "annotations": []}, problem(7)[1]),
}


def crowded(seed: int, n_images: int = 40) -> tuple[dict, list[dict]]:
    """Many boxes of two classes on small images, integer coordinates, scores in quarters: many
    predictions compete for one object, IoUs tie, crowd regions and every area range occur, and
    image ids run backwards (COCOeval orders images by id, not as listed)."""
    rng = np.random.default_rng(seed)
    images, anns, preds = [], [], []
    for i in range(n_images):
        iid = 1000 - i
        images.append({"id": iid, "file_name": f"{iid}.jpg", "width": 100, "height": 100})
        for _ in range(int(rng.integers(0, 12))):
            x, y = (float(v) for v in rng.integers(0, 40, 2))
            w, h = (float(v) for v in rng.integers(3, 60, 2))
            anns.append(
                {"id": len(anns) + 1, "image_id": iid, "category_id": int(rng.integers(1, 3)),
                 "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.15)}
            )  # fmt: skip
        for _ in range(int(rng.integers(0, 30))):
            x, y = (float(v) for v in rng.integers(0, 40, 2))
            w, h = (float(v) for v in rng.integers(3, 60, 2))
            preds.append(
                {"image_id": iid, "category_id": int(rng.integers(1, 3)), "bbox": [x, y, w, h],
                 "score": float(rng.integers(0, 5)) / 4}
            )  # fmt: skip
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }, preds


def _many_per_image() -> tuple[dict, list[dict]]:
    gt, preds = problem(8, n_images=5, n_cats=2, empty_cats=0)
    rng = np.random.default_rng(0)
    extra = [
        {"image_id": 1, "category_id": 1, "bbox": [float(rng.uniform(0, 50)), 5.0, 10.0, 10.0],
         "score": float(rng.random())}
        for _ in range(150)
    ]  # fmt: skip
    return gt, preds + extra


ARRAY_CASES = {
    **CASES,
    "crowded 0": crowded(0),
    "crowded 1": crowded(1),
    "crowded 2": crowded(2),
    "150 predictions of one class on an image": _many_per_image(),
}


@pytest.mark.parametrize("name", sorted(ARRAY_CASES))
def test_precision_and_recall_arrays_equal_pycocotools_bit_for_bit(name: str) -> None:
    """The vectorized engine computes each number with pycocotools' own operations, so its whole
    precision [T, R, K, A, M] and recall [T, K, A, M] arrays are pycocotools', not just close."""
    from dataforge.evaluation.overlaps import coco_eval, overlaps

    gt, preds = ARRAY_CASES[name]
    ref = pycocotools_eval(gt, preds)
    ours = coco_eval(overlaps(gt, preds), [c["id"] for c in gt["categories"]])
    np.testing.assert_array_equal(ours.eval["precision"], ref.eval["precision"])
    np.testing.assert_array_equal(ours.eval["recall"], ref.eval["recall"])
    assert ours.stats == list(ref.stats)


@pytest.mark.parametrize("name", sorted(CASES))
def test_coco_stats_equal_pycocotools(name: str) -> None:
    gt, preds = CASES[name]
    ours = np.asarray(run_cocoeval(gt, preds).stats[:12])
    ref = pycocotools_stats(gt, preds)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
    assert evaluate_detections(gt, preds).coco_stats == pytest.approx(list(ref), abs=1e-9)


def test_more_than_100_detections_per_image_and_category() -> None:
    gt, preds = problem(8, n_images=5, n_cats=2, empty_cats=0)
    rng = np.random.default_rng(0)
    extra = [
        {
            "image_id": 1,
            "category_id": 1,
            "bbox": [float(rng.uniform(0, 50)), 5.0, 10.0, 10.0],
            "score": float(rng.random()),
        }
        for _ in range(150)
    ]
    ours = np.asarray(run_cocoeval(gt, preds + extra).stats[:12])
    np.testing.assert_allclose(ours, pycocotools_stats(gt, preds + extra), atol=1e-9)


def test_annotation_id_zero_is_not_read_as_unmatched() -> None:
    """pycocotools reads ground-truth annotation id 0 as "unmatched" (EVALUATION.md, cocoapi #664).
    dataforge re-numbers ids before evaluating, so ids 0,1 score exactly like ids 1,2."""
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 0, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "area": 400, "iscrowd": 0},
        ],
    }
    preds = [
        {"image_id": 1, "category_id": 1, "bbox": [11, 11, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [80, 10, 10, 10], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [51, 50, 20, 20], "score": 0.7},
    ]
    shifted = {**gt, "annotations": [{**a, "id": a["id"] + 1} for a in gt["annotations"]]}
    ref = pycocotools_stats(shifted, preds)
    ours = evaluate_detections(gt, preds).coco_stats
    assert ours == pytest.approx(list(ref), abs=1e-9)
    # IoUs 0.822 and 0.905: both matched at 0.5..0.8, one at 0.85/0.9, none at 0.95 -> AR100 = 0.8
    assert ours[8] == pytest.approx(0.8)
    trap = pycocotools_stats(gt, preds)  # the reference itself, fed id 0, loses a match
    assert trap[0] < ours[0] - 0.1 and trap[8] < ours[8]


def test_per_class_ap_averages_to_the_summary() -> None:
    gt, preds = CASES["random"]
    res = evaluate_detections(gt, preds)
    valid = [c["AP"] for c in res.per_class if c["AP"] > -1]
    assert np.mean(valid) == pytest.approx(res.coco_stats[0], abs=1e-12)
    empty = next(c for c in res.per_class if c["name"] == "c3")  # no ground truth in this class
    assert empty["AP"] == -1.0


def test_perfect_predictions_score_one() -> None:
    gt, _ = problem(9, crowd=0.0)
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in gt["annotations"]
    ]
    res = evaluate_detections(gt, perfect)
    assert res.coco_stats[0] == pytest.approx(1.0) and res.voc["mAP50_all_point"] == pytest.approx(1.0)
    assert res.voc["mAP50_11_point"] == pytest.approx(1.0)
    conf = np.array(res.confusion["matrix"])
    assert conf[:-1, -1].sum() == 0 and conf[-1, :-1].sum() == 0  # no FN, no FP


def _real_coco_files() -> list:
    from tests.conftest import INTEROP

    root = INTEROP / "coco"
    return sorted(p for p in root.rglob("*.json") if "panoptic" not in p.name) if root.is_dir() else []


@pytest.mark.skipif(not _real_coco_files(), reason="interop corpus not found (../shared/interop; CI has it)")
@pytest.mark.parametrize("path", _real_coco_files(), ids=lambda p: f"{p.parent.parent.name}-{p.name}")
def test_real_coco_files_equal_pycocotools(path) -> None:
    """COCO files written by another tool (crowd RLE, polygons, keypoints, ids 0 and gaps) with
    predictions derived from their boxes: jittered, relabelled, and a few false positives."""
    import json

    gt = json.loads(path.read_text())
    rng = np.random.default_rng(len(gt["annotations"]))
    cats = [c["id"] for c in gt["categories"]]
    preds = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        preds.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"] if rng.random() < 0.7 else cats[0],
                "bbox": [x + rng.normal(0, 0.3), y + rng.normal(0, 0.3), w, h],
                "score": float(rng.random()),
            }
        )
    for img in gt["images"]:
        preds.append(
            {"image_id": img["id"], "category_id": cats[-1], "bbox": [0.0, 0.0, 2.0, 2.0], "score": 0.4}
        )
    reindexed = {**gt, "annotations": [{**a, "id": i + 1} for i, a in enumerate(gt["annotations"])]}
    ref = pycocotools_stats(reindexed, preds)
    assert evaluate_detections(gt, preds).coco_stats == pytest.approx(list(ref), abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_confusion_matrix_equals_matching_each_image_on_its_own(seed: int) -> None:
    """The confusion matrix comes from the shared table, all images matched at once, rank by rank;
    on crowded images (competing predictions, tied scores and IoUs) it equals matching each image
    alone with ``greedy_match`` (highest score first, the free ground truth of highest IoU)."""
    from dataforge.evaluation.detection import detection_confusion
    from dataforge.metrics import box_iou, greedy_match

    gt, preds = crowded(seed)
    cats = [1, 2]
    expected = np.zeros((3, 3), dtype=np.int64)

    def xyxy(b: list[float]) -> list[float]:
        return [b[0], b[1], b[0] + b[2], b[1] + b[3]]

    for img in gt["images"]:
        g = [a for a in gt["annotations"] if a["image_id"] == img["id"] and not a["iscrowd"]]
        d = [p for p in preds if p["image_id"] == img["id"] and p["score"] >= 0.25]
        if g and d:
            m, _ = greedy_match(
                box_iou([xyxy(a["bbox"]) for a in g], [xyxy(p["bbox"]) for p in d]),
                [p["score"] for p in d],
                0.5,
            )
        else:
            m = np.full(len(d), -1)
        for p, k in zip(d, m.tolist(), strict=True):
            row = cats.index(g[k]["category_id"]) if k >= 0 else 2
            expected[row, cats.index(p["category_id"])] += 1
        for j, a in enumerate(g):
            if j not in set(m.tolist()):
                expected[cats.index(a["category_id"]), 2] += 1
    got = detection_confusion(gt, preds, iou_threshold=0.5, score_threshold=0.25)
    np.testing.assert_array_equal(np.array(got["matrix"]), expected)
