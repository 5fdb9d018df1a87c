"""The CUDA path on a real GPU (skipped, with the reason, where there is none: CI has no GPU).

The same code runs on CPU tensors in tests/test_augment_job.py and tests/test_augment_boxes.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def test_cuda_job_agrees_with_the_cpu_job_on_geometry(tmp_path: Path) -> None:
    from dataforge.augment import parse_pipeline, replay
    from dataforge.augment.job import augment
    from dataforge.store import Store
    from tests.test_augment_job import SPEC, make_store

    store = make_store(tmp_path, n=24, size=(320, 240))
    p = parse_pipeline(SPEC)
    augment(store, p, tmp_path / "cpu", workers=1)
    res = augment(store, p, tmp_path / "gpu", device="cuda", workers=1)
    a, b = Store.open(tmp_path / "cpu"), Store.open(tmp_path / "gpu")
    assert b.images[0]["source"]["backend"] == "torchvision-cuda"
    assert res.images == len(a)
    for ia, ib in zip(a.images, b.images, strict=True):
        assert ia["source"]["ops"] == ib["source"]["ops"]
        ra, rb = a.get(ia["id"]), b.get(ib["id"])
        assert (ra.width, ra.height) == (rb.width, rb.height)
        assert np.allclose(ra.boxes_xyxy, rb.boxes_xyxy, atol=1e-4)
    r = replay(tmp_path / "gpu", b.images[0]["id"])
    assert np.allclose(r.boxes_xyxy, b.get(b.images[0]["id"]).boxes_xyxy)
