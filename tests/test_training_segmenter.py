"""The torchvision segmenter learns semantic segmentation from scratch on CPU, and its predictions
go through `dataforge evaluate` (mIoU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataforge.api import evaluate, export_dataset, import_dataset, split_store
from dataforge.synthetic import make_shapes_dataset
from dataforge.training.run import predict, train

#: val mIoU of predicting background everywhere on this data (background IoU ~0.91 over 4 classes)
SEGMENTER_CHANCE = 0.227
#: the bar test_segmenter_learns_shapes asserts on; benchmarks/training_margins.py measures the
#: margin of every seed and thread count over it (above chance)
SEGMENTER_BAR = 0.35


def train_segmenter_on_shapes(root: Path, seed: int = 0) -> tuple[list[float], float]:
    """LR-ASPP (MobileNetV3) from scratch on 96 shape images made a semantic store (instance masks
    exported as label maps and imported back), 64x64 inputs, 6 epochs: the val mIoU by epoch, and
    the mIoU `dataforge evaluate` gives the best checkpoint's predictions at the images' own size."""
    make_shapes_dataset(root / "src", n_images=96, size_wh=(96, 72), max_objects=3, seed=5, masks=True)
    import_dataset(source=root / "src" / "instances.json", store=root / "instances")
    export_dataset(root / "instances", format="masks", out=root / "maps")
    import_dataset(source=root / "maps", store=root / "store")
    split_store(root / "store", ratios={"train": 0.8, "val": 0.2}, seed=0)
    res = train(
        root / "store",
        trainer="torchvision-segmenter",
        out=root / "run",
        sets=[
            "epochs=6",
            "batch_size=8",
            "base_batch_size=8",
            "optimizer=adamw",
            "lr=0.01",
            "weight_decay=0.0001",
            "warmup_epochs=0",
            "image_size=64",
            "class_weights=balanced",
            f"seed={seed}",
        ],
    )
    predict([root / "run"], root / "store", out=root / "preds.json", split="val")
    report = evaluate(root / "preds.json", store=root / "store", split="val", out=root / "eval")
    assert report.semantic is not None and report.semantic.miou is not None
    return [h["val_miou"] for h in res.history], report.semantic.miou


@pytest.mark.slow
def test_segmenter_learns_shapes(tmp_path: Path) -> None:
    """The first epoch's model predicts background almost everywhere (chance); the best epoch, and
    the evaluation of its predictions at full size, clear the bar. Margins over 3 seeds and 1 and 2
    threads: README, "Training tests and their margins"."""
    curve, evaluated = train_segmenter_on_shapes(tmp_path)
    print(f"segmenter val mIoU by epoch: {[round(m, 3) for m in curve]}; evaluated {evaluated:.3f}")
    assert curve[0] < SEGMENTER_BAR
    assert max(curve) >= SEGMENTER_BAR and evaluated >= SEGMENTER_BAR
    html = (tmp_path / "eval" / "report.html").read_text()
    assert "<h2>Semantic segmentation</h2>" in html


@pytest.mark.slow
def test_segmentation_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    """`dataforge demo --task segmentation --quick`: make, label maps, split, augment, train,
    predict, evaluate, each step's output there and the report scored by mIoU."""
    import json

    from dataforge.api import demo

    lines: list[str] = []
    paths = demo(tmp_path / "demo", quick=True, task="segmentation", echo=lines.append)
    for key in ("store", "train_store", "predictions", "evaluation"):
        assert paths[key].exists(), key
    assert (paths["run"] / "best.pt").is_file()
    report = json.loads((paths["evaluation"] / "report.json").read_text())
    assert report["task"] == "semantic" and report["semantic"]["mIoU"] is not None
    assert any(line.startswith("      test mIoU") for line in lines)


def test_the_training_targets_move_with_the_pixels(tmp_path: Path) -> None:
    """A flip in the DataLoader's pipeline flips the class map with the image: the target of the
    flipped sample is the unflipped target mirrored, pixel for pixel (void included)."""
    import numpy as np

    from dataforge.store import Store
    from dataforge.training.data import IGNORE, StoreDataset, category_table, samples

    make_shapes_dataset(tmp_path / "src", n_images=4, size_wh=(48, 40), max_objects=3, seed=2, masks=True)
    import_dataset(source=tmp_path / "src" / "instances.json", store=tmp_path / "i")
    export_dataset(tmp_path / "i", format="masks", out=tmp_path / "maps")
    import_dataset(source=tmp_path / "maps", store=tmp_path / "s")
    store = Store.open(tmp_path / "s")
    items = samples(store, "segmentation", None, category_table(store))
    flip = {"seed": 0, "steps": [{"type": "hflip", "p": 1}]}
    plain, flipped = StoreDataset(items, "segmentation"), StoreDataset(items, "segmentation", pipeline=flip)
    objects = 0
    for i in range(len(items)):
        (img, t), (fimg, ft) = plain[i], flipped[i]
        assert t["mask"].shape == (40, 48) and (t["mask"] != IGNORE).any()
        objects += int(((t["mask"] > 0) & (t["mask"] != IGNORE)).sum())
        assert np.array_equal(ft["mask"].numpy(), t["mask"].numpy()[:, ::-1])
        assert np.allclose(fimg.numpy(), img.numpy()[:, :, ::-1])
    assert objects > 0  # the maps hold objects, not background alone
