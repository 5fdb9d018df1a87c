"""Regenerate examples/pets-mini: 48 synthetic images with boxes, and noisy "model" predictions.

    .venv/bin/python examples/make_pets_mini.py

The predictions are the ground truth jittered by a few pixels, with ~15% of objects missed, ~10%
given the wrong class, and 20 false positives, so that `dataforge evaluate` has something to find.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dataforge.synthetic import make_shapes_dataset

HERE = Path(__file__).resolve().parent / "pets-mini"


def main() -> None:
    coco = make_shapes_dataset(HERE, n_images=48, seed=7)
    rng = np.random.default_rng(0)
    preds = []
    for a in coco["annotations"]:
        if rng.random() < 0.85:
            x, y, w, h = a["bbox"]
            cid = a["category_id"] if rng.random() < 0.9 else int(rng.integers(1, 4))
            preds.append(
                {
                    "image_id": a["image_id"],
                    "category_id": cid,
                    "bbox": [round(x + rng.normal(0, 2), 2), round(y + rng.normal(0, 2), 2), w, h],
                    "score": round(float(rng.uniform(0.3, 1.0)), 4),
                }
            )
    for _ in range(20):
        preds.append(
            {
                "image_id": int(rng.integers(1, 49)),
                "category_id": int(rng.integers(1, 4)),
                "bbox": [float(rng.integers(0, 100)), float(rng.integers(0, 70)), 30.0, 30.0],
                "score": round(float(rng.uniform(0.0, 0.6)), 4),
            }
        )
    (HERE / "predictions.json").write_text(json.dumps(preds, indent=0) + "\n")
    print(
        f"{len(coco['images'])} images, {len(coco['annotations'])} boxes, {len(preds)} predictions in {HERE}"
    )


if __name__ == "__main__":
    main()
