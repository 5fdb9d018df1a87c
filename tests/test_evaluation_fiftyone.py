"""`dataforge evaluate --fiftyone` and `dataforge app` against a real FiftyOne + MongoDB (a throwaway
database dir) and a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dataforge.api import import_dataset
from tests.conftest import REPO, run_dataforge
from tests.test_evaluation import _noisy_predictions
from tests.test_evaluation_html import CHROMIUM, chromium

NAME = "pets-run1"


@pytest.fixture(scope="module")
def fo_dataset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("fo")
    ex = REPO / "examples" / "pets-mini"
    import_dataset(ex / "instances.json", store=tmp / "pets", images=ex / "images")
    preds = _noisy_predictions(tmp / "pets", tmp / "preds.json")
    env = {"FIFTYONE_DATABASE_DIR": str(tmp / "fo-db"), "FIFTYONE_DO_NOT_TRACK": "true"}
    for _ in range(2):  # the second run updates the same dataset
        p = run_dataforge(
            "evaluate",
            tmp / "pets",
            "--predictions",
            preds,
            "--fiftyone",
            NAME,
            "--out",
            tmp / "eval",
            env=env,
            timeout=300,
        )
        assert p.returncode == 0, p.stderr[-2000:]
    return {"tmp": tmp, "env": env, "stdout": p.stdout}


@pytest.mark.slow
def test_evaluate_into_fiftyone(fo_dataset: dict) -> None:
    tmp, env = fo_dataset["tmp"], fo_dataset["env"]
    assert f"FiftyOne dataset '{NAME}': 48 samples, eval_key 'eval'" in fo_dataset["stdout"]
    report = json.loads((tmp / "eval" / "report.json").read_text())["fiftyone"]
    assert abs(report["difference"]) < 0.02  # same algorithm apart from area ranges and crowd details
    code = (  # read it back with FiftyOne itself, in a fresh process
        "import json, fiftyone as fo\n"
        f"ds = fo.load_dataset({NAME!r})\n"
        "res = ds.load_evaluation_results('eval')\n"
        "s = ds.first()\n"
        "g = s.ground_truth.detections[0]\n"
        "print(json.dumps({'n': len(ds), 'persistent': ds.persistent, 'evals': ds.list_evaluations(),\n"
        "  'tp': ds.sum('eval_tp'), 'fp': ds.sum('eval_fp'), 'fn': ds.sum('eval_fn'), 'mAP': res.mAP(),\n"
        "  'box': g.bounding_box, 'w': s.metadata.width, 'h': s.metadata.height, 'id': s.dataforge_id,\n"
        "  'path': s.filepath, 'has_eval_field': g.has_field('eval')}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["n"] == 48 and info["persistent"] and info["evals"] == ["eval"] and info["has_eval_field"]
    assert info["mAP"] == report["fiftyone_mAP"]
    assert info["tp"] > 0 and info["fp"] > 0 and info["fn"] > 0
    store = json.loads((tmp / "pets" / "annotations.json").read_text())
    a = next(x for x in store["annotations"] if x["image_id"] == info["id"])
    x, y, w, h = a["bbox"]
    assert info["box"] == pytest.approx(
        [x / info["w"], y / info["h"], w / info["w"], h / info["h"]], abs=1e-12
    )
    assert Path(info["path"]).is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (./setup.sh installs it as root)")
@pytest.mark.slow
def test_app_serves_the_dataset_to_a_real_browser(fo_dataset: dict) -> None:
    tmp, env = fo_dataset["tmp"], fo_dataset["env"]
    port = _free_port()
    exe = str(Path(sys.executable).parent / "dataforge")
    proc = subprocess.Popen(
        [exe, "app", NAME, "--address", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/datasets/{NAME}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the App did not answer within 180 s"
            time.sleep(0.5)
        dom = chromium("--virtual-time-budget=25000", "--dump-dom", url, profile=tmp / "c1").stdout
        m = re.search(r'data-cy="entry-count-part"[^>]*>(\d+)</span>\s*samples', dom)
        assert m and m.group(1) == "48", dom[-1000:]
        assert NAME in dom and "ground_truth" in dom and "predictions" in dom
        shot = tmp / "app.png"
        chromium(
            "--virtual-time-budget=25000",
            "--window-size=1400,900",
            f"--screenshot={shot}",
            url,
            profile=tmp / "c2",
        )
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
        shutil.copy(shot, tmp / "app-screenshot.png")
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        code = proc.wait(timeout=120)
    assert code == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
