"""The torchvision detector learns from scratch on CPU, and `dataforge demo` runs the whole box loop.

Kept apart from test_training.py so the two xdist workers each take one of the long training modules.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dataforge.api import import_dataset, split_store
from dataforge.synthetic import make_shapes_dataset
from dataforge.training.run import train

#: the bar test_detector_learns_shapes asserts on the best epoch; benchmarks/training_margins.py
#: measures the margin of every seed and thread count against it
DETECTOR_BAR = 0.03


def train_detector_on_shapes(root: Path, seed: int = 0) -> list[float]:
    """Faster R-CNN (mobilenet v3, 320 FPN) from scratch on 96 shape images: val mAP@0.5 by epoch.

    32 sampled proposals per image (not the trainer's 128): the box head is most of a CPU step, and
    with at most 3 objects an image 32 is plenty; it trains about 1.6x faster and no worse.
    """
    make_shapes_dataset(root / "src", n_images=120, size_wh=(160, 120), max_objects=3, seed=5)
    import_dataset(source=root / "src" / "instances.json", store=root / "store")
    split_store(root / "store", ratios={"train": 0.8, "val": 0.2}, seed=0)
    res = train(
        root / "store",
        trainer="torchvision-detector",
        out=root / "run",
        sets=[
            "epochs=8",
            "batch_size=8",
            "base_batch_size=8",
            "lr=0.02",
            "warmup_epochs=1",
            "min_size=160",
            "max_size=160",
            "rois_per_image=32",
            "log_images=1",
            f"seed={seed}",
        ],
    )
    return [h["val_map50"] for h in res.history]


@pytest.mark.slow
def test_detector_learns_shapes(tmp_path: Path) -> None:
    """mAP@0.5 on val starts at chance (0) and rises well above it. The margin of the bar over 3 seeds
    and 1 and 2 torch threads: README, "Training tests and their margins"."""
    curve = train_detector_on_shapes(tmp_path)
    print(f"detector val mAP@0.5 by epoch: {[round(m, 3) for m in curve]}")
    assert curve[0] < 0.05 and max(curve) >= DETECTOR_BAR


@pytest.mark.slow
def test_demo_runs_the_whole_loop_in_an_empty_directory(tmp_path: Path) -> None:
    """`dataforge demo --quick` in an empty directory: every step's output is there."""
    p = subprocess.run(
        [str(Path(sys.executable).parent / "dataforge"), "demo", "--quick"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    demo = tmp_path / "dataforge-demo"
    for rel in (
        "store/annotations.json",
        "train-aug/annotations.json",
        "runs/detector/best.pt",
        "runs/detector/predictions-test.json",
        "evaluation/report.html",
    ):
        assert (demo / rel).is_file(), rel
    assert "[5/5] predicting on the test split and evaluating" in p.stdout and "test mAP" in p.stdout
    assert list((demo / "runs" / "detector" / "tensorboard").glob("events.out.tfevents.*"))
