"""`import dataforge` (and the CLI's start-up) stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = [
    "torch",
    "torchvision",
    "fiftyone",
    "dask",
    "distributed",
    "label_studio_sdk",
    "albumentations",
    "pycocotools",
    "pandas",
    "matplotlib",
]


def test_import_dataforge_loads_no_heavy_library() -> None:
    code = (
        "import sys, dataforge, dataforge.api, dataforge.cli, dataforge.store, dataforge.formats.coco, "
        "dataforge.validate, dataforge.info, dataforge.doctor, dataforge.query, dataforge.splits; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_building_the_command_line_imports_no_numpy() -> None:
    """Every command's parser is built at start-up (`dataforge --help`, `dataforge info`): numpy
    and what imports it wait until a command needs them."""
    code = "import sys; from dataforge.cli import build_parser; build_parser(); print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.slow
def test_dataforge_and_fiftyone_import_after_dask() -> None:
    # importlib_metadata >= 8 breaks this order (KeyError: 'author'); the pins must keep it working.
    code = "import dask, distributed; import fiftyone; print('ok')"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"FIFTYONE_DO_NOT_TRACK": "true", "PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
