"""Benchmark: push and pull 2,000 images with 10 boxes each through a real Label Studio server.

Starts a server from .venv-labelstudio (template database), makes a synthetic store, pushes it with
its boxes as annotations (`--with-annotations`, as a finished labelling job would have them), then
pulls them all back. Prints seconds and HTTP requests for each: push imports tasks in batches of
500 and pull pages through tasks 500 at a time, so both need a handful of requests, not one per task.

    .venv/bin/python benchmarks/labelstudio.py [--images 2000] [--boxes 10]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dataforge.api import import_dataset
from dataforge.labelstudio.client import LabelStudio
from dataforge.labelstudio.server import LabelStudioServer
from dataforge.labelstudio.sync import pull, push
from dataforge.store import Store


def make_store(root: Path, n: int, boxes: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "src" / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(np.full((48, 64, 3), i % 256, np.uint8)).save(buf, format="JPEG")
        (root / "src" / "images" / f"{i:05d}.jpg").write_bytes(buf.getvalue())
        images.append({"id": i + 1, "file_name": f"{i:05d}.jpg", "width": 64, "height": 48})
        for _ in range(boxes):
            w, h = float(rng.integers(4, 20)), float(rng.integers(4, 20))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(rng.integers(1, 4)),
                    "bbox": [float(rng.integers(0, 64 - 20)), float(rng.integers(0, 48 - 20)), w, h],
                }
            )
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}]
    (root / "src" / "instances.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    import_dataset(root / "src" / "instances.json", store=root / "files" / "store")
    return root / "files" / "store"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--boxes", type=int, default=10)
    a = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dataforge-bench-ls-"))
    try:
        store = make_store(root, a.images, a.boxes)
        t0 = time.perf_counter()
        with LabelStudioServer(root / "server", files_root=root / "files") as srv:
            print(f"server up in {time.perf_counter() - t0:.1f} s at {srv.url}")
            client = LabelStudio(srv.url, srv.token)
            t = time.perf_counter()
            res = push(store, "bench", client, document_root=srv.files_root, with_annotations=True)
            t_push, n_push = time.perf_counter() - t, client.requests
            # pull into a copy whose boxes were cleared, so that every pulled box is really written back
            shutil.copytree(store, root / "files" / "store2")
            with Store.edit(root / "files" / "store2", "clear") as s:
                s.data["annotations"] = []
                s.invalidate()
            client2 = LabelStudio(srv.url, srv.token)
            t = time.perf_counter()
            out = pull(root / "files" / "store2", "bench", client2)
            t_pull, n_pull = time.perf_counter() - t, client2.requests
        back = Store.open(root / "files" / "store2")
        assert res["pushed"] == a.images and out["updated"] == a.images
        assert len(back.annotations) == a.images * a.boxes
        print(f"\n{a.images} images x {a.boxes} boxes")
        print(f"push: {t_push:7.2f} s  {n_push:3d} HTTP requests  ({t_push / a.images * 1000:.1f} ms/image)")
        print(f"pull: {t_pull:7.2f} s  {n_pull:3d} HTTP requests  ({t_pull / a.images * 1000:.1f} ms/image)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
