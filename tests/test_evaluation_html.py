"""report.html opens offline in a real headless Chromium, and every plot renders."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dataforge.api import import_dataset
from dataforge.evaluation.run import evaluate
from tests.conftest import REPO
from tests.test_evaluation import _noisy_predictions

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=8000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (./setup.sh installs it as root; apt-get install chromium)",
)
def test_report_html_renders_every_plot_offline(tmp_path: Path) -> None:
    ex = REPO / "examples" / "pets-mini"
    import_dataset(ex / "instances.json", store=tmp_path / "pets", images=ex / "images")
    preds = _noisy_predictions(tmp_path / "pets", tmp_path / "preds.json")
    rep = evaluate(preds, store=tmp_path / "pets", out=tmp_path / "eval")
    page = Path(rep["html_path"])
    text = page.read_text()
    assert not re.search(r"(src|href)=['\"]https?://", text)  # nothing fetched from the network
    for png in ("ap_per_class.png", "pr_curves.png", "confusion.png", "iou_histogram.png"):
        assert (tmp_path / "eval" / png).stat().st_size > 5000
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "p1").stdout
    m = re.search(r"(\d+)/(\d+) images rendered", dom)
    assert m, dom[-500:]
    rendered, total = int(m.group(1)), int(m.group(2))
    assert total >= 5 and rendered == total  # 4 plots + thumbnails of the worst images
    assert "AP_small" in dom and "Worst images" in dom
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri(), profile=tmp_path / "p2")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20000
