"""Peak memory of a TFRecord import: the import keeps references into the shards, not the images.

Makes 1,500 1280x960 JPEGs (about 480 MB of records), then imports them in a fresh process and
prints its peak resident memory and that of its largest child process (Linux; with 2,000 records
or more the import parses and writes in one forked process per core). Usage:

    .venv/bin/python benchmarks/tfrecord_memory.py [--images 1500] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dataforge.api import export_dataset, import_dataset
from dataforge.synthetic import make_shapes_dataset

_MEASURE = """
import os, resource, sys, time
from dataforge.api import import_dataset
t = time.perf_counter()
res = import_dataset(sys.argv[1], store=sys.argv[2], format="tfrecord")
status = open("/proc/self/status").read()  # VmHWM: this process's peak (ru_maxrss survives exec)
peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
while True:  # reap the import's forked children (it leaves one that is still exiting to later)
    try:
        os.wait()
    except ChildProcessError:
        break
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{res.images} images in {time.perf_counter() - t:.2f} s; peak memory {peak:.0f} MiB, "
      f"largest child process {child:.0f} MiB")
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1500)
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "dataforge-bench-tfrecord-memory"))
    a = p.parse_args()
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    make_shapes_dataset(work / "src", n_images=a.images, size_wh=(1280, 960), seed=0)
    import_dataset(work / "src" / "instances.json", store=work / "store")
    export_dataset(work / "store", format="tfrecord", out=work / "tf")
    size = sum(f.stat().st_size for f in (work / "tf").glob("*.tfrecord*"))
    print(f"{size / 2**20:.0f} MiB of TFRecord")
    subprocess.run([sys.executable, "-c", _MEASURE, str(work / "tf"), str(work / "back")], check=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
