"""`dataforge evaluate` on point-regression results (keypoint results without a score, one per image):
pixel errors, PCK and the worst images, with the numbers worked out by hand; bad entries are
one-line errors naming them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from dataforge.api import evaluate
from dataforge.errors import DataError


def gt_file(tmp_path: Path, points: list[list[float]], size: tuple[int, int] = (100, 50)) -> Path:
    """One face per image (100x50: PCK's reference, the longer side, is 100 px) with the points
    ``[x, y, v] * 2`` of ``points[i]``."""
    images = [
        {"id": i + 1, "file_name": f"{i}.jpg", "width": size[0], "height": size[1]}
        for i in range(len(points))
    ]
    anns = [
        {
            "id": i + 1,
            "image_id": i + 1,
            "category_id": 7,
            "bbox": [0, 0, 10, 10],
            "area": 100,
            "iscrowd": 0,
            "keypoints": kps,
            "num_keypoints": sum(1 for v in kps[2::3] if v > 0),
        }
        for i, kps in enumerate(points)
    ]
    cats = [{"id": 7, "name": "face", "keypoints": ["eye", "nose"], "skeleton": [[1, 2]]}]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def preds_file(tmp_path: Path, preds: list[dict[str, Any]]) -> Path:
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(preds))
    return path


def test_errors_and_pck_by_hand(tmp_path: Path) -> None:
    """Image 1: the eye 5 px off (a 3-4-5 triangle), the nose exact; image 2: the eye exact, the
    nose unlabelled (v = 0: not counted); image 3 labelled, but no prediction (missed in PCK)."""
    gt = gt_file(tmp_path, [[10, 10, 2, 20, 20, 2], [30, 30, 1, 0, 0, 0], [40, 40, 2, 45, 45, 2]])
    preds = preds_file(
        tmp_path,
        [
            {"image_id": 1, "category_id": 7, "keypoints": [13, 14, 1, 20, 20, 1]},
            {"image_id": 2, "category_id": 7, "keypoints": [30, 30, 1, 99, 49, 1]},
        ],
    )
    r = evaluate(preds, gt_file=gt, out=tmp_path / "out")
    assert r.task == "regression" and r.regression is not None
    reg = r.report["regression"]
    assert (reg["images"], reg["points"], reg["predicted"], reg["missing_predictions"]) == (3, 5, 3, 1)
    assert reg["mean_error_px"] == pytest.approx(5 / 3) and reg["median_error_px"] == 0
    assert reg["mean_error_relative"] == pytest.approx(5 / 3 / 100)
    # within 2 px: the two exact points of 5; within 5 px (0.05 x 100) and 10 px: the 5 px one too
    assert (reg["PCK@0.02"], reg["PCK@0.05"], reg["PCK@0.1"]) == (0.4, 0.6, 0.6)
    eye, nose = reg["per_point"]
    assert (eye["name"], eye["points"], eye["predicted"], eye["mean_error_px"]) == ("eye", 3, 2, 2.5)
    assert (nose["name"], nose["points"], nose["predicted"], nose["mean_error_px"]) == ("nose", 2, 1, 0)
    assert [w["image_id"] for w in reg["worst_images"]] == [1, 2]
    assert r.regression.pck == {"0.02": 0.4, "0.05": 0.6, "0.1": 0.6}
    assert "<h2>Point regression</h2>" in (tmp_path / "out" / "report.html").read_text()


def test_perfect_points_score_zero_error(tmp_path: Path) -> None:
    points = [[10.5, 10.25, 2, 20, 20, 1], [1, 2, 2, 3, 4, 2]]
    gt = gt_file(tmp_path, points)
    preds = preds_file(
        tmp_path, [{"image_id": i + 1, "category_id": 7, "keypoints": p} for i, p in enumerate(points)]
    )
    reg = evaluate(preds, gt_file=gt).regression
    assert reg is not None and reg.mean_error_px == 0 and reg.missing_predictions == 0
    assert all(v == 1.0 for v in reg.pck.values())


def test_a_prediction_for_an_image_without_points_is_counted(tmp_path: Path) -> None:
    gt = gt_file(tmp_path, [[10, 10, 2, 20, 20, 2], [0, 0, 0, 0, 0, 0]])
    preds = preds_file(
        tmp_path,
        [
            {"image_id": 1, "category_id": 7, "keypoints": [10, 10, 1, 20, 20, 1]},
            {"image_id": 2, "category_id": 7, "keypoints": [1, 1, 1, 2, 2, 1]},
        ],
    )
    reg = evaluate(preds, gt_file=gt).report["regression"]
    assert reg["predictions_without_truth"] == 1 and reg["images"] == 1 and reg["mean_error_px"] == 0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"image_id": 1, "category_id": 7, "keypoints": [1, 2, 1]},
            r"prediction 1: 3 keypoint numbers, but the category has 2 points",
        ),
        (
            {"image_id": 1, "category_id": 7, "keypoints": [1, math.nan, 1, 2, 2, 1]},
            r"prediction 1: keypoints must be finite",
        ),
        (
            {"image_id": 9, "category_id": 7, "keypoints": [1, 1, 1, 2, 2, 1]},
            r"prediction 1: image_id 9 is not in the ground truth",
        ),
        (
            {"image_id": 1, "category_id": 3, "keypoints": [1, 1, 1, 2, 2, 1]},
            r"prediction 1: category_id 3 is not in the ground truth",
        ),
        (
            {"image_id": 2, "category_id": 7, "keypoints": [1, 1, 1, 2, 2, 1]},
            r"prediction 1: a second point set of category 7 on image 2.*carry a score",
        ),
    ],
)
def test_bad_entries_are_one_line_errors(tmp_path: Path, entry: dict[str, Any], message: str) -> None:
    gt = gt_file(tmp_path, [[10, 10, 2, 20, 20, 2], [1, 1, 2, 2, 2, 2]])
    first = {"image_id": 2, "category_id": 7, "keypoints": [1, 1, 1, 2, 2, 1]}
    with pytest.raises(DataError, match=message):
        evaluate(preds_file(tmp_path, [first, entry]), gt_file=gt)


def test_two_true_instances_on_one_image_are_refused(tmp_path: Path) -> None:
    gt = gt_file(tmp_path, [[10, 10, 2, 20, 20, 2]])
    data = json.loads(gt.read_text())
    data["annotations"].append({**data["annotations"][0], "id": 2})
    gt.write_text(json.dumps(data))
    preds = preds_file(tmp_path, [{"image_id": 1, "category_id": 7, "keypoints": [10, 10, 1, 20, 20, 1]}])
    with pytest.raises(DataError, match="image 1 has several annotations of category 7 with keypoints"):
        evaluate(preds, gt_file=gt)
