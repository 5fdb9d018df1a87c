"""Real processes: concurrent writers lose nothing; a killed import leaves the store as it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dataforge.api import import_dataset, validate
from dataforge.store import Store
from dataforge.synthetic import make_shapes_dataset
from tests.conftest import file_bytes

DATAFORGE = str(Path(sys.executable).parent / "dataforge")


def test_concurrent_tag_processes_lose_no_update(simple_coco: Path, tmp_path: Path) -> None:
    store = tmp_path / "s"
    import_dataset(simple_coco, store=store)
    n = 6
    # All processes wait on one barrier file, then start at the same moment.
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        "from dataforge.cli import main\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.001)\n"
        f"sys.exit(main(['tag', {str(store)!r}, '--add', sys.argv[1]]))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, f"t{i}"]) for i in range(n)]
    time.sleep(1.0)
    go.write_text("go")
    assert [p.wait(timeout=120) for p in procs] == [0] * n
    s = Store.open(store)
    assert all(sorted(r.tags) == sorted(f"t{i}" for i in range(n)) for r in s)
    assert s.revision == 1 + n
    assert [h["op"] for h in s.history()].count("tag") == n


def _visible(files: dict[str, bytes]) -> dict[str, bytes]:
    """A store's files without the lock and commit journals."""
    return {k: v for k, v in files.items() if not k.startswith((".lock", ".commit-"))}


def test_killed_import_leaves_the_store_as_it_was_and_a_rerun_finishes(tmp_path: Path) -> None:
    from dataforge.api import tag_images

    make_shapes_dataset(tmp_path / "base", n_images=3, seed=1)
    import_dataset(tmp_path / "base" / "instances.json", store=tmp_path / "s")
    before = file_bytes(tmp_path / "s")
    make_shapes_dataset(tmp_path / "big", n_images=1500, size_wh=(64, 48), seed=2, subdir="big")
    proc = subprocess.Popen(
        [DATAFORGE, "import", str(tmp_path / "big" / "instances.json"), "--store", str(tmp_path / "s")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
        k.startswith("images/big/") for k in file_bytes(tmp_path / "s")
    ):
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not after finishing
    after = file_bytes(tmp_path / "s")
    journals = [k for k in after if k.startswith(".commit-")]
    assert len(journals) == 1 and json.loads(after[journals[0]]) == ["big"]  # written before any image
    written = {k for k in after if k.startswith("images/big/")}
    assert written  # it was killed while writing images, all of them inside the journaled folder
    assert {k: v for k, v in _visible(after).items() if k not in written} == _visible(before)
    assert len(Store.open(tmp_path / "s")) == 3  # annotations.json is untouched
    # The next command that takes the lock removes what the journal names and nothing else.
    tag_images(tmp_path / "s", add=["t"])
    recovered = file_bytes(tmp_path / "s")
    assert {k: v for k, v in recovered.items() if k.startswith("images/")} == {
        k: v for k, v in before.items() if k.startswith("images/")
    }
    assert not [k for k in recovered if k.startswith(".commit-")]
    # Re-running does the whole job.
    res = import_dataset(tmp_path / "big" / "instances.json", store=tmp_path / "s")
    assert res.images == 1500
    assert not [k for k in file_bytes(tmp_path / "s") if k.startswith(".commit-")]
    assert validate(tmp_path / "s").ok and not validate(tmp_path / "s").warnings


def test_a_crash_after_writing_images_but_before_annotations_is_undone(
    simple_coco: Path, tmp_path: Path
) -> None:
    from dataforge.api import tag_images
    from dataforge.store.staging import write_journal

    store = tmp_path / "s"
    import_dataset(simple_coco, store=store)
    before = _visible(file_bytes(store))
    images = store / "images"
    (images / "stray.jpg").write_bytes(b"s")  # a file no import made: recovery must keep it
    # What an import does right before it would write annotations.json, then "dies":
    names = ["new/deep/x.jpg", "y.jpg"]
    write_journal(str(store), str(images), names, "dead")
    assert json.loads((store / ".commit-dead.json").read_text()) == ["new", "y.jpg"]
    (images / "new" / "deep").mkdir(parents=True)
    for name in names:
        (images / name).write_bytes(b"x")
    tag_images(store, add=["t"])  # the next command that takes the lock recovers
    after = _visible(file_bytes(store))
    assert {k for k in after if k.startswith("images/")} == {k for k in before if k.startswith("images/")} | {
        "images/stray.jpg"
    }
    assert not (images / "new").exists() and not (store / ".commit-dead.json").exists()
