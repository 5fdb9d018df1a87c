"""Operating points (issue 17): the best-F1 threshold per class equals a brute-force search over
every threshold, precision at fixed recalls, thresholds.json, the confusion matrix it implies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dataforge.evaluation.run import evaluate
from dataforge.metrics import box_iou, greedy_match
from tests.test_evaluation_errors import problem


def brute_force(gt: dict, preds: list[dict], cat: int, iou: float = 0.5) -> tuple[float, float, float, float]:
    """(threshold, precision, recall, F1) with the highest F1, trying every score as threshold."""
    objects = [a for a in gt["annotations"] if a["category_id"] == cat]
    positives = sum(1 for a in objects if not a["iscrowd"])
    mine = [p for p in preds if p["category_id"] == cat]
    best = (0.0, 0.0, 0.0, -1.0)
    for t in sorted({p["score"] for p in mine}):
        tp = fp = 0
        for img in gt["images"]:
            g = [a for a in objects if a["image_id"] == img["id"]]
            real = [a for a in g if not a["iscrowd"]]
            crowd = [a for a in g if a["iscrowd"]]
            d = [p for p in mine if p["image_id"] == img["id"] and p["score"] >= t]
            if not d:
                continue
            xy = lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]  # noqa: E731
            m = np.full(len(d), -1)
            if real:
                m, _ = greedy_match(
                    box_iou([xy(a["bbox"]) for a in real], [xy(p["bbox"]) for p in d]),
                    [p["score"] for p in d],
                    iou,
                )
            for k, p in enumerate(d):
                if m[k] >= 0:
                    tp += 1
                elif crowd and box_iou([xy(a["bbox"]) for a in crowd], [xy(p["bbox"])]).max() >= iou:
                    continue  # on a crowd region of its class: not counted
                else:
                    fp += 1
        if tp == 0:
            continue
        precision, recall = tp / (tp + fp), tp / positives
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best[3] + 1e-12 or (abs(f1 - best[3]) <= 1e-12 and t < best[0]):
            best = (t, precision, recall, f1)
    return best


def test_best_f1_per_class_equals_a_brute_force_search(tmp_path: Path) -> None:
    gt, preds = problem(4, n_images=40)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "p.json").write_text(json.dumps(preds))
    report = evaluate(tmp_path / "p.json", gt_file=tmp_path / "gt.json", out=tmp_path / "eval")
    ops = report["detection"]["metrics"]["operating_points"]
    for c in ops["per_class"]:
        t, precision, recall, f1 = brute_force(gt, preds, c["category_id"])
        assert c["f1"] == pytest.approx(f1, abs=1e-12) and c["precision"] == pytest.approx(
            precision, abs=1e-12
        )
        assert c["recall"] == pytest.approx(recall, abs=1e-12) and c["score_threshold"] == pytest.approx(
            t, abs=0
        )
        levels = c["precision_at_recall"]
        assert all(
            levels[a] is None or levels[b] is None or levels[a] >= levels[b]
            for a, b in zip(levels, list(levels)[1:], strict=False)
        )
    deployed = json.loads((tmp_path / "eval" / "thresholds.json").read_text())
    assert deployed["thresholds"] == {c["name"]: c["score_threshold"] for c in ops["per_class"]}
    kept = [p for p in preds if p["score"] >= deployed["by_category_id"][str(p["category_id"])]]
    confusion = report["detection"]["confusion_at_thresholds"]
    assert sum(r["TP"] + r["FP"] for r in confusion["per_class"]) == len(kept)


def test_calibration_of_calibrated_and_overconfident_scores() -> None:
    """Scores drawn so that a prediction with score s is right with probability s: ECE near 0;
    the same predictions all scored 0.99: ECE is 0.99 minus the share right."""
    from dataforge.evaluation.metrics.calibration import reliability

    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, 20000)
    right = rng.uniform(0, 1, s.size) < s
    calibrated = reliability(s, right)
    assert calibrated["ece"] < 0.02 and sum(b["count"] for b in calibrated["bins"]) == s.size
    over = reliability(np.full(s.size, 0.99), right)
    assert over["ece"] == pytest.approx(0.99 - right.mean(), abs=1e-12)
    assert over["mce"] == pytest.approx(over["ece"]) and reliability(np.zeros(0), right[:0])["ece"] is None


def test_detection_and_classification_reports_carry_calibration(tmp_path: Path) -> None:
    gt, preds = problem(6, n_images=30)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "p.json").write_text(json.dumps(preds))
    report = evaluate(tmp_path / "p.json", gt_file=tmp_path / "gt.json", out=tmp_path / "eval", bootstrap=0)
    cal = report["detection"]["metrics"]["calibration"]
    scored = report["detection"]["metrics"]["calibration"]["predictions"]
    assert 0 <= cal["ece"] <= 1 and scored == sum(b["count"] for b in cal["bins"]) > 0
    assert "Calibration" in (tmp_path / "eval" / "report.html").read_text()
    images = [
        {"id": i, "file_name": f"{i}.png", "width": 8, "height": 8, "labels": [1 + i % 2]}
        for i in range(1, 41)
    ]
    cls_gt = {
        "images": images,
        "annotations": [],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    (tmp_path / "cgt.json").write_text(json.dumps(cls_gt))
    preds = [{"image_id": i, "scores": {"a": 0.9, "b": 0.1}} for i in range(1, 41)]  # right half the time
    (tmp_path / "cp.json").write_text(json.dumps(preds))
    report = evaluate(tmp_path / "cp.json", gt_file=tmp_path / "cgt.json")
    assert report["classification"]["metrics"]["calibration"]["ece"] == pytest.approx(0.4, abs=1e-12)
