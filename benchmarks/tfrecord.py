"""Benchmark: TFRecord export and import of 10,000 images against a plain loop.

The plain loops do only the I/O each direction cannot avoid:
  export baseline: read each image file and write its bytes as one raw TFRecord record (framing + CRCs);
  import baseline: read those raw records (checking CRCs) and write each image's bytes to its own file,
                   as any store that keeps images as files must.
dataforge does the real thing on top: tf.train.Example encoding/parsing, label map, normalized boxes,
image probing and hashing, box checks, the commit journal, the annotations file and the report.
The import uses this machine's cores as a user's import would (set DATAFORGE_PROCESSES=1 to time one process).

Each round times the four steps in turn (plain export, ours, plain import, ours), each after a
pause; the verdict is on the median ratio over the rounds, since this VM's speed swings by a
fifth from one step to the next. The first round is shown too: it carries the one-time costs of a
fresh process (our import's first use of the protobuf runtime, about 9 ms), as a CLI command would.

Target (issue 3): each direction within 1.5x of its plain loop. Usage:

    .venv/bin/python benchmarks/tfrecord.py [--images 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from dataforge.api import export_dataset, import_dataset
from dataforge.formats.tfrecord.framing import read_records, write_record
from dataforge.store import Store
from dataforge.synthetic import make_shapes_dataset


def settle(seconds: float) -> None:
    """Flush dirty pages and let this machine's throttled virtual disk recover between runs."""
    os.sync()
    time.sleep(seconds)


def baseline_export(store: Store, out: Path) -> float:
    out.mkdir(parents=True)
    t = time.perf_counter()
    with open(out / "raw.tfrecord", "wb") as f:
        for img in store.images:
            write_record(f, (store.images_dir / img["file_name"]).read_bytes())
    return time.perf_counter() - t


def baseline_import(raw: Path, out: Path) -> float:
    out.mkdir(parents=True)
    t = time.perf_counter()
    with open(raw, "rb") as f:
        for i, data in enumerate(read_records(f)):
            (out / f"{i:07d}.jpg").write_bytes(data)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--size", default="64x48", help="image size WxH (default 64x48: per-image costs dominate)")
    p.add_argument("--repeat", type=int, default=5, help="rounds of the four timed steps (default 5)")
    p.add_argument("--settle", type=float, default=2.0)
    # tmpfs by default: this machine's virtual disk throttles bursts of small writes, which makes
    # file-writing runs swing 10x between repeats; on tmpfs both sides are measured without that noise.
    default_dir = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    p.add_argument("--workdir", default=os.path.join(default_dir, "dataforge-bench-tfrecord"))
    a = p.parse_args()
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    w, h = (int(v) for v in a.size.lower().split("x"))
    print(f"making a store of {a.images} images ({w}x{h} JPEG, up to 4 boxes each) in {work}")
    make_shapes_dataset(work / "src", n_images=a.images, size_wh=(w, h), seed=0)
    import_dataset(work / "src" / "instances.json", store=work / "store")
    store = Store.open(work / "store")
    n_boxes = len(store.annotations)

    rounds: list[tuple[float, float, float, float]] = []
    for r in range(a.repeat):
        outs = [work / f"base-export-{r}", work / f"tf-{r}", work / f"base-import-{r}", work / f"back-{r}"]
        settle(a.settle)
        t_base_exp = baseline_export(store, outs[0])
        settle(a.settle)
        t0 = time.perf_counter()
        res = export_dataset(work / "store", format="tfrecord", out=outs[1])
        t_exp = time.perf_counter() - t0
        assert res.images == a.images and res.annotations == n_boxes

        settle(a.settle)
        t_base_imp = baseline_import(outs[0] / "raw.tfrecord", outs[2])
        settle(a.settle)
        t0 = time.perf_counter()
        back = import_dataset(outs[1], store=outs[3], format="tfrecord")
        t_imp = time.perf_counter() - t0
        assert back.images == a.images and back.annotations == n_boxes
        if r == 0:
            size = sum(p.stat().st_size for p in outs[1].glob("*.tfrecord*"))
            print(f"\n{a.images} images, {n_boxes} boxes, {size / 2**20:.1f} MiB of records\n")
            print(f"{'round':>5s} {'µs/image: export plain':>24s} {'ours':>6s} {'ratio':>6s}   ", end="")
            print(f"{'import plain':>12s} {'ours':>6s} {'ratio':>6s}")
        rounds.append((t_base_exp, t_exp, t_base_imp, t_imp))
        us = [t / a.images * 1e6 for t in rounds[-1]]
        print(
            f"{r + 1:5d} {us[0]:24.1f} {us[1]:6.1f} {us[1] / us[0]:5.2f}x   {us[2]:12.1f} {us[3]:6.1f} {us[3] / us[2]:5.2f}x"
        )
        for out in outs:
            shutil.rmtree(out, ignore_errors=True)

    print()
    for what, k in (("export", 0), ("import", 2)):
        ratios = [row[k + 1] / row[k] for row in rounds]
        ratio = statistics.median(ratios)
        print(
            f"{what}: dataforge / plain loop = {ratio:.2f}x median of {len(ratios)} rounds "
            f"(first round {ratios[0]:.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x)   "
            f"target <= 1.5x   {'PASS' if ratio <= 1.5 else 'FAIL'}"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
