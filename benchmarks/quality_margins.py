"""Recall and precision of the dataset-quality finders over many seeds: the margins behind the
thresholds of tests/test_mislabels.py (``--case mislabels``) and of tests/test_dedupe.py's
embedding test (``--case semantic``).

Semantic: 200 shape scenes labelled by their largest object, a resnet18 trained 3 epochs, 10
mirrored, 10 re-framed and 10 shifted copies; found by the hashes alone and with ``--embeddings``
at several similarities.

Detection: 200 shape images, 20 planted errors of each kind, a simulated detector (see the test)
without and with its own confident errors. Classification: scikit-learn's digits with 10% of the
labels flipped, an SVM's 5-fold out-of-sample probabilities, each cleanlab method.

    .venv/bin/python benchmarks/quality_margins.py --case mislabels [--seeds 10] [--digit-seeds 3]
    .venv/bin/python benchmarks/quality_margins.py --case semantic [--seeds 3] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataforge.api import mislabels
from tests.test_dedupe import classified_shapes, semantic_scores
from tests.test_mislabels import _found, flipped_digits, planted_detection, scores


def semantic(seeds: int, threads: list[int]) -> None:
    import torch

    from dataforge.api import dedupe

    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for seed in range(seeds):
            with tempfile.TemporaryDirectory() as d:
                p = classified_shapes(Path(d), seed)
                hashed = semantic_scores(dedupe(p["store"]), p["pairs"])
                print(
                    f"seed {seed}, {n_threads} threads: hashes alone "
                    + ", ".join(f"{k} {v:.2f}" for k, v in hashed.items())
                )
                for similarity in (0.9, 0.95, 0.99):
                    res = dedupe(p["store"], embeddings=p["run"], similarity=similarity)
                    got = semantic_scores(res, p["pairs"])
                    print(
                        f"  --embeddings --similarity {similarity}: "
                        + ", ".join(f"{k} {v:.2f}" for k, v in got.items())
                        + f"; largest cluster {max(len(c.image_ids) for c in res.clusters)}",
                        flush=True,
                    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=["mislabels", "semantic"], default="mislabels")
    ap.add_argument("--seeds", type=int, default=None, help="default: 10 (mislabels), 3 (semantic)")
    ap.add_argument("--digit-seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="semantic: torch threads (1 2)")
    a = ap.parse_args()
    if a.case == "semantic":
        semantic(a.seeds or 3, a.threads)
        return
    a.seeds = a.seeds or 10
    for confident in (False, True):
        per: dict[str, list[tuple[float, float]]] = {}
        for seed in range(a.seeds):
            with tempfile.TemporaryDirectory() as d:
                store, preds, seen = planted_detection(Path(d), seed, confident)
                for kind, v in scores(mislabels(store, preds), seen).items():
                    per.setdefault(kind, []).append(v)
        label = "with the detector's confident errors" if confident else "detector without confident errors"
        print(f"detection, {label}, seeds 0-{a.seeds - 1}:")
        for kind, v in per.items():
            r, p = [x for x, _ in v], [y for _, y in v]
            print(
                f"  {kind:11s} recall {min(r):.3f}-{max(r):.3f} (mean {sum(r) / len(r):.3f})  "
                f"precision {min(p):.3f}-{max(p):.3f} (mean {sum(p) / len(p):.3f})"
            )
    print(f"classification, digits with 10% flipped, seeds 0-{a.digit_seeds - 1}:")
    rows: dict[str, list[tuple[float, float]]] = {}
    for seed in range(a.digit_seeds):
        with tempfile.TemporaryDirectory() as d:
            store, preds, flipped = flipped_digits(Path(d), seed)
            for method in ("prune_by_noise_rate", "both", "confident_learning", "predicted_neq_given"):
                rows.setdefault(method, []).append(_found(mislabels(store, preds, method=method), flipped))
    for method, v in rows.items():
        r, p = [x for x, _ in v], [y for _, y in v]
        print(f"  {method:20s} recall {min(r):.3f}-{max(r):.3f}  precision {min(p):.3f}-{max(p):.3f}")


if __name__ == "__main__":
    main()
