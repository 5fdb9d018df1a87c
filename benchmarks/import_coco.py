"""Benchmark: `dataforge import` against pycocotools' COCO() and FiftyOne's COCO importer.

Builds a synthetic COCO detection set (default 100,000 small JPEGs, 1,000,000 boxes), then, in one
run, times in separate processes (so each peak RSS is its own):

  A. pycocotools.coco.COCO(file)                       -- loads and indexes the JSON only
  B. dataforge import (full set)                       -- JSON + every image read, probed, hashed, copied
  C. FiftyOne Dataset.from_dir(COCODetectionDataset)   -- on a 10,000-image subset
  D. dataforge import (the same subset)                -- like for like with C

Peak memory is each process's own high-water mark (VmHWM); FiftyOne's MongoDB server is a separate
process and is not counted.

Targets (issue 2): B within 3x of A's time; B's peak memory within 2x of A's; per image, dataforge at
least 20x faster than FiftyOne. Usage:

    .venv/bin/python benchmarks/import_coco.py [--images 100000] [--boxes-per-image 10] [--subset 10000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_dataset(root: Path, n_images: int, boxes_per_image: int, seed: int = 0) -> Path:
    """Tiny distinct JPEGs (32x24) and a COCO file; cached in ``root`` between runs."""
    ann = root / "instances.json"
    marker = root / f".done-{n_images}-{boxes_per_image}-{seed}"
    if marker.exists():
        return ann
    from PIL import Image

    shutil.rmtree(root, ignore_errors=True)
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    w, h = 32, 24
    images, anns = [], []
    cats = [{"id": i + 1, "name": f"class{i}"} for i in range(20)]
    t0 = time.perf_counter()
    for i in range(n_images):
        sub = f"{i // 1000:03d}"
        if i % 1000 == 0:
            (root / "images" / sub).mkdir()
        pix = np.full((h, w, 3), (i * 7) % 256, np.uint8)
        pix[i % h, :, :] = (i // 256) % 256
        pix[:, (i // 7) % w, 1] = i % 251
        buf = io.BytesIO()
        Image.fromarray(pix).save(buf, format="JPEG", quality=80)
        name = f"{sub}/{i:07d}.jpg"
        (root / "images" / name).write_bytes(buf.getvalue())
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        xy = rng.uniform(0, [w - 4, h - 4], size=(boxes_per_image, 2)).round(2)
        wh = rng.uniform(1, 4, size=(boxes_per_image, 2)).round(2)
        cs = rng.integers(1, 21, size=boxes_per_image)
        for k in range(boxes_per_image):
            bw, bh = float(wh[k, 0]), float(wh[k, 1])
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(cs[k]),
                    "bbox": [float(xy[k, 0]), float(xy[k, 1]), bw, bh],
                    "area": round(bw * bh, 4),
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
        if (i + 1) % 20000 == 0:
            print(f"  generated {i + 1} images ({time.perf_counter() - t0:.0f} s)", flush=True)
    ann.write_text(
        json.dumps({"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats})
    )
    marker.write_text("ok")
    return ann


def subset_file(ann: Path, n: int) -> Path:
    out = ann.with_name(f"instances_subset{n}.json")
    if not out.exists():
        d = json.loads(ann.read_text())
        keep = {img["id"] for img in d["images"][:n]}
        d["images"] = d["images"][:n]
        d["annotations"] = [a for a in d["annotations"] if a["image_id"] in keep]
        out.write_text(json.dumps(d))
    return out


CODE = {
    "pycocotools": (
        "import sys, time\n"
        "from pycocotools.coco import COCO\n"
        "t = time.perf_counter(); c = COCO(sys.argv[1]); dt = time.perf_counter() - t\n"
        "print('RESULT', dt, len(c.imgs), len(c.anns))\n"
    ),
    "dataforge": (
        "import sys, time\n"
        "from dataforge.api import import_dataset\n"
        "link = len(sys.argv) > 3 and sys.argv[3] == 'link'\n"
        "t = time.perf_counter(); r = import_dataset(sys.argv[1], store=sys.argv[2], format='coco', link=link)\n"
        "dt = time.perf_counter() - t\n"
        "print('RESULT', dt, r.images, r.annotations)\n"
    ),
    "fiftyone": (
        "import os, sys, time\n"
        "import fiftyone as fo\n"
        "from pathlib import Path\n"
        "ann = Path(sys.argv[1])\n"
        "fo.list_datasets()  # start MongoDB before the clock\n"
        "t = time.perf_counter()\n"
        "ds = fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset, data_path=str(ann.parent / 'images'),\n"
        "                         labels_path=str(ann), label_types=['detections'], label_field='gt', name='bench',\n"
        "                         overwrite=True)\n"
        "dt = time.perf_counter() - t\n"
        "n_boxes = ds.count('gt.detections')\n"
        "print('RESULT', dt, len(ds), n_boxes)\n"
        "ds.delete()\n"
    ),
}


SETTLE_S = 10.0


PEAK = (
    "\nfor line in open('/proc/self/status'):\n"
    "    if line.startswith('VmHWM:'): print('PEAK', int(line.split()[1]) / 1024)\n"
)


def run(kind: str, *args: str, env: dict[str, str] | None = None) -> tuple[float, int, int, float]:
    """Run one measurement in a child process: (seconds, images, boxes, peak RSS in MiB).

    Before each run, dirty pages are flushed and the disk is left to settle, so that one run's
    write-back is not billed to the next (this machine's virtual disk throttles bursts).
    """
    os.sync()
    time.sleep(SETTLE_S)
    # Peak RSS is read inside the child (VmHWM of its own address space): the rusage of a forked
    # child would include the parent's memory at fork time.
    proc = subprocess.Popen(
        [sys.executable, "-c", CODE[kind] + PEAK, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise SystemExit(f"{kind} failed with exit code {proc.returncode}")
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    peak = next(float(ln.split()[1]) for ln in out.splitlines() if ln.startswith("PEAK"))
    _, dt, n_img, n_box = line.split()
    return float(dt), int(n_img), int(n_box), peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--boxes-per-image", type=int, default=10)
    p.add_argument("--subset", type=int, default=10_000, help="images for the FiftyOne comparison")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "dataforge-bench-import"))
    p.add_argument("--skip-fiftyone", action="store_true")
    p.add_argument(
        "--settle", type=float, default=10.0, help="seconds to let the disk settle before each run"
    )
    a = p.parse_args()
    global SETTLE_S
    SETTLE_S = a.settle

    work = Path(a.workdir)
    print(f"dataset: {a.images} images, {a.images * a.boxes_per_image} boxes in {work / 'data'}")
    ann = make_dataset(work / "data", a.images, a.boxes_per_image)
    print(f"annotation file: {ann.stat().st_size / 2**20:.0f} MiB")
    stores = work / "stores"
    if stores.exists():  # left by an interrupted run; deleting many files slows the disk for a while
        shutil.rmtree(stores)
        time.sleep(4 * SETTLE_S)
    stores.mkdir()

    # Order matters on this machine: deleting many files throttles its virtual disk for a while, so
    # every store is deleted only at the end, and the small runs go first.
    rows = []
    t_coco, n1, b1, m_coco = run("pycocotools", str(ann))
    rows.append(("A pycocotools COCO(file)", t_coco, n1, b1, m_coco))
    sub = subset_file(ann, min(a.subset, a.images))
    t_dfs, n4, b4, m_dfs = run("dataforge", str(sub), str(stores / "subset"))
    if not a.skip_fiftyone:
        fo_env = {"FIFTYONE_DATABASE_DIR": str(work / "fo-db"), "FIFTYONE_DO_NOT_TRACK": "true"}
        t_fo, n3, b3, m_fo = run("fiftyone", str(sub), env=fo_env)
    t_df, n2, b2, m_df = run("dataforge", str(ann), str(stores / "full"))
    rows.append(("B dataforge import (full)", t_df, n2, b2, m_df))
    assert (n1, b1) == (n2, b2), "dataforge and pycocotools disagree on counts"
    t_dfl, _, _, m_dfl = run("dataforge", str(ann), str(stores / "full-link"), "link")
    rows.append(("B' dataforge import --link (full)", t_dfl, n2, b2, m_dfl))
    if not a.skip_fiftyone:
        rows.append((f"C FiftyOne from_dir ({n3} images)", t_fo, n3, b3, m_fo))
    rows.append((f"D dataforge import ({n4} images)", t_dfs, n4, b4, m_dfs))
    shutil.rmtree(stores)

    print()
    print(f"{'run':40s} {'seconds':>9s} {'images':>8s} {'boxes':>9s} {'us/image':>9s} {'peak MiB':>9s}")
    for name, t, n, b, m in rows:
        print(f"{name:40s} {t:9.2f} {n:8d} {b:9d} {t / n * 1e6:9.1f} {m:9.0f}")
    print()
    time_ratio = t_df / t_coco
    mem_ratio = m_df / m_coco
    print(
        f"time   dataforge / pycocotools = {time_ratio:.2f}x   (target <= 3x)   {'PASS' if time_ratio <= 3 else 'FAIL'}"
        f"   [with --link: {t_dfl / t_coco:.2f}x]"
    )
    print(
        f"memory dataforge / pycocotools = {mem_ratio:.2f}x   (target <= 2x)   {'PASS' if mem_ratio <= 2 else 'FAIL'}"
    )
    if not a.skip_fiftyone:
        per_fo, per_df_full, per_df_sub = t_fo / n3, t_df / n2, t_dfs / n4
        r_full, r_sub = per_fo / per_df_full, per_fo / per_df_sub
        print(
            f"per image FiftyOne / dataforge = {r_full:.1f}x against the full import, {r_sub:.1f}x on the same "
            f"subset   (target >= 20x)   {'PASS' if min(r_full, r_sub) >= 20 else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
