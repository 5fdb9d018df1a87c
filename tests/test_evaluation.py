"""IoU, VOC AP, confusion matrices, classification metrics, bad predictions, and `dataforge evaluate`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dataforge.api import import_dataset
from dataforge.errors import DataError
from dataforge.evaluation.classification import evaluate_classification
from dataforge.evaluation.detection import detection_confusion
from dataforge.evaluation.run import evaluate
from dataforge.metrics import box_iou, greedy_match, voc_ap
from tests.conftest import REPO


def test_box_iou_matches_torchvision_and_known_values() -> None:
    import torch
    from torchvision.ops import box_iou as tv_iou

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (50, 2))
    a = np.hstack([xy, xy + rng.uniform(1, 50, (50, 2))])
    xy = rng.uniform(0, 100, (40, 2))
    b = np.hstack([xy, xy + rng.uniform(1, 50, (40, 2))])
    np.testing.assert_allclose(box_iou(a, b), tv_iou(torch.tensor(a), torch.tensor(b)).numpy(), atol=1e-12)
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(1 / 3)
    assert box_iou([[0, 0, 10, 10]], [[20, 20, 30, 30]])[0, 0] == 0
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0  # degenerate: no area, no NaN
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 40)


def test_greedy_match_takes_highest_score_first() -> None:
    iou = np.array([[0.9, 0.6], [0.0, 0.55]])  # gt x pred
    matched, m_iou = greedy_match(iou, [0.5, 0.9], 0.5)
    assert matched.tolist() == [-1, 0] and m_iou.tolist() == [0.0, 0.6]  # pred 1 (score .9) takes gt 0 first


def test_voc_ap_known_values() -> None:
    # 3 positives; dets in score order: TP, FP, TP, FP -> recall .33 .33 .67 .67, precision 1 .5 .67 .5
    rec = np.array([1, 1, 2, 2]) / 3
    prec = np.array([1, 1 / 2, 2 / 3, 2 / 4])
    assert voc_ap(rec, prec) == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)
    # 11-point: r=0..0.3 -> 1 (4 points), 0.4..0.6 -> 2/3 (3 points), 0.7..1 -> 0 (4 points)
    assert voc_ap(rec, prec, eleven_point=True) == pytest.approx((4 * 1 + 3 * 2 / 3) / 11)


def test_detection_confusion_shows_cross_class_mistakes() -> None:
    gt = {
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "images": [{"id": 1}],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            {"image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10]},
            {"image_id": 1, "category_id": 2, "bbox": [80, 80, 10, 10]},
            {"image_id": 1, "category_id": 1, "bbox": [30, 30, 10, 10], "iscrowd": 1},
        ],
    }
    preds = [
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.9},  # cat called dog
        {"image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10], "score": 0.8},  # right
        {"image_id": 1, "category_id": 1, "bbox": [200, 200, 5, 5], "score": 0.7},  # nothing there
        {"image_id": 1, "category_id": 1, "bbox": [80, 80, 10, 10], "score": 0.1},
    ]  # below threshold
    c = detection_confusion(gt, preds, iou_threshold=0.5, score_threshold=0.5)
    assert c["labels"] == ["cat", "dog", "background"] and c["rows"] == "ground truth"
    assert c["matrix"] == [[0, 1, 0], [0, 1, 1], [1, 0, 0]]
    assert c["per_class"] == [
        {"name": "cat", "TP": 0, "FP": 1, "FN": 1},
        {"name": "dog", "TP": 1, "FP": 1, "FN": 1},
    ]


def test_classification_metrics() -> None:
    names = {1: "cat", 2: "dog", 3: "bird"}
    truth = {1: 1, 2: 1, 3: 2, 4: 3}
    preds = [
        {"image_id": 1, "scores": {"cat": 0.9, "dog": 0.1, "bird": 0.0}},
        {"image_id": 2, "scores": {"cat": 0.3, "dog": 0.6, "bird": 0.1}},
        {"image_id": 3, "scores": {"cat": 0.2, "dog": 0.7, "bird": 0.1}},
        {"image_id": 4, "scores": {"cat": 0.5, "dog": 0.4, "bird": 0.1}},
    ]
    r = evaluate_classification(truth, preds, names, "p.json", top_k=(1, 2, 3))
    assert r["accuracy"] == 0.5 and r["top_k"] == {"top1": 0.5, "top2": 0.75, "top3": 1.0}
    assert r["confusion"]["matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    cat = r["per_class"][0]
    assert (cat["precision"], cat["recall"]) == (0.5, 0.5)
    with pytest.raises(DataError, match=r"p.json: prediction 0: score of 'cat' must be a number >= 0"):
        evaluate_classification(truth, [{"image_id": 1, "scores": {"cat": float("nan")}}], names, "p.json")


@pytest.fixture(scope="module")
def pets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("eval") / "pets"
    ex = REPO / "examples" / "pets-mini"
    import_dataset(ex / "instances.json", store=store, images=ex / "images")
    return store


def _noisy_predictions(store: Path, path: Path) -> Path:
    doc = json.loads((store / "annotations.json").read_text())
    rng = np.random.default_rng(0)
    preds = []
    for a in doc["annotations"]:
        if rng.random() < 0.85:
            x, y, w, h = a["bbox"]
            preds.append(
                {
                    "image_id": a["image_id"],
                    "category_id": a["category_id"] if rng.random() < 0.9 else 1,
                    "bbox": [x + rng.normal(0, 2), y + rng.normal(0, 2), w, h],
                    "score": float(rng.random()),
                }
            )
    path.write_text(json.dumps(preds))
    return path


def test_evaluate_cli_on_the_example_writes_every_number(pets: Path, tmp_path: Path, cli) -> None:
    preds = _noisy_predictions(pets, tmp_path / "preds.json")
    r = cli("evaluate", pets, "--predictions", preds, "--out", tmp_path / "eval")
    assert r.code == 0, r.err
    assert "AP50" in r.out and "VOC AP50: all-point" in r.out and "report:" in r.out
    rep = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert rep["task"] == "detection" and len(rep["detection"]["coco_stats"]) == 12
    assert 0.3 < rep["detection"]["coco_stats"][1] <= 1.0
    assert rep["detection"]["iou_of_matches"]["count"] > 50
    # the same numbers from the plain COCO file, as for a published benchmark
    r2 = evaluate(preds, gt_file=REPO / "examples" / "pets-mini" / "instances.json")
    assert r2["detection"]["coco_stats"] == pytest.approx(rep["detection"]["coco_stats"], abs=1e-12)


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {"image_id": 999, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5},
            r"prediction 1: image_id 999 is not in the ground truth",
        ),
        (
            {"image_id": 1, "category_id": 42, "bbox": [0, 0, 5, 5], "score": 0.5},
            r"prediction 1: category_id 42 is not in the ground truth",
        ),
        (
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, -5, 5], "score": 0.5},
            r"prediction 1: bbox \[0, 0, -5, 5\] has a negative width",
        ),
        (
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": -0.1},
            r"prediction 1: score must be a number >= 0, found -0.1",
        ),
        (
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": "NaN"},
            r"prediction 1: score must be a number >= 0",
        ),
    ],
)
def test_bad_predictions_name_the_entry(entry: dict, message: str, pets: Path, tmp_path: Path) -> None:
    ok = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}
    (tmp_path / "p.json").write_text(json.dumps([ok, entry]))
    with pytest.raises(DataError, match=message):
        evaluate(tmp_path / "p.json", store=pets)


def test_predictions_for_another_store(pets: Path, tmp_path: Path, cli) -> None:
    (tmp_path / "p.json").write_text(
        json.dumps(
            [{"image_id": 5000 + i, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5} for i in range(3)]
        )
    )
    r = cli("evaluate", pets, "--predictions", tmp_path / "p.json")
    assert r.code == 3 and "is it a predictions file for another store?" in r.err


def test_empty_predictions_evaluate_to_zero(pets: Path, tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text("[]")
    rep = evaluate(tmp_path / "p.json", store=pets)
    assert rep["detection"]["coco_stats"][0] == 0.0 and rep["detection"]["voc"]["mAP50_all_point"] == 0.0


def test_classification_end_to_end_on_class_folders(tmp_path: Path, cli) -> None:
    from PIL import Image

    for split, cls, n in (("val", "cat", 3), ("val", "dog", 2)):
        d = tmp_path / "folders" / split / cls
        d.mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 40, 10, 10)).save(d / f"{cls}{i}.png")
    import_dataset(tmp_path / "folders", store=tmp_path / "s")
    doc = json.loads((tmp_path / "s" / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    preds = [
        {
            "image_id": img["id"],
            "scores": {"cat": 0.8, "dog": 0.2} if i % 2 == 0 else {"cat": 0.1, "dog": 0.9},
        }
        for i, img in enumerate(doc["images"])
    ]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    r = cli(
        "evaluate",
        tmp_path / "s",
        "--predictions",
        tmp_path / "p.json",
        "--split",
        "val",
        "--out",
        tmp_path / "e",
    )
    assert r.code == 0, r.err
    rep = json.loads((tmp_path / "e" / "report.json").read_text())["classification"]
    truth = [names[img["labels"][0]] for img in doc["images"]]
    guessed = ["cat" if i % 2 == 0 else "dog" for i in range(len(truth))]
    assert rep["accuracy"] == pytest.approx(
        sum(t == g for t, g in zip(truth, guessed, strict=True)) / len(truth)
    )
    assert rep["top_k"]["top2"] == 1.0 and (tmp_path / "e" / "report.html").is_file()


def test_a_split_is_evaluated_with_predictions_for_the_whole_store(pets: Path, tmp_path: Path) -> None:
    from dataforge.api import split_store

    s2 = tmp_path / "pets"
    import shutil

    shutil.copytree(pets, s2)
    split_store(s2, ratios={"train": 0.5, "val": 0.5}, seed=0)
    preds = _noisy_predictions(s2, tmp_path / "preds.json")
    full = evaluate(preds, store=s2)
    val = evaluate(preds, store=s2, split="val")
    n_val = val["ground_truth"]["images"]
    assert 0 < n_val < full["ground_truth"]["images"]
    assert val["predictions"]["outside_selection"] > 0
    assert val["detection"]["coco_stats"] != full["detection"]["coco_stats"]
    bad = [
        *json.loads(preds.read_text()),
        {"image_id": 10**6, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5},
    ]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"image_id 1000000 is not in the ground truth"):
        evaluate(tmp_path / "bad.json", store=s2, split="val")


def _gt(boxes_by_image: dict[int, list[list[float]]]) -> dict:
    anns = [
        {"id": n + 1, "image_id": i, "category_id": 1, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
        for n, (i, b) in enumerate((i, b) for i, bs in boxes_by_image.items() for b in bs)
    ]
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in boxes_by_image]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cat"}]}


def test_best_f1_names_the_threshold_a_hand_count_gives() -> None:
    """Two objects; a hit at 0.9, a false positive at 0.8, a hit at 0.7: keeping all three gives
    precision 2/3, recall 1, F1 0.8, better than stopping at 0.9 (F1 2/3) or 0.8 (F1 0.5)."""
    from dataforge.evaluation.detection import evaluate_detections

    gt = _gt({1: [[0, 0, 20, 20], [50, 50, 20, 20]]})
    preds = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [80, 0, 10, 10], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [51, 51, 20, 20], "score": 0.7},
    ]
    best = evaluate_detections(gt, preds).metrics["best_f1"]
    assert best == {"value": pytest.approx(0.8), "score_threshold": 0.7, "precision": pytest.approx(2 / 3),
                    "recall": 1.0, "kept": 3}  # fmt: skip


def test_best_f1_equals_matching_again_at_every_threshold() -> None:
    """On random boxes, the metric (one matching, cumulative counts) equals the best F1 over every
    score threshold found by keeping only the predictions at or above it and matching them again."""
    from dataforge.evaluation.detection import evaluate_detections, voc_and_matches

    rng = np.random.default_rng(4)
    boxes = {
        i: [[*rng.uniform(0, 70, 2).round(1), *rng.uniform(5, 30, 2).round(1)] for _ in range(4)]
        for i in range(1, 7)
    }
    gt = _gt(boxes)
    preds = []
    for i, bs in boxes.items():
        for b in bs:
            if rng.random() < 0.7:  # a near hit, jittered
                preds.append({"image_id": i, "category_id": 1, "bbox": [v + rng.normal(0, 2) for v in b]})
        for _ in range(2):  # clutter
            preds.append({"image_id": i, "category_id": 1, "bbox": [*rng.uniform(0, 80, 2), 8.0, 8.0]})
    for p in preds:
        p["score"] = round(float(rng.random()), 2)  # ties included
    best = evaluate_detections(gt, preds).metrics["best_f1"]
    f1s = []
    for t in sorted({p["score"] for p in preds}):
        kept = [p for p in preds if p["score"] >= t]
        m = voc_and_matches(gt, kept, 0.5)[2]
        tp = int(m.true_positive[m.scored].sum())
        precision, recall = tp / int(m.scored.sum()), tp / m.positives
        f1s.append((2 * precision * recall / (precision + recall) if tp else 0.0, t))
    top = max(f for f, _ in f1s)
    assert best["value"] == pytest.approx(top, abs=1e-12)
    assert best["score_threshold"] in {t for f, t in f1s if f == pytest.approx(top, abs=1e-12)}


def test_worst_images_count_false_positives_and_misses_of_every_image() -> None:
    """Image 3: two confident false positives and a miss; image 1: one miss, its prediction
    scored below 0.5 (not counted as a false positive); image 2: found. Images without errors are
    left out; the order is most errors first. (Before one shared table, only images without any
    prediction were listed.)"""
    from dataforge.evaluation.detection import evaluate_detections

    gt = _gt({1: [[0, 0, 20, 20]], 2: [[10, 10, 30, 30]], 3: [[40, 40, 20, 20]]})
    preds = [
        {"image_id": 1, "category_id": 1, "bbox": [70, 70, 10, 10], "score": 0.3},
        {"image_id": 2, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9},
        {"image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 3, "category_id": 1, "bbox": [80, 0, 10, 10], "score": 0.6},
    ]
    worst = evaluate_detections(gt, preds).worst_images
    assert [(w["image_id"], w["false_positives"], w["missed"]) for w in worst] == [(3, 2, 1), (1, 0, 1)]
    assert worst[0]["file_name"] == "3.jpg"


def test_ground_truth_file_problems_are_named_and_mask_only_objects_get_their_mask_box(tmp_path) -> None:
    """A --gt file whose annotation has a malformed box, an unknown image or category is a one-line
    error naming the annotation (it was a traceback from deep in the matcher); an annotation with
    a mask and no box (some exporters write masks only) takes its mask's box, so it scores as the
    same object given with that box."""
    from dataforge.evaluation.detection import evaluate_detections
    from dataforge.evaluation.run import ground_truth_from_file

    square = [[10.0, 10.0, 50.0, 10.0, 50.0, 50.0, 10.0, 50.0]]
    base = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}],
    }
    ann = {"id": 7, "image_id": 1, "category_id": 1, "segmentation": square, "area": 1600.0, "iscrowd": 0}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({**base, "annotations": [ann]}))
    gt = ground_truth_from_file(path)
    assert gt["annotations"][0]["bbox"] == [10.0, 10.0, 40.0, 40.0]
    preds = [{"image_id": 1, "category_id": 1, "bbox": [10.0, 10.0, 40.0, 40.0], "score": 0.9}]
    assert evaluate_detections(gt, preds).coco_stats[0] == pytest.approx(1.0)
    for change, says in [
        ({"bbox": [10, 10, 40]}, "annotation 0 (id 7): bbox must be [x, y, width, height]"),
        ({"bbox": [10, 10, -4, 40]}, "width, height >= 0"),
        ({"bbox": [10, 10, float("nan"), 40]}, "finite"),
        ({"image_id": 9, "bbox": [1, 1, 2, 2]}, "image_id 9 is not in 'images'"),
        ({"category_id": 5, "bbox": [1, 1, 2, 2]}, "category_id 5 is not in 'categories'"),
        ({"segmentation": []}, "bbox must be"),  # neither a box nor a mask
    ]:
        path.write_text(json.dumps({**base, "annotations": [{**ann, **change}]}))
        with pytest.raises(DataError, match=re.escape(says)):
            ground_truth_from_file(path)
