"""doctor runs the real checks: torch, dask, albumentations, FiftyOne with its MongoDB, Label Studio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_dataforge


@pytest.mark.slow
def test_doctor_finds_every_required_component(tmp_path: Path) -> None:
    env = {"FIFTYONE_DATABASE_DIR": str(tmp_path / "fo-db"), "FIFTYONE_DO_NOT_TRACK": "true"}
    p = run_dataforge("doctor", "--json", env=env, timeout=400)
    report = json.loads(p.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    failed = {n: c["detail"] for n, c in checks.items() if c["required"] and not c["ok"]}
    assert failed == {} and p.returncode == 0
    assert "MongoDB" in checks["fiftyone"]["detail"] and "answered" in checks["fiftyone"]["detail"]
    assert "nms works" in checks["torch"]["detail"]
    assert "label-studio 1.23.2" in checks["label-studio-server"]["detail"]
    assert {"cuda", "chromium"} <= set(checks)  # optional, reported either way


def test_doctor_gives_a_fix_hint_for_what_does_not_work(tmp_path: Path) -> None:
    p = run_dataforge(
        "doctor",
        "--only",
        "label-studio-server",
        env={"DATAFORGE_LABEL_STUDIO": str(tmp_path / "nope" / "label-studio")},
    )
    assert p.returncode == 1
    assert (
        "[FAIL] label-studio-server" in p.stdout and "fix: the server lives in .venv-labelstudio/" in p.stdout
    )
