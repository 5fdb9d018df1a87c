"""`dataforge evaluate --fiftyone` and `dataforge app` against a real FiftyOne + MongoDB (a throwaway
database dir) and a real headless Chromium."""

from __future__ import annotations

import contextlib
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
from collections.abc import Iterator
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
        "  'path': s.filepath, 'has_eval_field': g.has_field('eval'),\n"
        "  'tide_pred': ds.count_values('predictions.detections.tide'),\n"
        "  'tide_gt': ds.count_values('ground_truth.detections.tide')}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["n"] == 48 and info["persistent"] and info["evals"] == ["eval"] and info["has_eval_field"]
    assert info["mAP"] == report["fiftyone_mAP"]
    assert info["tp"] > 0 and info["fp"] > 0 and info["fn"] > 0
    # TIDE's error type on every prediction and ground truth, to filter by in the App
    counts = json.loads((tmp / "eval" / "report.json").read_text())["detection"]["errors"]["counts"]
    for kind in ("classification", "localization", "both", "duplicate", "background"):
        assert info["tide_pred"].get(kind, 0) == counts[kind], kind
    assert info["tide_gt"].get("missed", 0) == counts["missed"] and info["tide_gt"]["tp"] > 0
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


@contextlib.contextmanager
def running_app(name: str, env: dict) -> Iterator[tuple[str, int]]:
    """`dataforge app NAME` on a free port until the block ends (then Ctrl-C): its dataset URL and
    port, once the App answers."""
    port = _free_port()
    exe = str(Path(sys.executable).parent / "dataforge")
    proc = subprocess.Popen(
        [exe, "app", name, "--address", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
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
        yield f"http://127.0.0.1:{port}/datasets/{name}", port
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        code = proc.wait(timeout=120)
    assert code == 0


def app_page(url: str, profile: Path, samples: int) -> str:
    """The App's page in headless Chromium, once it shows ``samples`` samples: its DOM."""
    dom = chromium("--virtual-time-budget=25000", "--dump-dom", url, profile=profile).stdout
    m = re.search(r'data-cy="entry-count-part"[^>]*>(\d+)</span>\s*samples', dom)
    assert m and m.group(1) == str(samples), dom[-1000:]
    return dom


def screenshot(url: str, shot: Path, profile: Path) -> None:
    chromium(
        "--virtual-time-budget=25000", "--window-size=1400,900", f"--screenshot={shot}", url, profile=profile
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (./setup.sh installs it as root)")
@pytest.mark.slow
def test_app_serves_the_dataset_to_a_real_browser(fo_dataset: dict) -> None:
    tmp, env = fo_dataset["tmp"], fo_dataset["env"]
    with running_app(NAME, env) as (url, port):
        dom = app_page(url, tmp / "c1", 48)
        assert NAME in dom and "ground_truth" in dom and "predictions" in dom
        screenshot(url, tmp / "app.png", tmp / "c2")
        shutil.copy(tmp / "app.png", tmp / "app-screenshot.png")
    with pytest.raises(OSError):  # the App went away with Ctrl-C
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


MAKE_ALL = """
import json, sys
from pathlib import Path
import numpy as np
from dataforge.api import evaluate, export_dataset, import_dataset
from dataforge.masks import decode, encode
from dataforge.store import Store
from dataforge.synthetic import make_faces_dataset, make_shapes_dataset

root = Path(sys.argv[1])
out = {}
make_shapes_dataset(root / "src", n_images=12, size_wh=(96, 72), max_objects=3, seed=2, masks=True, keypoints=True)
import_dataset(source=root / "src" / "instances.json", store=root / "shapes")
preds = []
for i, a in enumerate(Store.open(root / "shapes").annotations):
    if i % 4 == 3:
        continue  # a miss
    m = decode(a["segmentation"], 72, 96)
    if i % 3 == 0:
        m = np.roll(m, 2, axis=1)  # a loose mask
    p = {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
         "segmentation": encode(m), "score": 0.5 + (i % 5) / 10}
    if a.get("keypoints"):
        p["keypoints"] = [v + 1.5 if k % 3 == 0 else v for k, v in enumerate(a["keypoints"])]
    preds.append(p)
(root / "inst.json").write_text(json.dumps(preds))
out["shapes"] = evaluate(root / "inst.json", store=root / "shapes", fiftyone="shapes-fo",
                         iou_types=["bbox", "segm"]).report["fiftyone"]
export_dataset(root / "shapes", format="masks", out=root / "maps")
import_dataset(source=root / "maps", store=root / "sem")
sem = []
for a in Store.open(root / "sem").annotations:
    m = decode(a["segmentation"], 72, 96)
    sem.append({"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": encode(np.roll(m, 1, axis=0))})
(root / "sem.json").write_text(json.dumps(sem))
out["sem"] = evaluate(root / "sem.json", store=root / "sem", fiftyone="sem-fo").report
make_faces_dataset(root / "fsrc", n_images=6)
import_dataset(source=root / "fsrc" / "instances.json", store=root / "faces")
reg = [{"image_id": a["image_id"], "category_id": 1,
        "keypoints": [v + 3 if k % 3 == 0 else v for k, v in enumerate(a["keypoints"])]}
       for a in Store.open(root / "faces").annotations]
(root / "reg.json").write_text(json.dumps(reg))
out["faces"] = evaluate(root / "reg.json", store=root / "faces", fiftyone="faces-fo").report["fiftyone"]
from PIL import Image
for k in range(8):  # class folders: 4 red, 4 blue images; the "model" calls one red image blue
    name = "red" if k < 4 else "blue"
    (root / "cls" / name).mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 0, 0) if k < 4 else (0, 0, 200)).save(root / "cls" / name / f"{k}.png")
import_dataset(source=root / "cls", store=root / "colours", format="folders")
s = Store.open(root / "colours")
names = {c.id: c.name for c in s.categories}
cls = [{"image_id": img["id"], "scores": {names[img["labels"][0]]: 0.9} if i else {"blue" if names[img["labels"][0]] == "red" else "red": 0.6}}
       for i, img in enumerate(s.images)]
(root / "cls.json").write_text(json.dumps(cls))
out["cls"] = evaluate(root / "cls.json", store=root / "colours", fiftyone="cls-fo").report["fiftyone"]
print("RESULT " + json.dumps(out))
"""

READ_BACK = """
import json, math, fiftyone as fo
d = fo.load_dataset("shapes-fo")
dets = [x for s in d for x in s.ground_truth.detections]
kps = [k for s in d for k in s.gt_keypoints.keypoints]
sem = fo.load_dataset("sem-fo")
seg = sem.first().ground_truth.mask
faces = fo.load_dataset("faces-fo")
cls = fo.load_dataset("cls-fo")
print("RESULT " + json.dumps({
    "masks": all(x.mask is not None and x.mask.ndim == 2 for x in dets),
    "mask_matches_box": all(abs(x.mask.shape[1] - round(x.bounding_box[2] * 96)) <= 1 for x in dets),
    "evals": sorted(d.list_evaluations()),
    "skeleton": d.skeletons["gt_keypoints"].labels,
    "points": [len(k.points) for k in kps][:3],
    "mask_targets": {str(k): v for k, v in sem.mask_targets["ground_truth"].items()},
    "seg_values": sorted(int(v) for v in set(seg.ravel().tolist())),
    "sem_evals": sem.list_evaluations(),
    "errors": sorted(round(e, 3) for e in faces.values("error_px")),
    "cls": sorted(zip(cls.values("ground_truth.label"), cls.values("predictions.label"), cls.values("eval"))),
}))
"""


@pytest.fixture(scope="module")
def fo_tasks(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Masks and keypoints, semantic class maps and point regression, each into its own FiftyOne
    dataset (one process: FiftyOne and its MongoDB start once)."""
    tmp = tmp_path_factory.mktemp("fo-tasks")
    env = {**os.environ, "FIFTYONE_DATABASE_DIR": str(tmp / "fo-db"), "FIFTYONE_DO_NOT_TRACK": "true"}
    p = subprocess.run(
        [sys.executable, "-c", MAKE_ALL, str(tmp)], capture_output=True, text=True, timeout=300, env=env
    )
    assert p.returncode == 0, p.stderr[-3000:]
    made = json.loads(next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    q = subprocess.run(
        [sys.executable, "-c", READ_BACK], capture_output=True, text=True, timeout=300, env=env
    )
    assert q.returncode == 0, q.stderr[-3000:]
    back = json.loads(next(ln for ln in q.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    return {"tmp": tmp, "env": env, "made": made, "back": back}


@pytest.mark.slow
def test_masks_keypoints_class_maps_and_points_in_fiftyone(fo_tasks: dict) -> None:
    """Each label type in FiftyOne's own type, and FiftyOne's evaluation of it beside ours: box and
    mask mAP (evaluate_detections, use_masks), pixel accuracy (evaluate_segmentations)."""
    made, back = fo_tasks["made"], fo_tasks["back"]
    box, mask = made["shapes"]["comparisons"]
    assert box["metric"].startswith("box mAP") and mask["metric"].startswith("mask mAP")
    for pair in (box, mask):  # the same matching apart from area ranges and per-class max_preds
        assert 0.3 < pair["dataforge"] < 0.95 and abs(pair["difference"]) < 0.05, pair
    assert back["masks"] and back["mask_matches_box"]
    assert back["evals"] == ["eval", "eval_masks"]
    assert (
        back["skeleton"] == ["apex", "left_base", "right_base"]
        and back["points"] == [3, 3, 3][: len(back["points"])]
    )
    (acc,) = made["sem"]["fiftyone"]["comparisons"]
    assert acc["metric"] == "pixel accuracy" and acc["difference"] == pytest.approx(0, abs=1e-9)
    assert 0.5 < acc["dataforge"] < 1
    assert back["mask_targets"] == {"1": "background", "2": "cat", "3": "dog", "4": "bird"}
    assert len(back["seg_values"]) > 1 and set(back["seg_values"]) <= {0, 1, 2, 3, 4}
    assert back["sem_evals"] == ["eval"]
    assert back["errors"] == [3.0] * 6  # every point 3 px to the right
    assert "no point-regression evaluation" in made["faces"]["note"]
    (acc,) = made["cls"]["comparisons"]  # classification: FiftyOne's accuracy equals ours
    assert acc["metric"] == "accuracy" and acc["dataforge"] == 7 / 8 and acc["fiftyone"] == 7 / 8
    assert sum(1 for truth, pred, ok in back["cls"] if truth != pred and ok is False) == 1


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (./setup.sh installs it as root)")
@pytest.mark.slow
def test_app_shows_masks_and_keypoints(fo_tasks: dict) -> None:
    tmp, env = fo_tasks["tmp"], fo_tasks["env"]
    with running_app("shapes-fo", env) as (url, _):
        dom = app_page(url, tmp / "c1", 12)
        for field in ("ground_truth", "predictions", "gt_keypoints", "pred_keypoints"):
            assert field in dom, field
        screenshot(url, tmp / "app-shapes.png", tmp / "c2")
