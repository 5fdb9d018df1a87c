"""Bootstrap intervals and the paired comparison (issue 17): the unresampled numbers are
COCOeval's, resamples are seeded and paired, the intervals cover the value."""

from __future__ import annotations

import numpy as np
import pytest

from dataforge.evaluation.bootstrap import bootstrap, class_ap_many, compare, match, summary
from dataforge.evaluation.detection import evaluate_detections
from tests.test_evaluation_errors import problem


@pytest.mark.parametrize("seed", range(4))
def test_unresampled_ap_and_ap50_equal_cocoeval(seed: int) -> None:
    gt, preds = problem(seed, n_images=50)
    coco = evaluate_detections(gt, preds).to_dict()
    m = match(gt, preds)
    ap, ap50, per = summary(class_ap_many(m, np.ones((1, m.n_images)))[0])
    assert ap == pytest.approx(coco["coco_stats"][0], abs=1e-9)
    assert ap50 == pytest.approx(coco["coco_stats"][1], abs=1e-9)
    for k, row in enumerate(coco["per_class"]):
        assert per[k] == pytest.approx(row["AP"], abs=1e-9)


def test_weights_equal_duplicating_the_images() -> None:
    """An image drawn twice counts as two copies of it: the weighted AP equals COCOeval's on a
    dataset where those images really are there twice (distinct scores: no ties to order)."""
    gt, preds = problem(7, n_images=30)
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, len(gt["images"]))
    images, anns, dts = [], [], []
    for k, img in enumerate(gt["images"]):
        for copy in range(int(counts[k])):
            new = img["id"] * 10 + copy
            images.append({**img, "id": new})
            anns += [
                {**a, "id": len(anns) + 1, "image_id": new}
                for a in gt["annotations"]
                if a["image_id"] == img["id"]
            ]
            dts += [{**p, "image_id": new} for p in preds if p["image_id"] == img["id"]]
    copied = {**gt, "images": images, "annotations": anns}
    coco = evaluate_detections(copied, dts).to_dict()["coco_stats"]
    m = match(gt, preds)
    ap, ap50, _per = summary(class_ap_many(m, counts[None, :].astype(np.float64))[0])
    assert ap == pytest.approx(coco[0], abs=1e-9) and ap50 == pytest.approx(coco[1], abs=1e-9)


def test_intervals_are_seeded_and_cover_the_value() -> None:
    gt, preds = problem(1, n_images=60)
    a = bootstrap(gt, preds, n=200, seed=3)
    assert a == bootstrap(gt, preds, n=200, seed=3)
    assert a != bootstrap(gt, preds, n=200, seed=4)
    for key in ("AP", "AP50"):
        lo, hi = a[key]["ci95"]
        assert lo < a[key]["value"] < hi and hi - lo < 0.5
    assert all(c["ci95"] is None or c["ci95"][0] <= c["ci95"][1] for c in a["per_class"])


def test_comparing_a_set_with_itself_and_with_a_worse_one() -> None:
    gt, preds = problem(2, n_images=60)
    same = compare(gt, preds, preds, n=100)
    assert same["AP"]["delta"] == 0 and same["AP"]["ci95"] == [0.0, 0.0] and same["AP"]["B_better"] == 0.0
    rng = np.random.default_rng(1)
    worse = [p for p in preds if rng.random() < 0.6]  # B drops 40% of A's predictions
    res = compare(gt, preds, worse, n=200)
    assert res["AP"]["delta"] < 0 and res["AP"]["ci95"][1] < 0 and res["AP"]["B_better"] < 0.05


def test_cli_intervals_comparison_and_html(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The pets-mini report shows the intervals, B against A with the images drawn side by side,
    the error breakdown and the operating points; --bootstrap 0 leaves the intervals out; a
    classification file cannot be compared with detections."""
    import json

    from dataforge.api import import_dataset
    from tests.conftest import REPO, run_dataforge

    ex = REPO / "examples" / "pets-mini"
    import_dataset(ex / "instances.json", store=tmp_path / "pets", images=ex / "images")
    preds = json.loads((ex / "predictions.json").read_text())
    rng = np.random.default_rng(0)
    b = [{**p, "score": p["score"] * float(rng.uniform(0.5, 1.2))} for p in preds if rng.random() < 0.85]
    (tmp_path / "b.json").write_text(json.dumps(b))
    r = run_dataforge(
        "evaluate",
        tmp_path / "pets",
        "--predictions",
        ex / "predictions.json",
        "--compare",
        tmp_path / "b.json",
        "--out",
        tmp_path / "eval",
    )
    assert r.returncode == 0, r.stderr
    assert "95% intervals (1000 bootstrap resamples" in r.stdout and "B (" in r.stdout
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    c = report["comparison"]
    assert c["AP"]["delta"] == pytest.approx(c["AP"]["B"] - c["AP"]["A"]) and "_b" not in c
    assert c["images"]["gained"] or c["images"]["lost"]
    page = (tmp_path / "eval" / "report.html").read_text()
    for title in ("How sure: 95% intervals", "A against B", "Errors of the boxes", "Operating points"):
        assert title in page
    assert "alt='A'" in page and "alt='B'" in page
    assert (tmp_path / "eval" / "thresholds.json").is_file()
    r = run_dataforge(
        "evaluate", tmp_path / "pets", "--predictions", ex / "predictions.json", "--bootstrap", "0", "--json"
    )
    assert r.returncode == 0 and "bootstrap" not in json.loads(r.stdout)["detection"]
    (tmp_path / "cls.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.9}]))
    r = run_dataforge(
        "evaluate",
        tmp_path / "pets",
        "--predictions",
        ex / "predictions.json",
        "--compare",
        tmp_path / "cls.json",
    )
    assert r.returncode != 0 and "not detection results" in r.stderr


def test_resamples_split_over_two_forked_processes_give_the_same_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many resamples run as two halves in forked processes (forced here: pytest-xdist runs
    threads, where dataforge does not fork); each resample is computed alone, so every number
    equals the one-process run's, bit for bit."""
    import os

    import dataforge.evaluation.bootstrap as b
    from dataforge.runtime import forked_map

    monkeypatch.setattr("dataforge.runtime.fork_safe", lambda: True)
    pids = forked_map(lambda _: os.getpid(), [0, 1])
    assert pids[0] != os.getpid() and pids[1] == os.getpid()  # a child did the first half
    gt, preds = problem(9, n_images=80, n_classes=6)
    m = b.match(gt, preds)
    draws = b.resample_weights(m.n_images, 120, 5)
    monkeypatch.setattr(b, "PARALLEL_FROM", 10**9)
    serial = b._resampled(m, draws)
    monkeypatch.setattr(b, "PARALLEL_FROM", 100)
    np.testing.assert_array_equal(b._resampled(m, draws), serial)
