"""Big TFRecord imports: records parsed in forked processes and images copied by a helper process
give exactly what the one-process path gives, and errors still leave the store as it was."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dataforge.api import export_dataset, import_dataset
from dataforge.errors import DataError, ImageError
from dataforge.formats.base import Embedded
from dataforge.formats.tfrecord.example import encode_example, parse_example
from dataforge.formats.tfrecord.framing import read_records, write_record
from dataforge.ingest.files import HELPER_MIN_IMAGES, BackgroundCopy
from dataforge.parallel import map_ranges, ranges
from dataforge.synthetic import make_shapes_dataset
from tests.conftest import file_bytes

N = 2100  # enough for two parsing processes (1,000 records each at least) and two copy helpers


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tf")
    make_shapes_dataset(tmp / "src", n_images=N, size_wh=(48, 32), seed=3)
    import_dataset(tmp / "src" / "instances.json", store=tmp / "s")
    export_dataset(tmp / "s", format="tfrecord", out=tmp / "tf", shards=2)
    return tmp / "tf"


def _stored(store: Path) -> dict[str, Any]:
    data = json.loads((store / "annotations.json").read_text())
    for img in data["images"]:
        img["source"].pop("imported")
    return {k: data[k] for k in ("images", "annotations", "categories")}


_IMPORT = """
import os, sys, threading
from dataforge.api import import_dataset
forked = []
real_fork = os.fork
def fork():
    pid = real_fork()
    if pid:
        forked.append(pid)
    return pid
os.fork = fork
assert threading.active_count() == 1
import_dataset(sys.argv[1], store=sys.argv[2], format="tfrecord")
print(len(forked))
"""


def _import(src: Path, store: Path, processes: int) -> int:
    """Import in a fresh interpreter (a test process may run threads, and then nothing forks);
    returns how many processes the import forked."""
    env = {**os.environ, "DATAFORGE_PROCESSES": str(processes)}
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT, str(src), str(store)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[-1])


@pytest.mark.parametrize("label_map", [True, False], ids=["label-map", "class-text-only"])
def test_parallel_import_equals_one_process(shards: Path, tmp_path: Path, label_map: bool) -> None:
    src = tmp_path / "tf"
    shutil.copytree(shards, src)
    if not label_map:  # categories are then numbered by first appearance, across processes too
        (src / "label_map.pbtxt").unlink()
    assert _import(src, tmp_path / "one", 1) == 0
    assert _import(src, tmp_path / "two", 2) == 1  # a second parsing process (copy helpers are spawned)
    one, two = _stored(tmp_path / "one"), _stored(tmp_path / "two")
    assert len(one["images"]) == N and len(one["annotations"]) > N
    assert two == one
    images = {k: v for k, v in file_bytes(tmp_path / "one").items() if k.startswith("images/")}
    assert {k: v for k, v in file_bytes(tmp_path / "two").items() if k.startswith("images/")} == images
    assert len(images) == N


def test_a_bad_box_fails_the_parallel_import_and_leaves_the_store_as_it_was(
    shards: Path, simple_coco: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "tf"
    shutil.copytree(shards, src)
    shard = next(src.glob("default.tfrecord-00001-*"))
    records = list(read_records(shard.open("rb")))
    ex: dict[str, Any] = {k: list(v) for k, v in parse_example(records[-1]).items()}
    assert ex["image/object/bbox/xmax"], "the last record has boxes"
    ex["image/object/bbox/xmax"][0] = 1.5  # half an image width past the right edge
    floats = {k: v for k, v in ex.items() if "bbox" in k}
    ints = {k: v for k, v in ex.items() if k in ("image/width", "image/height", "image/object/class/label")}
    records[-1] = encode_example(
        {k: v for k, v in ex.items() if k not in floats and k not in ints}, floats, ints
    )
    with shard.open("wb") as f:
        for r in records:
            write_record(f, r)
    import_dataset(simple_coco, store=tmp_path / "s")
    before = file_bytes(tmp_path / "s")
    monkeypatch.setenv("DATAFORGE_PROCESSES", "2")
    with pytest.raises(DataError, match=r"extends outside the 48x32 image"):
        import_dataset(src, store=tmp_path / "s", format="tfrecord")
    assert file_bytes(tmp_path / "s") == before  # the helper was stopped and its files removed


@pytest.mark.parametrize("processes", [1, 2])
def test_a_container_that_changed_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: int
) -> None:
    monkeypatch.setenv("DATAFORGE_PROCESSES", str(processes))
    container = tmp_path / "c.bin"
    container.write_bytes(b"x" * 100)
    jobs: list[Any] = [
        ("", i, f"out/{i}.jpg", Embedded(str(container), 10 * (i % 5), 10, 1, 1, ""))
        for i in range(2 * HELPER_MIN_IMAGES)
    ]
    # 5 bytes short, in the last helper's part: its failure is named by its place in all the jobs
    jobs.append(("", 999, "out/999.jpg", Embedded(str(container), 95, 10, 1, 1, "")))
    ranges_ = [(e.path, e.offset, e.length, str(tmp_path / final)) for _, _, final, e in jobs]
    copy = BackgroundCopy(jobs, ranges_, ())
    assert len(copy._procs) == (0 if processes == 1 else 2)  # copied here, or by two helpers
    with pytest.raises(
        ImageError, match=r"image 999 \(out/999\.jpg\): cannot copy it from .*c\.bin.*read 5 of 10"
    ):
        copy.wait()
    assert (tmp_path / "out" / "0.jpg").read_bytes() == b"x" * 10


_MAP = """
from dataforge.errors import DataError
from dataforge.parallel import map_ranges
assert map_ranges(lambda a, b: (a, b, __import__("os").getpid()), 3000, processes=3)[1][2] != __import__("os").getpid()
assert [r[:2] for r in map_ranges(lambda a, b: (a, b), 3000, processes=3)] == [(0, 1000), (1000, 2000), (2000, 3000)]
def fail_in_child(a, b):
    if a > 0:
        raise DataError(f"bad range {a}:{b}", item="x")
    return a
