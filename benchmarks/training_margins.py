"""The margin of each training test's bar, over seeds and torch thread counts.

A test that asserts a model learned something must clear its bar by a margin measured here, not in
one lucky run. This trains exactly what the test trains (it calls the test's own function) once per
(seed, threads) and prints the table and the weakest run's ratio to the bar.

    .venv/bin/python benchmarks/training_margins.py                      # seeds 0 1 2, threads 1 2
    .venv/bin/python benchmarks/training_margins.py --seeds 0 --threads 2
Each detector run takes about 4-5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    # name: (function in tests/test_training.py, the bar the test asserts on the best epoch)
    "detector": ("train_detector_on_shapes", 0.03),
}


def one_run(case: str, seed: int, threads: int) -> None:
    import torch

    sys.path.insert(0, str(REPO))
    import tests.test_training as t

    torch.set_num_threads(threads)
    fn, _ = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        curve = getattr(t, fn)(Path(tmp), seed=seed)
    print(f"RESULT {max(curve):.4f} {time.perf_counter() - t0:.0f} {[round(m, 3) for m in curve]}")


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
    bar = CASES[args.case][1]
    print(f"{args.case}: bar {bar} on the best epoch's val metric")
    print(f"{'seed':>4} {'threads':>7} {'best':>7} {'x bar':>6} {'s':>5}  curve")
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
            ratio = float(best) / bar
            worst = ratio if worst is None else min(worst, ratio)
            print(f"{seed:>4} {threads:>7} {float(best):>7.3f} {ratio:>6.2f} {secs:>5}  {curve}", flush=True)
    print(f"weakest run: {worst:.2f}x the bar")


if __name__ == "__main__":
    main()
