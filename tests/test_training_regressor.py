"""The point regressor ("where's my nose?") learns from scratch on CPU, its points follow the pixels
through the augment pipeline, and its predictions go through `dataforge evaluate` (pixel error, PCK)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dataforge.api import evaluate, import_dataset, split_store
from dataforge.errors import DataError, UsageError
from dataforge.synthetic import FACE_KEYPOINTS, make_faces_dataset
from dataforge.training.run import predict, train

#: the bar test_regressor_learns_where_the_nose_is asserts on: mean error in pixels of 96x96 images;
#: benchmarks/training_margins.py --case regressor measures every seed's and thread count's margin
REGRESSOR_BAR = 9.0
#: chance on the test's data, every point at its mean place over train (`mean_point_error`: 17.99 px)
REGRESSOR_CHANCE = 17.99


def faces_store(root: Path, n_images: int = 96) -> Path:
    make_faces_dataset(root / "src", n_images=n_images, seed=3)
    import_dataset(source=root / "src" / "instances.json", store=root / "store")
    split_store(root / "store", ratios={"train": 0.8, "val": 0.2}, seed=0)
    return root / "store"


def mean_point_error(store_path: Path) -> float:
    """Chance: the mean error on val of predicting each point at its mean place over train
    (as a fraction of the image's size)."""
    from dataforge.store import Store

    store = Store.open(store_path)
    rows: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    for img in store.images:
        for a in store.index.anns_by_image.get(img["id"], ()):
            pts = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
            rows[img["split"]].append(pts / (img["width"], img["height"]))
    guess = np.mean(rows["train"], axis=0)
    return float(np.mean([np.hypot(*((v - guess) * 96).T) for v in rows["val"]]))


def train_regressor_on_faces(root: Path, seed: int = 0) -> tuple[list[float], float, float]:
    """ResNet-18 with the soft-argmax head, from scratch at 64x64 on 76 faces, 12 epochs: the val
    mean error by epoch, the error `dataforge evaluate` gives the best checkpoint's predictions, and
    chance on this data."""
    store = faces_store(root)
    res = train(
        store,
        trainer="torchvision-regressor",
        out=root / "run",
        sets=["epochs=12", "batch_size=16", "image_size=64", f"seed={seed}"],
    )
    predict([root / "run"], store, out=root / "preds.json", split="val")
    report = evaluate(root / "preds.json", store=store, split="val", out=root / "eval")
    assert report.regression is not None and report.regression.mean_error_px is not None
    return (
        [h["val_mean_error_px"] for h in res.history],
        report.regression.mean_error_px,
        mean_point_error(store),
    )


@pytest.mark.slow
def test_regressor_learns_where_the_nose_is(tmp_path: Path) -> None:
    """The first epoch's model is far off; the best epoch, and the evaluation of its predictions,
    are within the bar, a fraction of chance. Margins over 3 seeds and 1 and 2 threads: README,
    "Training tests and their margins"."""
    curve, evaluated, chance = train_regressor_on_faces(tmp_path)
    print(
        f"regressor val error px by epoch: {[round(e, 2) for e in curve]}; evaluated {evaluated:.2f}; chance {chance:.2f}"
    )
    assert chance == pytest.approx(REGRESSOR_CHANCE, abs=0.01)  # the data the margins were measured on
    assert curve[0] > REGRESSOR_BAR
    assert min(curve) <= REGRESSOR_BAR and evaluated <= REGRESSOR_BAR
    assert evaluated == pytest.approx(min(curve), rel=1e-4)  # the same points, scored twice
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["task"] == "regression"
    assert [p["name"] for p in report["regression"]["per_point"]] == FACE_KEYPOINTS
    html = (tmp_path / "eval" / "report.html").read_text()
    assert "<h2>Point regression</h2>" in html and html.count("<figure>") == 8


def test_the_points_move_with_the_pixels(tmp_path: Path) -> None:
    """A flip in the DataLoader's pipeline mirrors the targets and swaps the eyes (their names pair
    left and right); a crop that cuts a point off leaves it unlabelled (not learned from)."""
    from dataforge.store import Store
    from dataforge.training.data import StoreDataset, category_table, samples

    store = Store.open(faces_store(tmp_path, n_images=6))
    items = samples(store, "regression", None, category_table(store))
    plain = StoreDataset(items, "regression")
    flipped = StoreDataset(items, "regression", pipeline={"seed": 0, "steps": [{"type": "hflip", "p": 1}]})
    for i in range(len(items)):
        (img, t), (fimg, ft) = plain[i], flipped[i]
        assert t["visible"].all() and ft["visible"].all()
        expected = t["points"].numpy()[[1, 0, 2]]  # left_eye <-> right_eye, nose stays
        expected[:, 0] = 1 - expected[:, 0]
        assert np.allclose(ft["points"].numpy(), expected, atol=1e-6)
        assert np.allclose(fimg.numpy(), img.numpy()[:, :, ::-1])
    corner = {"seed": 0, "steps": [{"type": "crop", "x_min": 0, "y_min": 0, "x_max": 4, "y_max": 4}]}
    _, ct = StoreDataset(items, "regression", pipeline=corner)[0]
    assert not ct["visible"].any()


def test_regression_refuses_what_it_cannot_learn(tmp_path: Path) -> None:
    """Two faces in one image is not a regression problem; a store without keypoint categories
    has nothing to regress: both are one-line errors saying what to do instead."""
    from dataforge.store import Store
    from dataforge.training.data import category_table, samples

    faces_store(tmp_path, n_images=4)  # writes src/ (its images and instances.json)
    data = json.loads((tmp_path / "src" / "instances.json").read_text())
    data["annotations"].append({**data["annotations"][0], "id": 99})
    (tmp_path / "two.json").write_text(json.dumps(data))
    import_dataset(source=tmp_path / "two.json", store=tmp_path / "two", images=tmp_path / "src" / "images")
    two = Store.open(tmp_path / "two")
    with pytest.raises(
        DataError, match=r"image 1 \(000000.jpg\) has 2 instances with keypoints.*keypointrcnn"
    ):
        samples(two, "regression", None, category_table(two))
    for c in data["categories"]:
        del c["keypoints"], c["skeleton"]
    for a in data["annotations"]:
        a.pop("keypoints"), a.pop("num_keypoints")
    (tmp_path / "boxes.json").write_text(json.dumps(data))
    import_dataset(
        source=tmp_path / "boxes.json", store=tmp_path / "boxes", images=tmp_path / "src" / "images"
    )
    with pytest.raises(UsageError, match="exactly one category with keypoints, found none"):
        train(tmp_path / "boxes", trainer="torchvision-regressor", out=tmp_path / "run", sets=["epochs=1"])


@pytest.mark.slow
def test_keypoints_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    """`dataforge demo --task keypoints --quick`: make faces, split, augment (points moved with the
    pixels), train the regressor, predict, evaluate, each step's output there."""
    from dataforge.api import demo

    lines: list[str] = []
    paths = demo(tmp_path / "demo", quick=True, task="keypoints", echo=lines.append)
    for key in ("store", "train_store", "predictions", "evaluation"):
        assert paths[key].exists(), key
    assert (paths["run"] / "best.pt").is_file()
    report = json.loads((paths["evaluation"] / "report.json").read_text())
    assert report["task"] == "regression" and report["regression"]["points"] > 0
    assert any(line.startswith("      test mean error") for line in lines)
