"""Shared fixtures: tiny COCO datasets built from plain lists, and CLI runners.

The suite runs on two pytest-xdist workers, a test module per worker at a time (``-n 2 --dist
loadfile`` in pyproject.toml: module fixtures such as a FiftyOne database are built once). Each
worker trains with one torch thread, so two workers use the two cores without oversubscribing them;
``-n 0`` runs everything in one process with torch's default threads.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if os.environ.get("PYTEST_XDIST_WORKER"):  # before torch is imported, here and in every child process
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import pytest
from PIL import Image

from dataforge.cli import main


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests first, slowest-marked first within them, so the long ones start
    while the other worker works through the quick modules instead of ending the run alone."""
    slow_in: dict[str, int] = {}
    for it in items:
        slow_in[it.path.name] = slow_in.get(it.path.name, 0) + (it.get_closest_marker("slow") is not None)
    order = {it.nodeid: n for n, it in enumerate(items)}
    items.sort(key=lambda it: (-slow_in[it.path.name], it.path.name, order[it.nodeid]))


REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
INTEROP = SHARED / "interop"


def jpeg_bytes(size_wh: tuple[int, int], colour: tuple[int, int, int] = (90, 120, 150)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size_wh, colour).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_bytes(size_wh: tuple[int, int], colour: tuple[int, int, int] = (90, 120, 150)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size_wh, colour).save(buf, format="PNG")
    return buf.getvalue()


def make_coco(
    root: Path,
    images: Sequence[tuple[int, str, tuple[int, int]]],
    boxes: Sequence[tuple[int, int, str, Sequence[float]]],
    categories: Sequence[tuple[int, str]] = ((1, "cat"), (2, "dog")),
    *,
    write_images: bool = True,
    name: str = "instances.json",
    extra: dict[str, Any] | None = None,
) -> Path:
    """A COCO file plus images from plain lists.

    images: (id, file_name, (w, h)); boxes: (ann id, image id, category name, xywh).
    Each image gets its own colour, so no two files are identical.
    """
    (root / "images").mkdir(parents=True, exist_ok=True)
    cat_id = {n: i for i, n in categories}
    doc: dict[str, Any] = {
        "images": [{"id": i, "file_name": f, "width": s[0], "height": s[1]} for i, f, s in images],
        "annotations": [
            {
                "id": a,
                "image_id": i,
                "category_id": cat_id.get(c, c),
                "bbox": list(b),
                "area": b[2] * b[3],
                "iscrowd": 0,
            }
            for a, i, c, b in boxes
        ],
        "categories": [{"id": i, "name": n} for i, n in categories],
    }
    if extra:
        doc.update(extra)
    if write_images:
        for k, (_i, f, s) in enumerate(images):
            p = root / "images" / f
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(jpeg_bytes(s, ((k * 37) % 256, (k * 91) % 256, (k * 53) % 256)))
    path = root / name
    path.write_text(json.dumps(doc))
    return path


def shapes_store(root: Path, *, n: int, seed: int, size_wh: tuple[int, int] = (96, 72)) -> Path:
    """A store of synthetic shapes with exact instance masks and the triangles' keypoints."""
    from dataforge.api import import_dataset
    from dataforge.synthetic import make_shapes_dataset

    src = root / "src"
    make_shapes_dataset(
        src, n_images=n, size_wh=size_wh, max_objects=4, seed=seed, masks=True, keypoints=True
    )
    import_dataset(src / "instances.json", store=root / "store", format="coco", images=src / "images")
    return root / "store"


@pytest.fixture
def coco_factory(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def factory(*args: Any, **kwargs: Any) -> Path:
        return make_coco(tmp_path / f"src{next(counter)}", *args, **kwargs)

    return factory


@pytest.fixture
def simple_coco(coco_factory: Callable[..., Path]) -> Path:
    """3 images (one without boxes), 2 categories, 4 boxes."""
    return coco_factory(
        [(1, "a.jpg", (64, 48)), (2, "b.jpg", (64, 48)), (3, "sub/c.jpg", (32, 32))],
        [
            (1, 1, "cat", [1, 2, 10, 20]),
            (2, 1, "dog", [5, 5, 20, 10]),
            (3, 2, "cat", [0, 0, 64, 48]),
            (4, 2, "cat", [10.5, 10.25, 3.5, 2.0]),
        ],
    )


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run the CLI in-process: cli("info", store) -> CliResult(code, stdout, stderr)."""

    def run(*args: Any) -> CliResult:
        code = main([str(a) for a in args])
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run


def run_dataforge(
    *args: Any, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real console script in a subprocess."""
    exe = Path(sys.executable).parent / "dataforge"
    return subprocess.run(
        [str(exe), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def file_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: a store's complete state."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def interop_facts() -> dict[str, Any]:
    """../shared/interop/facts.json, or skip the calling test module with the reason."""
    if not (INTEROP / "facts.json").is_file():
        pytest.skip(
            f"interop corpus not found at {INTEROP} (it ships beside the repository in ../shared; "
            "CI always has it)",
            allow_module_level=True,
        )
    return json.loads((INTEROP / "facts.json").read_text())  # type: ignore[no-any-return]


def pip_install_plugin(tmp_path: Path, dist: str, group: str, entries: str, module: str, code: str) -> Path:
    """pip-install a one-module distribution registering ``entries`` (TOML lines) in entry-point
    ``group`` into its own target folder; return the folder (put it on PYTHONPATH to use it)."""
    import textwrap

    src = tmp_path / f"src-{dist}"
    src.mkdir()
    (src / f"{module}.py").write_text(textwrap.dedent(code))
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{dist}"\nversion = "0.1"\n'
        f'[project.entry-points."{group}"]\n{entries}\n'
        f'[tool.setuptools]\npy-modules = ["{module}"]\n'
    )
    target = tmp_path / f"site-{dist}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target
