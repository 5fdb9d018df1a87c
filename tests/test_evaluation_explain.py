"""`evaluate --explain` (issue 17): the settings behind the numbers and other tools' conventions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataforge.evaluation.explain import ultralytics_style
from tests.conftest import REPO, run_dataforge


def _gt(boxes: list[list[float]], cat: int = 1) -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "annotations": [
            {"id": k + 1, "image_id": 1, "category_id": cat, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for k, b in enumerate(boxes)
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }


def test_ultralytics_style_on_cases_worked_by_hand() -> None:
    boxes = [[0, 0, 10, 10], [50, 50, 10, 10]]
    gt = _gt(boxes)
    perfect = [{"image_id": 1, "category_id": 1, "bbox": b, "score": 0.9} for b in boxes]
    # a perfect model scores 0.995, as in Ultralytics: the last trapezoid (recall 0.99 to 1.0) ends
    # at the appended point (1.0, precision 0)
    assert ultralytics_style(gt, perfect) == {"mAP50-95": pytest.approx(0.995), "mAP50": pytest.approx(0.995)}
    # TP 0.9, FP 0.8, TP 0.7: precision 1 up to recall 0.5, then 2/3 up to recall 1; the trapezoids
    # on the 101 points smooth the step at 0.5 over one interval (0.49 to 0.51: 1/300 less)
    mixed = [
        {"image_id": 1, "category_id": 1, "bbox": boxes[0], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [80, 0, 10, 10], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": boxes[1], "score": 0.7},
    ]
    step = 0.5 * 1 + 0.5 * (2 / 3)
    assert ultralytics_style(gt, mixed)["mAP50"] == pytest.approx(step, abs=0.01)
    # one of two found, nothing else: recall 0.5 at precision 1, then the straight line to (1, 0)
    half = ultralytics_style(gt, perfect[:1])["mAP50"]
    assert half == pytest.approx(0.5 + 0.5 * 0.5, abs=0.01)  # COCO counts 0.5 here
    assert ultralytics_style(gt, [])["mAP50"] == 0.0


def test_cli_explain_prints_every_setting_and_the_conventions(tmp_path: Path) -> None:
    ex = REPO / "examples" / "pets-mini"
    run_dataforge("import", ex / "instances.json", "--images", ex / "images", "--store", tmp_path / "pets")
    r = run_dataforge(
        "evaluate",
        tmp_path / "pets",
        "--predictions",
        ex / "predictions.json",
        "--explain",
        "--bootstrap",
        "0",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    e = report["explain"]
    for key in (
        "iou_thresholds",
        "max_detections",
        "area_ranges",
        "crowd",
        "score_filter",
        "category_mapping",
    ):
        assert key in e["settings"]
    values = {c["name"]: c["value"] for c in e["conventions"]}
    assert values["COCO AP (pycocotools / faster-coco-eval)"] == report["detection"]["coco_stats"][0]
    assert values["VOC all-point AP50 (VOC2010+)"] == report["detection"]["voc"]["mAP50_all_point"]
    assert 0 < values["Ultralytics-style mAP50-95"] <= 1 and "TIDE AP50" in values
    r = run_dataforge(
        "evaluate",
        tmp_path / "pets",
        "--predictions",
        ex / "predictions.json",
        "--explain",
        "--bootstrap",
        "0",
    )
    assert "what sets these numbers" in r.stdout and "Ultralytics-style mAP50" in r.stdout