try:
    map_ranges(fail_in_child, 2000, processes=2)
except DataError as exc:
    print(exc, exc.item)
"""


def test_map_ranges_splits_evenly_and_passes_errors_back() -> None:
    assert ranges(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert ranges(2, 4) == [(0, 1), (1, 2)]
    assert map_ranges(lambda a, b: (a, b), 3000, processes=3) in (
        [(0, 3000)],
        [(0, 1000), (1000, 2000), (2000, 3000)],
    )
    out = subprocess.run([sys.executable, "-c", _MAP], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "bad range 1000:2000 x"


def _copiers() -> list[int]:
    """Pids of running copy helpers."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"ingest/copier.py" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _importers(src: Path) -> list[int]:
    """Pids of running ``dataforge import SRC`` processes (the command and the children it forked)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and str(src).encode() in (proc / "cmdline").read_bytes()
                and (proc / "stat").read_bytes().split(b") ")[1][:1] != b"Z"  # zombies are dead
            ):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the helper processes")
@pytest.mark.parametrize("label_map", [True, False], ids=["direct-import", "general-import"])
def test_a_killed_import_leaves_nothing_running_and_the_store_recovers(
    shards: Path, simple_coco: Path, tmp_path: Path, label_map: bool
) -> None:
    """Killed while images are being written: by the parsing processes of the direct import, or by
    the copy helpers of the general one (no label map). Every process it started dies with it."""
    from dataforge.api import tag_images

    src = tmp_path / "tf"
    for copy in "abcd":  # 4 x 2,100 images (split a/ ... d/): a longer time to catch it writing
        shutil.copytree(shards, src / copy, ignore=shutil.ignore_patterns("label_map.pbtxt"))
    if label_map:
        shutil.copy(shards / "label_map.pbtxt", src)
    store = tmp_path / "s"
    import_dataset(simple_coco, store=store)
    before = file_bytes(store)
    env = {**os.environ, "DATAFORGE_PROCESSES": "2"}
    dataforge = str(Path(sys.executable).parent / "dataforge")
    proc = subprocess.Popen([dataforge, "import", str(src), "--store", str(store)], env=env)

    def writing() -> bool:
        if not label_map:
            return bool(_copiers())
        new = [store / "images" / c for c in "abcd" if (store / "images" / c).is_dir()]
        return sum(len(os.listdir(d)) for d in new) > 50

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not writing():
        time.sleep(0.0005)
    assert writing(), "the import wrote no images before it ended"
    assert proc.poll() is None, "the import ended before it could be killed"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_copiers() or _importers(src)):
        time.sleep(0.01)
    assert not _copiers() and not _importers(src)  # they die with the import (PR_SET_PDEATHSIG)
    tag_images(store, add=["t"])  # the next command that takes the lock removes the journaled files
    after = file_bytes(store)
    assert {k: v for k, v in after.items() if k.startswith("images/")} == {
        k: v for k, v in before.items() if k.startswith("images/")
    }
    assert not [k for k in after if k.startswith(".commit-")]


def test_a_batch_mixing_embedded_images_and_files(tmp_path: Path) -> None:
    """A reader may give some images as places in a container file and others as files: the
    helpers copy the first kind while the import reads the second, and both land in the store."""
    from dataforge.formats.base import ImportBatch
    from dataforge.imageio import sha256_bytes
    from dataforge.ingest import ingest
    from tests.conftest import jpeg_bytes

    inner = [jpeg_bytes((20 + i, 10), (i, 2 * i, 3)) for i in range(HELPER_MIN_IMAGES)]
    container = tmp_path / "pack.bin"
    container.write_bytes(b"head" + b"".join(inner))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "loose.jpg").write_bytes(jpeg_bytes((33, 11)))
    images: list[dict[str, Any]] = [{"id": 1, "file_name": "loose.jpg"}]
    offset = 4
    for i, data in enumerate(inner):
        images.append(
            {
                "id": i + 2,
                "file_name": f"packed/{i}.jpg",
                "_embedded": Embedded(str(container), offset, len(data), 20 + i, 10, sha256_bytes(data)),
            }
        )
        offset += len(data)
    batch = ImportBatch(
        format="test",
        source=str(container),
        images_root=tmp_path / "src",
        images=images,
        annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1.0, 1.0, 5.0, 5.0]}],
        categories=[{"id": 1, "name": "cat"}],
        private_keys=True,
    )
    res = ingest(tmp_path / "s", batch)
    assert (res.images, res.annotations) == (HELPER_MIN_IMAGES + 1, 1)
    stored = tmp_path / "s" / "images"
    assert (stored / "loose.jpg").read_bytes() == (tmp_path / "src" / "loose.jpg").read_bytes()
    assert [(stored / "packed" / f"{i}.jpg").read_bytes() for i in range(len(inner))] == inner
