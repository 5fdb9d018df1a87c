"""Benchmark: `dataforge evaluate` against pycocotools and faster-coco-eval, for boxes, masks
(``segm``) and keypoints.

bbox: generated problems of 500, 5,000 and 20,000 images, 80 classes, ~7 ground-truth and ~100
predicted boxes per image. segm: 640x480 images, 20 classes, ~7 ground-truth and ~30 predicted
RLE masks (ellipses) per image. keypoints: one class of 17 points (COCO's sigmas), ~5 people and
~20 predictions per image. Each engine runs in its own process on the same files; the 12 COCO numbers of all
three are compared (they must be equal to 1e-9). dataforge's time is its whole detection report:
the COCO numbers plus per-class AP, PR curves, VOC AP50, the confusion matrix, TIDE's error
breakdown, operating points and calibration (bootstrap excluded: ``--bootstrap`` times 1,000
resamples apart).

Targets: bbox (issue 5): at 5,000 images at least 5x faster than pycocotools; (issue 17) the whole
report with the error breakdown at most 0.6x faster-coco-eval's time at 5,000 and 20,000 images,
1,000 bootstrap resamples at 5,000 images in at most 30 s; segm and keypoints (issue 19): at most
1.2x faster-coco-eval's time.
Usage:

    .venv/bin/python benchmarks/evaluate.py [--kind bbox|segm|keypoints] [--sizes 500,5000,20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def make_problem(n_images: int, seed: int = 0, n_cats: int = 80) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(n_images)]
    n_gt = rng.poisson(7, n_images)
    anns, preds = [], []
    for i in range(n_images):
        k = int(n_gt[i])
        wh = rng.uniform(8, 200, (k, 2))
        xy = rng.uniform(0, 1, (k, 2)) * (np.array([640, 480]) - wh)
        cats = rng.integers(1, n_cats + 1, k)
        for j in range(k):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(cats[j]),
                    "bbox": [float(xy[j, 0]), float(xy[j, 1]), float(wh[j, 0]), float(wh[j, 1])],
                    "area": float(wh[j, 0] * wh[j, 1]),
                    "iscrowd": 0,
                }
            )
        # ~100 predictions: jittered copies of the ground truth plus background boxes
        n_bg = 100 - k
        pwh = rng.uniform(8, 200, (n_bg, 2))
        pxy = rng.uniform(0, 1, (n_bg, 2)) * (np.array([640, 480]) - pwh)
        pc = rng.integers(1, n_cats + 1, n_bg)
        for j in range(k):
            jit = rng.normal(0, 0.08, 4) * np.r_[wh[j], wh[j]]
            preds.append(
                {
                    "image_id": i + 1,
                    "category_id": int(cats[j]) if rng.random() < 0.9 else int(pc[0]),
                    "bbox": [
                        float(xy[j, 0] + jit[0]),
                        float(xy[j, 1] + jit[1]),
                        float(max(1.0, wh[j, 0] + jit[2])),
                        float(max(1.0, wh[j, 1] + jit[3])),
                    ],
                    "score": float(rng.uniform(0.3, 1.0)),
                }
            )
        for j in range(n_bg):
            preds.append(
                {
                    "image_id": i + 1,
                    "category_id": int(pc[j]),
                    "bbox": [float(pxy[j, 0]), float(pxy[j, 1]), float(pwh[j, 0]), float(pwh[j, 1])],
                    "score": float(rng.uniform(0.0, 0.7)),
                }
            )
    cats_ = [{"id": c, "name": f"class{c}"} for c in range(1, n_cats + 1)]
    return {"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats_}, preds


def make_mask_problem(n_images: int, seed: int = 0, n_cats: int = 20) -> tuple[dict, list[dict]]:
    import cv2

    from dataforge.masks import encode

    rng = np.random.default_rng(seed)
    w, h = 640, 480
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": w, "height": h} for i in range(n_images)]

    def ellipse(cx: float, cy: float, ax: float, ay: float) -> tuple[dict, float, list[float]]:
        m = np.zeros((h, w), np.uint8)
        cv2.ellipse(m, (int(cx), int(cy)), (max(2, int(ax)), max(2, int(ay))), 0, 0, 360, 1, -1)
        ys, xs = np.nonzero(m)
        box = [
            float(xs.min()),
            float(ys.min()),
            float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1),
        ]
        return encode(m.astype(bool)), float(m.sum()), box

    anns, preds = [], []
    for i in range(n_images):
        for _ in range(int(rng.poisson(7))):
            cx, cy = rng.uniform(20, w - 20), rng.uniform(20, h - 20)
            ax, ay = rng.uniform(4, 90, 2)
            cat = int(rng.integers(1, n_cats + 1))
            rle, area, box = ellipse(cx, cy, ax, ay)
            anns.append(
                {"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "segmentation": rle,
                 "area": area, "bbox": box, "iscrowd": 0}
            )  # fmt: skip
            if rng.random() < 0.9:
                rle, _, _ = ellipse(
                    cx + rng.normal(0, 4), cy + rng.normal(0, 4), ax * rng.uniform(0.8, 1.2), ay
                )
                preds.append(
                    {
                        "image_id": i + 1,
                        "category_id": cat,
                        "segmentation": rle,
                        "score": float(rng.uniform(0.3, 1)),
                    }
                )
        for _ in range(int(rng.poisson(23))):
            rle, _, _ = ellipse(rng.uniform(0, w), rng.uniform(0, h), *rng.uniform(4, 60, 2))
            preds.append(
                {"image_id": i + 1, "category_id": int(rng.integers(1, n_cats + 1)), "segmentation": rle,
                 "score": float(rng.uniform(0, 0.7))}
            )  # fmt: skip
    cats = [{"id": c, "name": f"class{c}"} for c in range(1, n_cats + 1)]
    return {"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats}, preds


def make_keypoint_problem(n_images: int, seed: int = 0) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(n_images)]
    anns, preds = [], []
    for i in range(n_images):
        for _ in range(int(rng.poisson(5))):
            bw, bh = rng.uniform(20, 200), rng.uniform(40, 300)
            x, y = rng.uniform(0, 640 - bw), rng.uniform(0, 480 - bh)
            pts = np.column_stack(
                [rng.uniform(x, x + bw, 17), rng.uniform(y, y + bh, 17), rng.integers(0, 3, 17)]
            )
            pts[pts[:, 2] == 0, :2] = 0
            anns.append(
                {"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": [x, y, bw, bh],
                 "area": bw * bh * 0.6, "iscrowd": 0, "keypoints": pts.reshape(-1).tolist(),
                 "num_keypoints": int((pts[:, 2] > 0).sum())}
            )  # fmt: skip
            if rng.random() < 0.9:
                d = np.column_stack([pts[:, :2] + rng.normal(0, rng.uniform(1, 12), (17, 2)), np.ones(17)])
                preds.append(
                    {
                        "image_id": i + 1,
                        "category_id": 1,
                        "keypoints": d.reshape(-1).tolist(),
                        "score": float(rng.uniform(0.3, 1)),
                    }
                )
        for _ in range(int(rng.poisson(15))):
            d = np.column_stack([rng.uniform(0, 640, 17), rng.uniform(0, 480, 17), np.ones(17)])
            preds.append(
                {
                    "image_id": i + 1,
                    "category_id": 1,
                    "keypoints": d.reshape(-1).tolist(),
                    "score": float(rng.uniform(0, 0.7)),
                }
            )
    names = [f"p{k}" for k in range(17)]
    cats = [{"id": 1, "name": "person", "keypoints": names, "skeleton": []}]
    return {"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats}, preds


PROBLEMS = {"bbox": make_problem, "segm": make_mask_problem, "keypoints": make_keypoint_problem}
STATS = {"bbox": 12, "segm": 12, "keypoints": 10}
REPORT_KEY = {"bbox": "detection", "segm": "segmentation", "keypoints": "keypoints"}
DEFAULT_SIZES = {"bbox": "500,5000,20000", "segm": "500,2000", "keypoints": "500,5000"}

RUNNERS = {
    "pycocotools": (
        "import json, sys, time, contextlib, io\n"
        "from pycocotools.coco import COCO\n"
        "from pycocotools.cocoeval import COCOeval\n"
        "t = time.perf_counter()\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])\n"
        "    e = COCOeval(gt, dt, sys.argv[3]); e.evaluate(); e.accumulate(); e.summarize()\n"
        "print('RESULT', time.perf_counter() - t, json.dumps(list(map(float, e.stats))))\n"
    ),
    "faster-coco-eval": (
        "import json, sys, time, contextlib, io\n"
        "from faster_coco_eval import COCO, COCOeval_faster\n"
        "t = time.perf_counter()\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])\n"
        "    e = COCOeval_faster(gt, dt, iouType=sys.argv[3], print_function=lambda *a, **k: None)\n"
        "    e.evaluate(); e.accumulate(); e.summarize()\n"
        "n = 10 if sys.argv[3] == 'keypoints' else 12\n"
        "print('RESULT', time.perf_counter() - t, json.dumps(list(map(float, e.stats[:n]))))\n"
    ),
    "dataforge": (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from dataforge.evaluation.run import evaluate\n"
        "import faster_coco_eval  # loaded before the clock, as in the faster-coco-eval runner\n"
        "import dataforge.evaluation.instances, dataforge.masks, pycocotools.mask  # likewise\n"
        "t = time.perf_counter()\n"
        "r = evaluate(Path(sys.argv[2]), gt_file=Path(sys.argv[1]), iou_types=[sys.argv[3]], bootstrap=0)\n"
        "key = {'bbox': 'detection', 'segm': 'segmentation', 'keypoints': 'keypoints'}[sys.argv[3]]\n"
        "print('RESULT', time.perf_counter() - t, json.dumps(r[key]['coco_stats']))\n"
    ),
    "dataforge-bootstrap": (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from dataforge.evaluation.bootstrap import bootstrap\n"
        "gt, preds = json.loads(Path(sys.argv[1]).read_text()), json.loads(Path(sys.argv[2]).read_text())\n"
        "t = time.perf_counter()\n"
        "r = bootstrap(gt, preds, n=1000)\n"
        "print('RESULT', time.perf_counter() - t, json.dumps([r['AP']['value'], r['AP50']['value']]))\n"
    ),
}


def run(engine: str, gt: Path, preds: Path, iou_type: str) -> tuple[float, list[float]]:
    out = subprocess.run(
        [sys.executable, "-c", RUNNERS[engine], str(gt), str(preds), iou_type],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    _, t, stats = line.split(" ", 2)
    return float(t), json.loads(stats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--kind", choices=sorted(PROBLEMS), default="bbox", help="what is evaluated (default bbox)"
    )
    p.add_argument(
        "--sizes", help="numbers of images (default: bbox 500,5000,20000; segm 500,2000; keypoints 500,5000)"
    )
    p.add_argument("--skip-pycocotools", action="store_true", help="compare with faster-coco-eval only")
    p.add_argument("--bootstrap", action="store_true", help="bbox: also time 1,000 bootstrap resamples")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "dataforge-bench-eval"))
    a = p.parse_args()
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"kind: {a.kind}")
    print(
        f"{'images':>7s} {'pycocotools':>12s} {'faster-coco-eval':>17s} {'dataforge':>10s} "
        f"{'vs pycocotools':>15s} {'vs faster':>10s}  max |diff|"
    )
    kind = a.kind
    for n in (int(s) for s in (a.sizes or DEFAULT_SIZES[kind]).split(",")):
        tag = "" if kind == "bbox" else f"-{kind}"
        gt_path, pr_path = work / f"gt{n}{tag}.json", work / f"preds{n}{tag}.json"
        if not gt_path.exists():
            gt, preds = PROBLEMS[kind](n)
            gt_path.write_text(json.dumps(gt))
            pr_path.write_text(json.dumps(preds))
        t_fast, s_fast = run("faster-coco-eval", gt_path, pr_path, kind)
        t_ref, s_ref = (
            (float("nan"), s_fast) if a.skip_pycocotools else run("pycocotools", gt_path, pr_path, kind)
        )
        s_ref = s_ref[: STATS[kind]]
        t_df, s_df = run("dataforge", gt_path, pr_path, kind)
        diff = max(
            max(abs(x - y) for x, y in zip(s_ref, s_df, strict=True)),
            max(abs(x - y) for x, y in zip(s_ref, s_fast, strict=True)),
        )
        print(
            f"{n:7d} {t_ref:11.2f}s {t_fast:16.2f}s {t_df:9.2f}s {t_ref / t_df:14.1f}x {t_df / t_fast:9.2f}x  {diff:.1e}",
            flush=True,
        )
        if kind == "bbox" and a.bootstrap:
            t_boot, s_boot = run("dataforge-bootstrap", gt_path, pr_path, kind)
            same = max(abs(s_boot[0] - s_ref[0]), abs(s_boot[1] - s_ref[1]))
            print(
                f"{'':7s} bootstrap, 1,000 resamples (matching included): {t_boot:.2f}s; AP, AP50 |diff| {same:.1e}"
            )
    if kind == "bbox":
        print(
            "\ntargets: at 5,000 images dataforge >= 5x faster than pycocotools; the whole report "
            "(error breakdown included) <= 0.6x faster-coco-eval's time at 5,000 and 20,000 images; "
            "every number equal to pycocotools (1e-9); 1,000 bootstrap resamples at 5,000 images <= 30 s"
        )
    else:
        print(
            "\ntarget: dataforge <= 1.2x faster-coco-eval's time at every size (the 'vs faster' column); "
            "every number equal to pycocotools (1e-9)"
        )


if __name__ == "__main__":
    main()
