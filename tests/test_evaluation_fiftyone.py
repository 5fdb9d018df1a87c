"""`dataforge evaluate --fiftyone` against a real FiftyOne + MongoDB (a throwaway database dir)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataforge.api import import_dataset
from tests.conftest import REPO, run_dataforge
from tests.test_evaluation import _noisy_predictions


def test_evaluate_into_fiftyone(tmp_path: Path) -> None:
    ex = REPO / "examples" / "pets-mini"
    import_dataset(ex / "instances.json", store=tmp_path / "pets", images=ex / "images")
    preds = _noisy_predictions(tmp_path / "pets", tmp_path / "preds.json")
    env = {"FIFTYONE_DATABASE_DIR": str(tmp_path / "fo-db"), "FIFTYONE_DO_NOT_TRACK": "true"}
    for _ in range(2):  # the second run updates the same dataset
        p = run_dataforge(
            "evaluate",
            tmp_path / "pets",
            "--predictions",
            preds,
            "--fiftyone",
            "pets-run1",
            "--out",
            tmp_path / "eval",
            env=env,
            timeout=300,
        )
        assert p.returncode == 0, p.stderr[-2000:]
    assert "FiftyOne dataset 'pets-run1': 48 samples, eval_key 'eval'" in p.stdout
    report = json.loads((tmp_path / "eval" / "report.json").read_text())["fiftyone"]
    assert abs(report["difference"]) < 0.02  # same algorithm apart from area ranges and crowd details
    # read it back with FiftyOne itself, in a fresh process
    code = (
        "import json, fiftyone as fo\n"
        "ds = fo.load_dataset('pets-run1')\n"
        "res = ds.load_evaluation_results('eval')\n"
        "s = ds.first()\n"
        "g = s.ground_truth.detections[0]\n"
        "print(json.dumps({'n': len(ds), 'persistent': ds.persistent, 'evals': ds.list_evaluations(),\n"
        "  'tp': ds.sum('eval_tp'), 'fp': ds.sum('eval_fp'), 'fn': ds.sum('eval_fn'), 'mAP': res.mAP(),\n"
        "  'box': g.bounding_box, 'w': s.metadata.width, 'h': s.metadata.height, 'id': s.dataforge_id,\n"
        "  'path': s.filepath, 'has_eval_field': g.has_field('eval')}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, **env},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["n"] == 48 and info["persistent"] and info["evals"] == ["eval"] and info["has_eval_field"]
    assert info["mAP"] == report["fiftyone_mAP"]
    assert info["tp"] > 0 and info["fp"] > 0 and info["fn"] > 0
    store = json.loads((tmp_path / "pets" / "annotations.json").read_text())
    a = next(x for x in store["annotations"] if x["image_id"] == info["id"])
    x, y, w, h = a["bbox"]
    assert info["box"] == pytest.approx(
        [x / info["w"], y / info["h"], w / info["w"], h / info["h"]], abs=1e-12
    )
    assert Path(info["path"]).is_file()
