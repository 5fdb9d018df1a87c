"""The CLI: every command has --help, errors are one line with documented exit codes, --json works,
and the README's walk-through runs on the shipped example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataforge.cli import build_parser
from tests.conftest import REPO, run_dataforge

COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, cli) -> None:
    with pytest.raises(SystemExit) as info:
        cli(command, "--help")
    assert info.value.code == 0


def test_the_readme_walk_through_on_the_shipped_example(tmp_path: Path, cli) -> None:
    example = REPO / "examples" / "pets-mini"
    store = tmp_path / "pets"
    r = cli(
        "import",
        example / "instances.json",
        "--format",
        "coco",
        "--images",
        example / "images",
        "--store",
        store,
    )
    assert r.code == 0 and "imported 48 images, 102 annotations" in r.out
    r = cli("info", store)
    assert r.code == 0 and "48 images" in r.out and "cat" in r.out
    r = cli("tag", store, "--add", "needs-review", "--where", "category == 'cat' and boxes > 3")
    assert r.code == 0
    matched = int(r.out.split()[0])
    info = cli("info", store, "--json").json()
    assert info["tags"] == ({"needs-review": matched} if matched else {})
    expected = sum(
        1
        for img in json.loads((example / "instances.json").read_text())["images"]
        if _boxes(example, img["id"]) > 3 and "cat" in _cats(example, img["id"])
    )
    assert matched == expected > 0
    r = cli("split", store, "--ratios", "train=0.8,val=0.1,test=0.1", "--seed", "0", "--stratify")
    assert r.code == 0
    splits = cli("info", store, "--json").json()["splits"]
    counts = {k: v["images"] for k, v in splits.items()}
    assert sum(counts.values()) == 48
    for name, ratio in {"train": 0.8, "val": 0.1, "test": 0.1}.items():
        assert abs(counts[name] - 48 * ratio) <= 1.5, counts
    r = cli("validate", store)
    assert r.code == 0 and "0 errors" in r.out
    r = cli(
        "export",
        store,
        "--format",
        "coco",
        "--out",
        tmp_path / "pets-coco",
        "--category-ids",
        "contiguous-from-1",
    )
    assert r.code == 0 and "exported 48 images, 102 annotations" in r.out
    r = cli("history", store)
    assert [ln.split()[2] for ln in r.out.splitlines()] == ["import", "tag", "split"]


def _anns(example: Path) -> list[dict]:
    return json.loads((example / "instances.json").read_text())["annotations"]


def _boxes(example: Path, image_id: int) -> int:
    return sum(1 for a in _anns(example) if a["image_id"] == image_id)


def _cats(example: Path, image_id: int) -> set[str]:
    names = {1: "cat", 2: "dog", 3: "bird"}
    return {names[a["category_id"]] for a in _anns(example) if a["image_id"] == image_id}


def test_errors_print_one_line_and_use_documented_exit_codes(tmp_path: Path) -> None:
    p = run_dataforge("info", tmp_path / "missing")
    assert p.returncode == 4
    assert p.stderr.splitlines()[0].startswith("error: ") and "Traceback" not in p.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    (tmp_path / "images").mkdir()
    p = run_dataforge("import", bad, "--format", "coco", "--store", tmp_path / "s")
    assert p.returncode == 3 and "malformed JSON" in p.stderr and "Traceback" not in p.stderr
    p = run_dataforge("tag", tmp_path / "s", "--add", "x", "--where", "colour == 1")
    assert p.returncode == 4  # no store was created by the failed import
    p = run_dataforge("split", tmp_path, "--ratios", "oops")
    assert p.returncode == 2 and "NAME=FRACTION" in p.stderr
    p = run_dataforge("nonsense")
    assert p.returncode == 2
    p = run_dataforge("--debug", "info", tmp_path / "missing")
    assert p.returncode != 0 and "Traceback" in p.stderr


def test_usage_error_in_where_is_exit_code_2(simple_coco: Path, tmp_path: Path, cli) -> None:
    cli("import", simple_coco, "--store", tmp_path / "s")
    r = cli("tag", tmp_path / "s", "--add", "x", "--where", "colour == 'red'")
    assert r.code == 2 and "unknown field 'colour'" in r.err and "hint:" in r.err


def test_import_skip_prints_a_summary(coco_factory, tmp_path: Path, cli) -> None:
    src = coco_factory([(1, "a.jpg", (40, 40)), (2, "b.jpg", (40, 40))], [(1, 1, "cat", [1, 1, 10, 10])])
    (src.parent / "images" / "b.jpg").unlink()
    r = cli(
        "import", src, "--store", tmp_path / "s", "--on-error", "skip", "--tag", "batch1", "--split", "train"
    )
    assert r.code == 0 and "skipped 1 items" in r.err and "image: missing file" in r.err
    report = Path(r.out.split("report: ")[1].strip())
    assert json.loads(report.read_text())["skipped"][0]["id"] == 2
    info = cli("info", tmp_path / "s", "--json").json()
    assert info["tags"] == {"batch1": 1} and info["splits"]["train"]["images"] == 1


def test_formats_lists_coco(cli) -> None:
    r = cli("formats", "--json")
    assert {f["name"]: (f["import"], f["export"]) for f in r.json()}["coco"] == ("yes", "yes")


def test_console_script_version() -> None:
    p = run_dataforge("--version")
    assert p.returncode == 0 and p.stdout.startswith("dataforge ")


def test_the_shipped_example_is_complete() -> None:
    ex = REPO / "examples" / "pets-mini"
    doc = json.loads((ex / "instances.json").read_text())
    assert all((ex / "images" / img["file_name"]).is_file() for img in doc["images"])
    preds = json.loads((ex / "predictions.json").read_text())
    assert {p["image_id"] for p in preds} <= {img["id"] for img in doc["images"]}


def test_output_into_a_closed_pipe_is_quiet(simple_coco: Path, tmp_path: Path) -> None:
    """`dataforge info STORE | head -1`: the reader goes away; no traceback, no error exit."""
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "dataforge"
    run_dataforge("import", simple_coco, "--store", tmp_path / "s")
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write will fail with EPIPE
    try:
        p = subprocess.run(
            [str(exe), "info", str(tmp_path / "s")],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
