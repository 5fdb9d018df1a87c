"""Format plugins come from entry points: a third-party package installed with pip shows up and
works; broken and duplicate plugins give clear errors naming the distribution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import jpeg_bytes, pip_install_plugin, run_dataforge

TINY_FORMAT = '''
from pathlib import Path
from dataforge.formats.base import ImportBatch


class TinyFormat:
    """One line per box: image x y w h label."""
    name = "tiny"
    description = "a third-party test format"
    can_import = True
    can_export = False

    def detect(self, path):
        return Path(path).suffix == ".tiny"

    def read(self, path, *, images=None, **options):
        images_out, anns, cats = {}, [], {}
        for line in Path(path).read_text().splitlines():
            name, x, y, w, h, label = line.split()
            img = images_out.setdefault(name, {"id": len(images_out) + 1, "file_name": name})
            cats.setdefault(label, len(cats) + 1)
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": cats[label],
                         "bbox": [float(x), float(y), float(w), float(h)]})
        return ImportBatch(format=self.name, source=str(path), images_root=Path(path).parent,
                           images=list(images_out.values()), annotations=anns,
                           categories=[{"id": i, "name": n} for n, i in cats.items()])

    def export(self, store, out, *, image_ids, **options):
        raise NotImplementedError
'''


def install(tmp_path: Path, dist: str, entry: str, module: str, code: str) -> Path:
    """pip-install a one-module distribution registering ``entry`` in dataforge.formats."""
    return pip_install_plugin(tmp_path, dist, "dataforge.formats", entry, module, code)


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(
        tmp_path_factory.mktemp("tiny"),
        "dataforge-tiny",
        'tiny = "tinyfmt:TinyFormat"',
        "tinyfmt",
        TINY_FORMAT,
    )


def test_a_third_party_format_is_listed_and_imports(tiny_site: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(tiny_site)}
    listed = json.loads(run_dataforge("formats", "--json", env=env).stdout)
    tiny = next(f for f in listed if f["name"] == "tiny")
    assert tiny["distribution"] == "dataforge-tiny" and tiny["import"] == "yes" and tiny["export"] == "-"
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes((20, 10)))
    (tmp_path / "boxes.tiny").write_text("a.jpg 1 1 4 4 cat\na.jpg 2 2 3 3 dog\n")
    p = run_dataforge("import", tmp_path / "boxes.tiny", "--store", tmp_path / "s", env=env)
    assert p.returncode == 0, p.stderr
    assert "imported 1 images, 2 annotations" in p.stdout and "[format: tiny (detected)]" in p.stdout
    p = run_dataforge("export", tmp_path / "s", "--format", "tiny", "--out", tmp_path / "o", env=env)
    assert p.returncode == 2 and "format 'tiny' cannot be exported" in p.stderr


def test_broken_and_duplicate_plugins_name_their_distribution(tmp_path: Path) -> None:
    broken = install(
        tmp_path,
        "dataforge-broken",
        'broken = "brokenfmt:Format"',
        "brokenfmt",
        "raise ImportError('needs libfoo')\n",
    )
    p = run_dataforge(
        "import", tmp_path, "--store", tmp_path / "s", "--format", "broken", env={"PYTHONPATH": str(broken)}
    )
    assert p.returncode == 2
    assert (
        "plugin 'broken' from dataforge-broken (brokenfmt:Format) failed to load: ImportError: needs libfoo"
        in p.stderr
    )
    dup = install(tmp_path, "dataforge-dup", 'coco = "dupfmt:Format"', "dupfmt", "class Format: pass\n")
    p = run_dataforge("formats", env={"PYTHONPATH": str(dup)})
    assert p.returncode == 2
    assert "plugin name 'coco' in dataforge.formats is registered twice" in p.stderr
    assert "dataforge-dup" in p.stderr and "pip uninstall" in p.stderr


def test_listing_formats_imports_no_plugin_module(tiny_site: Path) -> None:
    code = (
        "import sys; from dataforge import plugins; names = plugins.available(plugins.FORMATS); "
        "print('tinyfmt' in sys.modules, 'dataforge.formats.voc' in sys.modules, 'tiny' in names)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(tiny_site)},
    ).stdout.split()
    assert out == ["False", "False", "True"]
