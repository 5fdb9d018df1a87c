"""Benchmark: `dataforge augment` against a plain albumentations loop and the codec floor.

Data: 1,000 synthetic JPEGs (q90; 600 at 640x480, 400 at 1280x720) with boxes, in a store.
Job: horizontal flip (p=.5), random resized crop back to the input size, colour jitter
(.2, .2, .2, hue .05), box rules, JPEG q90 out -- the job ../shared/AUGMENT_PERF.md measured.

Measured side by side, each with file reads and writes:
  (a) a plain single-process loop: decode, the same pipeline as an albumentations Compose, encode
      (the per-core baseline; OpenCV limited to one thread);
  (b) decode + encode only (the codec floor);
  (c) `dataforge augment` with 1 and with 2 worker processes (the whole job: cluster start,
      planning, workers, manifests, the new store's annotations.json).
Plus dataforge's CPU kernels in a plain loop (no dask) and where their time goes.

Targets (issue 4), 2 cores: 1 worker >= 0.9x of (a); 2 workers >= 1.7x of (a).

``--masks``: every object also has an exact instance mask (RLE); (a) hands albumentations the
decoded masks (``masks=``, pycocotools decode) and RLE-encodes what it returns, dataforge moves and
writes them as its job does (target, issue 16: 2 workers >= 1.7x of (a)). Usage:

    .venv/bin/python benchmarks/augment.py [--images 1000] [--masks]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dataforge.api import import_dataset
from dataforge.augment import parse_pipeline
from dataforge.augment.job import augment
from dataforge.store import Store
from dataforge.synthetic import make_shapes_dataset

PIPELINE = {
    "seed": 0,
    "copies": 1,
    "steps": [
        {"type": "hflip", "p": 0.5},
        {"type": "random_resized_crop", "scale": [0.5, 1.0], "p": 1.0},
        {
            "type": "color_jitter",
            "brightness": 0.2,
            "contrast": 0.2,
            "saturation": 0.2,
            "hue": 0.05,
            "p": 1.0,
        },
    ],
    "boxes": {"min_visibility": 0.3, "min_area": 16},
    "output": {"format": "jpeg", "quality": 90},
}


def settle(seconds: float) -> None:
    os.sync()
    time.sleep(seconds)


def make_store(root: Path, n: int, masks: bool = False) -> Store:
    n_small = n * 3 // 5
    for sub, count, size, seed in (("vga", n_small, (640, 480), 1), ("hd", n - n_small, (1280, 720), 2)):
        src = root / f"src-{sub}"
        make_shapes_dataset(
            src, n_images=count, size_wh=size, max_objects=14, seed=seed, subdir=sub, masks=masks
        )
        import_dataset(
            source=src / "instances.json", store=root / "store", format="coco", images=src / "images"
        )
        shutil.rmtree(src)
    return Store.open(root / "store")


def _items(store: Store) -> list[tuple[Path, int, int, np.ndarray, list[int]]]:
    return [(r.path, r.width, r.height, r.boxes_xyxy, [int(c) for c in r.category_ids]) for r in store]


def baseline_albumentations(store: Store, out: Path, masks: bool = False) -> float:
    import albumentations as A
    import cv2

    cv2.setNumThreads(1)
    pipeline = parse_pipeline(PIPELINE)
    composes: dict[tuple[int, int], Any] = {}
    items = _items(store)
    for _, w, h, _, _ in items:
        if (w, h) not in composes:
            sized = parse_pipeline(
                {
                    **PIPELINE,
                    "steps": [
                        s if s["type"] != "random_resized_crop" else {**s, "size": [w, h]}
                        for s in PIPELINE["steps"]
                    ],
                }
            )
            composes[(w, h)] = sized.to_albumentations()
    del pipeline, A
    out.mkdir(parents=True)
    t = time.perf_counter()
    from dataforge.masks import decode_all, encode

    segs = [[a["segmentation"] for a in store.index.anns_by_image.get(img["id"], [])] for img in store.images]
    for i, (path, w, h, boxes, cats) in enumerate(items):
        bgr = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if masks:
            decoded = list(decode_all(segs[i], h, w).astype(np.uint8))
            res = composes[(w, h)](image=rgb, bboxes=boxes, labels=cats, masks=decoded)
            rles = [encode(m) for m in res["masks"]]
            del rles
        else:
            res = composes[(w, h)](image=rgb, bboxes=boxes, labels=cats)
        _ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(res["image"], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
        )
        (out / f"{i:06d}.jpg").write_bytes(buf.tobytes())
    return time.perf_counter() - t


def codec_floor(store: Store, out: Path) -> float:
    import cv2

    cv2.setNumThreads(1)
    items = _items(store)
    out.mkdir(parents=True)
    t = time.perf_counter()
    for i, (path, *_rest) in enumerate(items):
        img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        _ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        (out / f"{i:06d}.jpg").write_bytes(buf.tobytes())
    return time.perf_counter() - t


def dataforge_kernels(store: Store, out: Path) -> tuple[float, dict[str, float]]:
    """dataforge's CPU kernels in a plain loop, timing each stage."""
    import cv2

    from dataforge.augment import cpu
    from dataforge.augment.ops import apply_box_rules, draw_ops, image_rng, transform_boxes

    cv2.setNumThreads(1)
    pipeline = parse_pipeline(PIPELINE)
    items = _items(store)
    out.mkdir(parents=True)
    stages = dict.fromkeys(("read", "decode", "draw+boxes", "pixels", "encode", "write"), 0.0)
    t0 = time.perf_counter()
    for i, (path, w, h, boxes, _) in enumerate(items):
        t = time.perf_counter()
        data = path.read_bytes()
        t1 = time.perf_counter()
        img = cpu.decode(data, where=path.name)
        t2 = time.perf_counter()
        ops = draw_ops(pipeline, image_rng(0, path.name, 0), (w, h))
        b, vis, _ = transform_boxes(ops, boxes, (w, h))
        apply_box_rules(b, vis, pipeline.boxes)
        t3 = time.perf_counter()
        img = cpu.apply_ops(img, ops)
        t4 = time.perf_counter()
        enc = cpu.encode(img, "jpeg", quality=90)
        t5 = time.perf_counter()
        (out / f"{i:06d}.jpg").write_bytes(enc)
        t6 = time.perf_counter()
        for k, dt in zip(stages, (t1 - t, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True):
            stages[k] += dt
    return time.perf_counter() - t0, stages


TIMINGS: dict[int, dict[str, float]] = {}


def run_dataforge(store: Store, out: Path, workers: int) -> float:
    pipeline = parse_pipeline(PIPELINE)
    t = time.perf_counter()
    res = augment(store.root, pipeline, out, workers=workers)
    elapsed = time.perf_counter() - t
    TIMINGS[workers] = res.timing
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="runs of each variant; the median is reported")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--dir", default=tempfile.gettempdir())
    p.add_argument("--masks", action="store_true", help="every object with an instance mask (see above)")
    a = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dataforge-bench-augment-", dir=a.dir))
    try:
        t = time.perf_counter()
        store = make_store(root, a.images, masks=a.masks)
        boxes = len(store.annotations)
        what = "boxes and masks" if a.masks else "boxes"
        print(
            f"data: {len(store)} JPEGs ({boxes} {what}) in {root} made in {time.perf_counter() - t:.1f} s; {os.cpu_count()} cores"
        )
        results: dict[str, list[float]] = {}
        stages: dict[str, float] = {}
        variants: list[tuple[str, Any]] = [
            ("(a) albumentations loop, 1 core", lambda o: baseline_albumentations(store, o, a.masks)),
            ("(b) decode + encode only, 1 core", lambda o: codec_floor(store, o)),
            ("dataforge kernels loop, 1 core", lambda o: dataforge_kernels(store, o)),
            ("(c) dataforge augment --workers 1", lambda o: run_dataforge(store, o, 1)),
            ("(c) dataforge augment --workers 2", lambda o: run_dataforge(store, o, 2)),
        ]
        if a.masks:  # the kernels loop times boxes only
            variants = [v for v in variants if not v[0].startswith("dataforge kernels")]
        for rep in range(a.repeats):
            for name, fn in variants:
                out = root / f"out-{rep}-{len(results.get(name, []))}-{abs(hash(name))}"
                settle(a.settle)
                r = fn(out)
                if isinstance(r, tuple):
                    r, st = r
                    stages = st
                results.setdefault(name, []).append(r)
                shutil.rmtree(out)
        n = len(store)
        base = statistics.median(results["(a) albumentations loop, 1 core"])
        print(f"\n{'variant':40s} {'median s':>9s} {'img/s':>8s} {'vs (a)':>7s}   runs")
        for name, _ in variants:
            med = statistics.median(results[name])
            runs = ", ".join(f"{x:.2f}" for x in results[name])
            print(f"{name:40s} {med:9.2f} {n / med:8.1f} {base / med:6.2f}x   {runs}")
        total = sum(stages.values()) or 1.0
        print(
            "\nwhere dataforge's CPU time goes (kernels loop, last run): "
            + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in stages.items())
        )
        for w, tm in sorted(TIMINGS.items()):
            after = tm["total_s"] - tm["before_run_s"] - tm["last_chunk_end_s"]
            print(
                f"dataforge augment --workers {w} (last run): {tm['before_run_s']:.2f} s planning, "
                f"{tm['first_chunk_start_s']:.2f} s until the first chunk ran (cluster start, worker imports), "
                f"chunks busy {tm['worker_busy_s']:.2f} worker-s over {tm['last_chunk_end_s'] - tm['first_chunk_start_s']:.2f} s, "
                f"{after:.2f} s writing the store and shutting down"
            )
        w1 = base / statistics.median(results["(c) dataforge augment --workers 1"])
        w2 = base / statistics.median(results["(c) dataforge augment --workers 2"])
        print(
            f"\ntargets: 1 worker {w1:.2f}x of (a) (target >= 0.9x): {'met' if w1 >= 0.9 else 'NOT met'}; "
            f"2 workers {w2:.2f}x (target >= 1.7x): {'met' if w2 >= 1.7 else 'NOT met'}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
