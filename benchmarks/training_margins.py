"""The margin of each training test's bar, over seeds and torch thread counts.

A test that asserts a model learned something must clear its bar by a margin measured here, not in
one lucky run. This trains exactly what the test trains (it calls the test's own function) once per
(seed, threads) and prints the table and the weakest run's margin. For a metric whose chance level
is 0 (mAP) the margin is value / bar; for an accuracy it is the errors the bar allows over the errors
made (0.98 against a bar of 0.95 is 2.5x).

    .venv/bin/python benchmarks/training_margins.py --case detector   # seeds 0 1 2, threads 1 2
    .venv/bin/python benchmarks/training_margins.py --case digits --seeds 0 --threads 2
    .venv/bin/python benchmarks/training_margins.py --case segmenter
    .venv/bin/python benchmarks/training_margins.py --case regressor
On 2 cores a detector run took 2-4 minutes, a digits run 1.5-3, a tiny run 20 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the cases are the tests' own functions


def _digits(root: Path) -> Path:
    from dataforge.api import import_dataset
    from dataforge.synthetic import make_digits_folders

    make_digits_folders(root / "folders")
    import_dataset(source=root / "folders", store=root / "store", format="folders")
    return root / "store"


def run_detector(root: Path, seed: int, threads: int) -> tuple[float, list[float]]:
    from tests.test_training_detector import train_detector_on_shapes

    curve = train_detector_on_shapes(root, seed=seed)
    return max(curve), curve


def run_digits(root: Path, seed: int, threads: int) -> tuple[float, list[float]]:
    from tests.test_training import train_digits_resnet18

    acc, curve = train_digits_resnet18(_digits(root), root, seed=seed)
    return min(acc, max(curve)), [acc, *curve]  # the test asserts both


def run_tiny(root: Path, seed: int, threads: int) -> tuple[float, list[float]]:
    from tests.conftest import pip_install_plugin
    from tests.test_training import TINY, tiny_cli_accuracy

    entry = 'tiny = "tinytrainer:TinyTrainer"'
    site = pip_install_plugin(
        root, "dataforge-tiny-trainer", "dataforge.trainers", entry, "tinytrainer", TINY
    )
    env = {"PYTHONPATH": str(site), "OMP_NUM_THREADS": str(threads)}  # the CLI runs in a child process
    acc, _ = tiny_cli_accuracy(_digits(root), root, env, seed=seed)
    return acc, [acc]


def run_segmenter(root: Path, seed: int, threads: int) -> tuple[float, list[float]]:
    from tests.test_training_segmenter import train_segmenter_on_shapes

    curve, evaluated = train_segmenter_on_shapes(root, seed=seed)
    return min(max(curve), evaluated), [*curve, evaluated]  # the test asserts both


def run_regressor(root: Path, seed: int, threads: int) -> tuple[float, list[float]]:
    from tests.test_training_regressor import train_regressor_on_faces

    curve, evaluated, chance = train_regressor_on_faces(root, seed=seed)
    return max(min(curve), evaluated), [*curve, evaluated, chance]  # the test asserts both


def _error_over_chance(value: float, bar: float) -> float:
    """For an error (lower is better) with chance level: how many times the bar's gain over chance
    the run's gain is."""
    from tests.test_training_regressor import REGRESSOR_CHANCE

    return (REGRESSOR_CHANCE - value) / (REGRESSOR_CHANCE - bar)


def _over_chance(value: float, bar: float) -> float:  # how many times the bar's gain over chance
    from tests.test_training_segmenter import SEGMENTER_CHANCE

    return (value - SEGMENTER_CHANCE) / (bar - SEGMENTER_CHANCE)


def _ratio(value: float, bar: float) -> float:  # how many times the bar a metric with chance 0 is
    return value / bar


def _error_ratio(value: float, bar: float) -> float:  # how many times fewer errors than the bar allows
    return (1 - bar) / max(1e-9, 1 - value)


# name: (run function, the test's bar, margin, what the number is)
CASES = {
    "detector": (run_detector, "tests.test_training_detector:DETECTOR_BAR", _ratio, "best val mAP@0.5"),
    "digits": (run_digits, "tests.test_training:DIGITS_BAR", _error_ratio, "min(test acc, best val acc)"),
    "tiny": (run_tiny, "tests.test_training:TINY_BAR", _error_ratio, "test accuracy"),
    "segmenter": (
        run_segmenter,
        "tests.test_training_segmenter:SEGMENTER_BAR",
        _over_chance,
        "min(best val mIoU, evaluated mIoU)",
    ),
    "regressor": (
        run_regressor,
        "tests.test_training_regressor:REGRESSOR_BAR",
        _error_over_chance,
        "max(best val mean error px, evaluated mean error px)",
    ),
}


def _bar(ref: str) -> float:
    import importlib

    module, name = ref.split(":")
    return float(getattr(importlib.import_module(module), name))


def one_run(case: str, seed: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    fn = CASES[case][0]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        value, curve = fn(Path(tmp), seed, threads)
    print(f"RESULT {value:.4f} {time.perf_counter() - t0:.0f} {[round(m, 3) for m in curve]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=sorted(CASES), default="detector")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # seed threads, in a child
    args = ap.parse_args()
    if args.one:
        one_run(args.case, *args.one)
        return
    _, ref, margin, what = CASES[args.case]
    bar = _bar(ref)
    kind = {
        _ratio: "value / bar",
        _over_chance: "(value - chance) / (bar - chance)",
        _error_over_chance: "(chance - value) / (chance - bar)",
    }.get(margin, "errors the bar allows / errors made")
    at_most = margin is _error_over_chance
    print(f"{args.case}: {what} {'<=' if at_most else '>='} {bar}; margin = {kind}")
    print(f"{'seed':>4} {'threads':>7} {'best':>7} {'margin':>6} {'s':>5}  curve")
    worst = None
    for threads in args.threads:
        for seed in args.seeds:
            # a fresh process a run: torch's thread count and RNG state start as in the test
            p = subprocess.run(
                [sys.executable, __file__, "--case", args.case, "--one", str(seed), str(threads)],
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")), None)
            if line is None:
                sys.exit(f"seed {seed}, {threads} threads failed:\n{p.stderr[-2000:]}")
            _, best, secs, curve = line.split(" ", 3)
            ratio = margin(float(best), bar)
            worst = ratio if worst is None else min(worst, ratio)
            print(f"{seed:>4} {threads:>7} {float(best):>7.3f} {ratio:>6.2f} {secs:>5}  {curve}", flush=True)
    print(f"weakest run: margin {worst:.2f}x")


if __name__ == "__main__":
    main()
