"""`dataforge augment` end to end: the new store, lineage and replay, reproducibility across workers,
resuming after kills (real processes), bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dataforge.api import import_dataset
from dataforge.augment import parse_pipeline, replay
from dataforge.augment.job import augment
from dataforge.errors import ComponentError, ImageError, UsageError
from dataforge.store import Store
from dataforge.synthetic import make_shapes_dataset
from tests.conftest import REPO, file_bytes, run_dataforge

PIPELINE = REPO / "examples" / "pipelines" / "flip-crop-jitter.yaml"
SPEC = {
    "seed": 7,
    "copies": 2,
    "steps": [
        {"type": "hflip", "p": 0.5},
        {"type": "random_resized_crop", "scale": [0.4, 1.0]},
        {"type": "rotate", "limit": 8, "p": 0.3},
        {
            "type": "color_jitter",
            "brightness": 0.2,
            "contrast": 0.2,
            "saturation": 0.2,
            "hue": 0.05,
            "p": 0.8,
        },
    ],
    "boxes": {"min_visibility": 0.3, "min_area": 4},
}


def make_store(root: Path, n: int = 12, size: tuple[int, int] = (96, 72)) -> Path:
    src = root / "src"
    make_shapes_dataset(src, n_images=n, size_wh=size, max_objects=5, seed=3)
    import_dataset(source=src / "instances.json", store=root / "store", format="coco", images=src / "images")
    return root / "store"


def output_state(out: Path) -> tuple[dict[str, bytes], list, list]:
    """Files and records of an augmented store, minus what legitimately differs between runs."""
    data = json.loads((out / "annotations.json").read_text())
    files = {k: v for k, v in file_bytes(out / "images").items()}
    return files, data["images"], data["annotations"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("aug"))


def test_augment_makes_a_valid_store_with_lineage(store: Path, tmp_path: Path, cli) -> None:
    res = augment(store, parse_pipeline(SPEC), tmp_path / "out", scheduler="sync")
    src = Store.open(store)
    out = Store.open(tmp_path / "out")
    assert res.images == len(out) == 2 * len(src)
    assert cli("validate", tmp_path / "out").code == 0
    first = out.images[0]
    lineage = first["source"]
    assert lineage["source_image_id"] == src.images[0]["id"] and lineage["copy"] == 0
    assert lineage["pipeline"] == parse_pipeline(SPEC).digest and lineage["seed"] == 7
    assert lineage["backend"] == "opencv" and isinstance(lineage["ops"], list)
    assert first["file_name"] == "000000_aug0.jpg" and out.images[1]["file_name"] == "000000_aug1.jpg"
    c = res.counts
    assert c["boxes_in"] == 2 * len(src.annotations) == c["boxes_out"] + c["boxes_dropped"]
    assert c["boxes_out"] == len(out.annotations)
    # every kept box lies inside its image and keeps its category
    sizes = {i["id"]: (i["width"], i["height"]) for i in out.images}
    for a in out.annotations:
        x, y, w, h = a["bbox"]
        W, H = sizes[a["image_id"]]
        assert x >= 0 and y >= 0 and x + w <= W + 1e-9 and y + h <= H + 1e-9 and w * h >= 4
        assert a["category_id"] in {c.id for c in src.categories}
    info = cli("info", tmp_path / "out", "--json").json()
    assert info["augmented_images"] == len(out)
    assert info["augmentation"]["pipeline_sha256"] == parse_pipeline(SPEC).digest
    assert info["augmentation"]["counts"] == res.counts
    one = cli("info", tmp_path / "out", "--image", 2).json()
    assert one["source"]["copy"] == 1 and one["source"]["ops"] == out.images[1]["source"]["ops"]
    assert out.history()[-1]["op"] == "augment"
    assert not (tmp_path / "out" / ".augment").exists()


def test_replay_recomputes_the_exact_file(store: Path, tmp_path: Path) -> None:
    augment(store, parse_pipeline(SPEC), tmp_path / "out", scheduler="sync")
    out = Store.open(tmp_path / "out")
    for img in out.images[:6]:
        r = replay(tmp_path / "out", img["id"])
        assert r.data == (out.images_dir / img["file_name"]).read_bytes()
        rec = out.get(img["id"])
        assert np.allclose(r.boxes_xyxy, rec.boxes_xyxy)


def test_torchvision_backend_on_cpu_tensors_runs_the_gpu_code_path(store: Path, tmp_path: Path) -> None:
    geo = {
        **SPEC,
        "steps": [
            {"type": "hflip", "p": 0.5},
            {"type": "crop", "x_min": 8, "y_min": 4, "x_max": 90, "y_max": 70},
        ],
        "copies": 1,
    }
    a = augment(store, parse_pipeline(geo), tmp_path / "cv", scheduler="sync", backend="opencv")
    b = augment(
        store, parse_pipeline(geo), tmp_path / "tv", scheduler="sync", backend="torchvision", device="cpu"
    )
    assert a.counts == b.counts
    sa, sb = Store.open(tmp_path / "cv"), Store.open(tmp_path / "tv")
    assert sb.images[0]["source"]["backend"] == "torchvision-cpu"
    for ia, ib in zip(sa.images, sb.images, strict=True):
        assert ia["source"]["ops"] == ib["source"]["ops"]
        assert np.allclose(sa.get(ia["id"]).boxes_xyxy, sb.get(ib["id"]).boxes_xyxy)
    r = replay(tmp_path / "tv", sb.images[0]["id"])
    assert r.data == (sb.images_dir / sb.images[0]["file_name"]).read_bytes()


def test_output_is_byte_identical_whatever_the_workers_and_chunks(store: Path, tmp_path: Path) -> None:
    p = parse_pipeline(SPEC)
    augment(store, p, tmp_path / "w1", workers=1, chunk_size=5)
    augment(store, p, tmp_path / "w2", workers=2, chunk_size=3)
    augment(store, p, tmp_path / "thr", scheduler="threads", workers=2, chunk_size=7)
    ref = output_state(tmp_path / "w1")
    assert ref[0] and output_state(tmp_path / "w2") == ref == output_state(tmp_path / "thr")


def test_cli_augment_then_rerun_says_nothing_to_do(store: Path, tmp_path: Path, cli) -> None:
    r = cli(
        "augment",
        store,
        "--pipeline",
        PIPELINE,
        "--out",
        tmp_path / "o",
        "--copies",
        "1",
        "--scheduler",
        "sync",
        "--json",
    )
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["images"] == len(Store.open(store)) and doc["scheduler"] == "sync"
    r = cli(
        "augment",
        store,
        "--pipeline",
        PIPELINE,
        "--out",
        tmp_path / "o",
        "--copies",
        "1",
        "--scheduler",
        "sync",
    )
    assert r.code == 0 and "already complete" in r.out
    r = cli(
        "augment",
        store,
        "--pipeline",
        PIPELINE,
        "--out",
        tmp_path / "o",
        "--copies",
        "2",
        "--scheduler",
        "sync",
    )
    assert r.code == 2 and "already holds a store (made by a different job)" in r.err


def test_preview_writes_a_grid(store: Path, tmp_path: Path, cli) -> None:
    import cv2

    r = cli("augment", store, "--pipeline", PIPELINE, "--preview", "3", "--out", tmp_path / "p.png")
    assert r.code == 0, r.err
    grid = cv2.imread(str(tmp_path / "p.png"))
    assert grid.shape[0] == 2 * (200 + 16)  # 3 pairs, 2 per row
    assert (grid[..., 1] > 150).any() and (grid[..., 2] > 200).any()  # green and red boxes drawn


@pytest.mark.parametrize(
    ("out", "match"),
    [("store/inside", "outside the input store"), ("store", "outside the input store")],
)
def test_augment_never_writes_into_its_input(store: Path, out: str, match: str) -> None:
    before = file_bytes(store)
    with pytest.raises(UsageError, match=match):
        augment(store, parse_pipeline(SPEC), store.parent / out, scheduler="sync")
    assert file_bytes(store) == before


def test_bad_arguments_are_one_line_errors(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataforge.augment.job as job

    monkeypatch.setattr(job, "CONNECT_TIMEOUT_S", 1.0)
    p = parse_pipeline(SPEC)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(UsageError, match="exists and is not empty"):
        augment(store, p, tmp_path / "full", scheduler="sync")
    with pytest.raises(UsageError, match="no images to augment match the selection"):
        augment(store, p, tmp_path / "o1", where="boxes > 99", scheduler="sync")
    with pytest.raises(UsageError, match="'normalize' step"):
        augment(store, parse_pipeline({"steps": [{"type": "normalize"}]}), tmp_path / "o2")
    with pytest.raises(UsageError, match="cannot reach a dask scheduler"):
        augment(store, p, tmp_path / "o3", scheduler="tcp://127.0.0.1:9")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ComponentError, match="--device cuda was requested but torch sees no CUDA GPU"):
            augment(store, p, tmp_path / "o4", device="cuda")


def test_a_different_unfinished_job_in_out_is_refused(store: Path, tmp_path: Path) -> None:
    src = Store.open(store)
    with pytest.raises(ImageError):
        _corrupt_run(store, tmp_path)
    with pytest.raises(UsageError, match="holds an unfinished augment job with different settings"):
        augment(store, parse_pipeline({**SPEC, "seed": 99}), tmp_path / "out", scheduler="sync")
    assert len(src.images) == len(Store.open(store).images)


def _corrupt_run(store: Path, tmp_path: Path) -> None:
    """A store whose 5th image is truncated: the job fails there, after the first chunks."""
    bad = tmp_path / "bad-store"
    if not bad.exists():
        import shutil

        shutil.copytree(store, bad)
        victim = bad / "images" / Store.open(bad).images[4]["file_name"]
        victim.write_bytes(victim.read_bytes()[:200])
    augment(bad, parse_pipeline(SPEC), tmp_path / "out", scheduler="sync", chunk_size=2)


def test_corrupt_source_image_fails_with_its_name_or_is_skipped_and_reported(
    store: Path, tmp_path: Path
) -> None:
    with pytest.raises(ImageError, match=r"000004\.jpg: cannot decode the image"):
        _corrupt_run(store, tmp_path)
    bad = tmp_path / "bad-store"
    res = augment(bad, parse_pipeline(SPEC), tmp_path / "skip", scheduler="sync", on_error="skip")
    n = len(Store.open(bad))
    assert res.images == 2 * (n - 1) and len(res.skipped) == 1
    report = json.loads(res.report.read_text())  # type: ignore[union-attr]
    assert report["skipped"][0]["id"] == 5 and "000004.jpg" in report["skipped"][0]["message"]
    # fixing the image and re-running the failed job finishes it, keeping the finished chunks
    Path(bad / "images" / "000004.jpg").write_bytes((store / "images" / "000004.jpg").read_bytes())
    done_before = len(list((tmp_path / "out" / ".augment" / "done").glob("*.json")))
    assert done_before >= 2
    # what a worker killed between write and rename leaves behind is cleaned up by the re-run
    (tmp_path / "out" / "images" / ".000009_aug1.jpg.4242.tmp").write_bytes(b"half")
    res = augment(bad, parse_pipeline(SPEC), tmp_path / "out", scheduler="sync", chunk_size=2)
    assert res.resumed_units >= 4 and res.images == 2 * n
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == sorted(
        i["file_name"] for i in Store.open(tmp_path / "out").images
    )


@pytest.mark.parametrize("backend", ["opencv", "torchvision"])
def test_an_image_of_another_size_than_the_store_says_is_refused_not_augmented(
    store: Path, tmp_path: Path, backend: str
) -> None:
    """Boxes are mapped on the store's size: a file that is now another size would get boxes that
    miss its pixels, so it fails with its name on both backends (or is skipped and reported)."""
    import shutil

    from PIL import Image

    bad = tmp_path / "bad-store"
    shutil.copytree(store, bad)
    victim = bad / "images" / Store.open(bad).images[2]["file_name"]
    Image.open(victim).resize((80, 60)).save(victim)
    spec = {**SPEC, "copies": 1}
    with pytest.raises(ImageError, match=r"000002\.jpg: the image is 80x60 but the store says 96x72"):
        augment(bad, parse_pipeline(spec), tmp_path / "out", scheduler="sync", backend=backend, device="cpu")
    res = augment(
        bad,
        parse_pipeline(spec),
        tmp_path / "skip",
        scheduler="sync",
        backend=backend,
        device="cpu",
        on_error="skip",
    )
    assert res.images == len(Store.open(bad)) - 1
    assert [s["reason"] for s in res.skipped] == ["size-mismatch"]


def _worker_pids(parent: int) -> list[int]:
    import psutil

    procs = psutil.Process(parent).children(recursive=True)
    return [p.pid for p in procs if any("spawn_main" in part for part in p.cmdline())]


def _wait_for_manifests(out: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    done = out / ".augment" / "done"
    while time.monotonic() < deadline:
        if done.is_dir() and len(list(done.glob("*.json"))) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the job made no progress")


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("big"), n=160, size=(320, 240))


def _cmd(store: Path, out: Path) -> list[str]:
    exe = str(Path(sys.executable).parent / "dataforge")
    return [
        exe,
        "augment",
        str(store),
        "--pipeline",
        str(PIPELINE),
        "--out",
        str(out),
        "--workers",
        "2",
        "--chunk-size",
        "4",
        "--quiet",
    ]


def _named_semaphores() -> set[Path]:
    shm = Path("/dev/shm")
    return set(shm.glob("sem.mp-*")) if shm.is_dir() else set()


@pytest.mark.slow
def test_kill_the_whole_command_and_rerun_finishes_only_the_rest(big_store: Path, tmp_path: Path) -> None:
    semaphores = _named_semaphores()
    proc = subprocess.Popen(
        _cmd(big_store, tmp_path / "out"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _wait_for_manifests(tmp_path / "out", 3, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its dask workers, mid-job
        proc.wait()
        # SIGKILL left multiprocessing's resource tracker no time to unlink the killed cluster's
        # named semaphores; remove them (the suite runs serially: new ones are that command's).
        for sem in _named_semaphores() - semaphores:
            sem.unlink(missing_ok=True)
    assert not (tmp_path / "out" / "annotations.json").exists()
    r = run_dataforge(*_cmd(big_store, tmp_path / "out")[1:], "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    total = 4 * len(Store.open(big_store))  # the example pipeline makes 4 copies
    assert 0 < doc["resumed_units"] < total and doc["images"] == total
    uninterrupted = tmp_path / "clean"
    augment(big_store, parse_pipeline_file(), uninterrupted, workers=2)
    assert output_state(tmp_path / "out") == output_state(uninterrupted)


def parse_pipeline_file():
    from dataforge.augment import load_pipeline

    return load_pipeline(PIPELINE)


@pytest.mark.slow
def test_sigkill_a_worker_and_the_job_still_completes_identically(big_store: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _cmd(big_store, tmp_path / "out"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_manifests(tmp_path / "out", 2, proc)
    pids = _worker_pids(proc.pid)
    assert pids, "no dask worker processes found"
    os.kill(pids[0], signal.SIGKILL)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    augment(big_store, parse_pipeline_file(), tmp_path / "clean", workers=1)
    assert output_state(tmp_path / "out") == output_state(tmp_path / "clean")
