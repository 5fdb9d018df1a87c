"""Mask (COCO segm), keypoint (COCO OKS) and semantic (mIoU) evaluation: the COCO numbers equal
pycocotools' within 1e-9 on random problems; the semantic numbers equal an independent count."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest

from dataforge.api import evaluate
from dataforge.errors import DataError
from dataforge.evaluation.instances import COCO_PERSON_SIGMAS, evaluate_keypoints, evaluate_masks
from dataforge.evaluation.semantic import evaluate_semantic
from dataforge.masks import encode


def pycocotools_stats(
    gt: dict, preds: list[dict], iou_type: str, sigmas: list[float] | None = None
) -> np.ndarray:
    return np.asarray(pycocotools_eval(gt, preds, iou_type, sigmas).stats)


def pycocotools_eval(gt: dict, preds: list[dict], iou_type: str, sigmas: list[float] | None = None):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy({"info": {}, "licenses": [], **gt})
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(preds))
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        if iou_type == "keypoints":
            ev.params.catIds = sorted(c["id"] for c in gt["categories"] if c.get("keypoints"))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def blob(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A random mask: a rectangle with holes and a ragged edge."""
    bw, bh = int(rng.integers(3, max(4, w // 2))), int(rng.integers(3, max(4, h // 2)))
    x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    m = np.zeros((h, w), bool)
    m[y : y + bh, x : x + bw] = rng.random((bh, bw)) < 0.85
    return m, (x, y, bw, bh)


def mask_problem(seed: int, *, with_boxes: bool) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    cats = [{"id": k + 1, "name": f"c{k}"} for k in range(3)]
    images, anns, preds = [], [], []
    for i in range(1, 16):
        w, h = int(rng.integers(40, 120)), int(rng.integers(40, 120))
        images.append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
        for _ in range(int(rng.integers(0, 6))):
            m, box = blob(rng, w, h)
            cid = int(rng.integers(1, 4))
            crowd = int(rng.random() < 0.1)
            rle = encode(m)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cid,
                    "bbox": [float(v) for v in box],
                    "area": float(m.sum()),
                    "iscrowd": crowd,
                    "segmentation": rle,
                }
            )
            if rng.random() < 0.8:  # a prediction: the mask, some pixels flipped, maybe shifted
                p = m ^ (rng.random(m.shape) < 0.05)
                p = np.roll(p, int(rng.integers(-2, 3)), axis=1)
                pc = cid if rng.random() < 0.85 else int(rng.integers(1, 4))
                entry = {
                    "image_id": i,
                    "category_id": pc,
                    "segmentation": encode(p),
                    "score": float(rng.random()),
                }
                if with_boxes:
                    entry["bbox"] = [float(v) for v in box]
                preds.append(entry)
        for _ in range(int(rng.integers(0, 3))):  # false positives
            m, box = blob(rng, w, h)
            preds.append(
                {
                    "image_id": i,
                    "category_id": int(rng.integers(1, 4)),
                    "segmentation": encode(m),
                    "score": float(rng.random()),
                }
            )
            if with_boxes:
                preds[-1]["bbox"] = [float(v) for v in box]
    return {"images": images, "annotations": anns, "categories": cats}, preds


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_boxes", [False, True])
def test_segm_stats_equal_pycocotools(seed: int, with_boxes: bool) -> None:
    gt, preds = mask_problem(seed, with_boxes=with_boxes)
    ours = evaluate_masks(copy.deepcopy(gt), copy.deepcopy(preds))["coco_stats"]
    ref = pycocotools_stats(gt, preds, "segm")
    assert len(ours) == 12
    assert np.allclose(ours, ref, atol=1e-9, rtol=0), (ours, ref)
    assert len({round(v, 6) for v in ours}) > 4  # a problem with spread, not all -1 or 1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_boxes", [False, True])
def test_segm_arrays_equal_pycocotools_bit_for_bit(seed: int, with_boxes: bool) -> None:
    """Masks run on the box engine's matching and accumulation, over pycocotools' mask IoUs: the
    whole precision and recall arrays are pycocotools'. With boxes in the predictions, a
    prediction's area (small, medium, large) is its box's, as pycocotools' loadRes makes it."""
    from dataforge.evaluation.overlaps import coco_eval, overlaps

    gt, preds = mask_problem(seed, with_boxes=with_boxes)
    ref = pycocotools_eval(gt, preds, "segm")
    ours = coco_eval(overlaps(gt, preds, "segm"), [c["id"] for c in gt["categories"]])
    np.testing.assert_array_equal(ours.eval["precision"], ref.eval["precision"])
    np.testing.assert_array_equal(ours.eval["recall"], ref.eval["recall"])


def keypoint_problem(seed: int, k: int) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    cats = [
        {"id": 1, "name": "person", "keypoints": [f"p{j}" for j in range(k)], "skeleton": []},
        {"id": 2, "name": "car"},  # no keypoints: not evaluated
    ]
    images, anns, preds = [], [], []
    for i in range(1, 21):
        w, h = int(rng.integers(100, 400)), int(rng.integers(100, 400))
        images.append({"id": i, "file_name": f"{i}.jpg", "width": w, "height": h})
        for _ in range(int(rng.integers(0, 5))):
            bw, bh = float(rng.uniform(20, w / 2)), float(rng.uniform(20, h / 2))
            x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            pts = np.column_stack(
                [rng.uniform(x, x + bw, k), rng.uniform(y, y + bh, k), rng.integers(0, 3, k)]
            )
            if rng.random() < 0.15:
                pts[:, 2] = 0  # no labelled point: ignored
            pts[pts[:, 2] == 0, :2] = 0
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh * float(rng.uniform(0.5, 1)),
                    "iscrowd": int(rng.random() < 0.05),
                    "keypoints": [float(v) for v in pts.reshape(-1)],
                    "num_keypoints": int((pts[:, 2] > 0).sum()),
                }
            )
            if rng.random() < 0.85:
                noise = rng.normal(0, float(rng.uniform(1, 15)), (k, 2))
                d = np.column_stack([pts[:, :2] + noise, rng.random(k)])
                preds.append(
                    {
                        "image_id": i,
                        "category_id": 1,
                        "keypoints": [float(v) for v in d.reshape(-1)],
                        "score": float(rng.random()),
                    }
                )
        if rng.random() < 0.5:  # a false positive
            d = np.column_stack([rng.uniform(0, w, k), rng.uniform(0, h, k), np.ones(k)])
            preds.append(
                {
                    "image_id": i,
                    "category_id": 1,
                    "keypoints": [float(v) for v in d.reshape(-1)],
                    "score": float(rng.random()),
                }
            )
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": i,
                "category_id": 2,
                "bbox": [1, 1, 10, 10],
                "area": 100.0,
                "iscrowd": 0,
            }
        )
    return {"images": images, "annotations": anns, "categories": cats}, preds


@pytest.mark.parametrize("seed", [0, 1])
def test_keypoint_stats_equal_pycocotools_with_coco_sigmas(seed: int) -> None:
    gt, preds = keypoint_problem(seed, 17)
    res = evaluate_keypoints(copy.deepcopy(gt), copy.deepcopy(preds))
    ref = pycocotools_stats(gt, preds, "keypoints")  # pycocotools' default sigmas are COCO's
    assert res["sigmas"] == COCO_PERSON_SIGMAS
    assert len(res["coco_stats"]) == 10
    assert np.allclose(res["coco_stats"], ref[:10], atol=1e-9, rtol=0), (res["coco_stats"], ref)
    assert 0 < res["coco_stats"][0] < 1


def test_keypoint_stats_equal_pycocotools_with_other_point_counts_and_sigmas() -> None:
    gt, preds = keypoint_problem(3, 3)
    default = evaluate_keypoints(copy.deepcopy(gt), copy.deepcopy(preds))
    assert default["sigmas"] == [1 / 3] * 3
    assert np.allclose(
        default["coco_stats"], pycocotools_stats(gt, preds, "keypoints", [1 / 3] * 3)[:10], atol=1e-9
    )
    given = evaluate_keypoints(copy.deepcopy(gt), copy.deepcopy(preds), [0.05, 0.08, 0.1])
    ref = pycocotools_stats(gt, preds, "keypoints", [0.05, 0.08, 0.1])
    assert np.allclose(given["coco_stats"], ref[:10], atol=1e-9, rtol=0)
    assert given["coco_stats"][0] < default["coco_stats"][0]  # tighter sigmas, lower AP


def test_per_keypoint_error_is_the_offset_of_matched_predictions() -> None:
    gt, _ = keypoint_problem(4, 3)
    preds = []
    for a in gt["annotations"]:
        if a["category_id"] == 1 and a["num_keypoints"] and not a["iscrowd"]:
            pts = np.asarray(a["keypoints"]).reshape(-1, 3).copy()
            pts[:, 0] += 3.0  # 3 px to the right
            pts[:, 1] -= 4.0  # 4 px up: 5 px away
            pts[:, 2] = 1
            preds.append(
                {
                    "image_id": a["image_id"],
                    "category_id": 1,
                    "keypoints": pts.reshape(-1).tolist(),
                    "score": 0.9,
                }
            )
    res = evaluate_keypoints(gt, preds, [0.5, 0.5, 0.5])
    labelled = [
        sum(
            1
            for a in gt["annotations"]
            if a["category_id"] == 1
            and not a["iscrowd"]
            and a["num_keypoints"]
            and a["keypoints"][3 * j + 2] > 0
        )
        for j in range(3)
    ]
    for j, row in enumerate(res["per_keypoint"]):
        assert row["matched"] == labelled[j] > 0
        assert row["mean_px"] == pytest.approx(5.0, abs=1e-9)
        assert row["median_px"] == pytest.approx(5.0, abs=1e-9)


def semantic_problem(seed: int) -> tuple[dict, list[dict], list[tuple[np.ndarray, np.ndarray]]]:
    """Random label maps (0..3, 255 void) for truth and prediction, as regions; and the maps."""
    rng = np.random.default_rng(seed)
    cats = [{"id": 10 + k, "name": f"s{k}"} for k in range(5)]  # s4 appears nowhere
    images, anns, preds, maps = [], [], [], []
    for i in range(1, 7):
        w, h = int(rng.integers(10, 50)), int(rng.integers(10, 50))
        images.append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
        t = rng.integers(0, 4, (h, w))
        t[rng.random((h, w)) < 0.1] = 255
        p = np.where(rng.random((h, w)) < 0.7, t, rng.integers(0, 4, (h, w)))
        p[rng.random((h, w)) < 0.05] = 255  # no prediction here
        p[t == 255] = rng.integers(0, 4)
        maps.append((t, p))
        for v in range(4):
            if (t == v).any():
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i,
                        "category_id": 10 + v,
                        "segmentation": encode(t == v),
                        "semantic": True,
                    }
                )
            if (p == v).any():
                preds.append({"image_id": i, "category_id": 10 + v, "segmentation": encode(p == v)})
    return {"images": images, "annotations": anns, "categories": cats}, preds, maps


def test_semantic_numbers_equal_an_independent_count() -> None:
    gt, preds, maps = semantic_problem(0)
    res = evaluate_semantic(gt, preds)
    t = np.concatenate([m[0].ravel() for m in maps])
    p = np.concatenate([m[1].ravel() for m in maps])
    keep = t != 255
    t, p = t[keep], p[keep]
    ious, accs, freqs = [], [], []
    for c in range(4):
        inter = np.sum((t == c) & (p == c))
        union = np.sum((t == c) | (p == c))
        ious.append(inter / union)
        accs.append(inter / np.sum(t == c))
        freqs.append(np.sum(t == c) / t.size)
    assert res["mIoU"] == pytest.approx(np.mean(ious), abs=1e-12)
    assert res["mean_accuracy"] == pytest.approx(np.mean(accs), abs=1e-12)
    assert res["pixel_accuracy"] == pytest.approx(np.mean(t == p), abs=1e-12)
    assert res["frequency_weighted_IoU"] == pytest.approx(np.dot(freqs, ious), abs=1e-12)
    assert [c["IoU"] for c in res["per_class"][:4]] == pytest.approx(ious, abs=1e-12)
    assert res["per_class"][4]["IoU"] is None  # in neither: not averaged
    assert res["counted_pixels"] == t.size  # void not counted
    matrix = np.asarray(res["confusion"]["matrix"])
    assert matrix[:, 4].sum() == 0 and matrix[:, 5].sum() == np.sum(p == 255)  # unlabelled column


def test_perfect_semantic_predictions_score_one() -> None:
    gt, _, _ = semantic_problem(1)
    preds = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"]}
        for a in gt["annotations"]
    ]
    res = evaluate_semantic(gt, preds)
    assert res["mIoU"] == res["pixel_accuracy"] == res["frequency_weighted_IoU"] == 1.0


def _write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_the_cli_evaluates_every_kind_a_file_carries(tmp_path: Path, cli) -> None:
    gt, preds = mask_problem(5, with_boxes=False)
    gt_path, pred_path = _write(tmp_path, "gt.json", gt), _write(tmp_path, "preds.json", preds)
    r = cli("evaluate", "--gt", str(gt_path), "--predictions", str(pred_path), "--out", str(tmp_path / "e"))
    assert r.code == 0, r.err
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["iou_types"] == ["bbox", "segm"]
    assert np.allclose(report["segmentation"]["coco_stats"], pycocotools_stats(gt, preds, "segm"), atol=1e-9)
    assert "COCO segm (masks)" in r.out
    only = cli(
        "evaluate", "--gt", str(gt_path), "--predictions", str(pred_path), "--iou-type", "segm", "--json"
    )
    assert only.code == 0, only.err
    assert json.loads(only.out)["iou_types"] == ["segm"] and "detection" not in json.loads(only.out)

    kgt, kpreds = keypoint_problem(6, 3)
    r = cli(
        "evaluate", "--gt", str(_write(tmp_path, "kgt.json", kgt)), "--predictions",
        str(_write(tmp_path, "kp.json", kpreds)), "--kpt-sigmas", "0.1,0.1,0.1", "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["iou_types"] == ["keypoints"]
    ref = pycocotools_stats(kgt, kpreds, "keypoints", [0.1] * 3)
    assert np.allclose(report["keypoints"]["coco_stats"], ref[:10], atol=1e-9)


def test_semantic_evaluation_of_a_store_end_to_end(tmp_path: Path, cli) -> None:
    from dataforge.synthetic import make_shapes_dataset

    make_shapes_dataset(tmp_path / "src", n_images=6, masks=True, seed=3)
    assert cli("import", str(tmp_path / "src" / "instances.json"), "--store", str(tmp_path / "s")).code == 0
    assert cli("export", str(tmp_path / "s"), "--format", "masks", "--out", str(tmp_path / "maps")).code == 0
    assert cli("import", str(tmp_path / "maps"), "--store", str(tmp_path / "scenes")).code == 0
    store = json.loads((tmp_path / "scenes" / "annotations.json").read_text())
    regions = [a for a in store["annotations"] if a.get("semantic")]
    preds = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"]}
        for a in regions
    ]
    # one class's regions predicted as nothing: its IoU is 0, the others' 1
    gone = regions[0]["category_id"]
    preds = [p for p in preds if p["category_id"] != gone]
    r = cli(
        "evaluate",
        str(tmp_path / "scenes"),
        "--predictions",
        str(_write(tmp_path, "sem.json", preds)),
        "--out",
        str(tmp_path / "e"),
    )
    assert r.code == 0, r.err
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["task"] == "semantic"
    by_id = {c["category_id"]: c for c in report["semantic"]["per_class"]}
    assert by_id[gone]["IoU"] == 0.0
    assert all(c["IoU"] == 1.0 for cid, c in by_id.items() if cid != gone and c["pixels"])
    assert "mIoU" in r.out
    page = (tmp_path / "e" / "report.html").read_text()
    assert "<h2>Semantic segmentation</h2>" in page and "IoU per class" in page
    worst = report["semantic"]["worst_images"]
    assert worst and page.count("<figure>") == min(6, len(worst))  # image | truth | prediction, drawn

    # the instance masks of the same images, predicted as they are: segm AP 1, drawn on the page
    shapes = json.loads((tmp_path / "s" / "annotations.json").read_text())
    preds = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "segmentation": a["segmentation"],
            "score": 0.9,
        }
        for a in shapes["annotations"]
    ]
    r = cli(
        "evaluate",
        str(tmp_path / "s"),
        "--predictions",
        str(_write(tmp_path, "m.json", preds)),
        "--out",
        str(tmp_path / "m"),
    )
    assert r.code == 0, r.err
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["segmentation"]["coco_stats"][0] == 1.0 and report["detection"]["coco_stats"][0] == 1.0
    assert "<h2>Masks (COCO segm)</h2>" in (tmp_path / "m" / "report.html").read_text()
    # each section's PR curves beside the page, neither written over the other
    assert (tmp_path / "m" / "pr_curves.png").is_file() and (tmp_path / "m" / "pr_curves_segm.png").is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(segmentation={"size": [5, 5], "counts": "0"}), "is not the image's"),
        (
            lambda p: p.update(segmentation={"size": p["segmentation"]["size"], "counts": "!!!"}),
            "cannot be decoded",
        ),
        (
            lambda p: p.update(segmentation={"size": p["segmentation"]["size"], "counts": [3, 4]}),
            "RLE runs cover 7 pixels",
        ),
        (lambda p: p.update(segmentation=[[1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]]), "NaN"),
    ],
)
def test_bad_mask_predictions_name_the_entry(tmp_path: Path, change, message: str) -> None:
    gt, preds = mask_problem(7, with_boxes=False)
    change(preds[2])
    with pytest.raises(DataError, match=rf"preds.json: prediction 2: .*{message}"):
        evaluate(_write(tmp_path, "preds.json", preds), gt_file=_write(tmp_path, "gt.json", gt))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda p: p.update(keypoints=p["keypoints"][:-3]),
            "6 keypoint numbers, but the category has 3 points",
        ),
        (lambda p: p["keypoints"].__setitem__(0, float("nan")), "finite numbers"),
        (lambda p: p.update(category_id=2), "category without keypoints|names no points"),
    ],
)
def test_bad_keypoint_predictions_name_the_entry(tmp_path: Path, change, message: str) -> None:
    gt, preds = keypoint_problem(8, 3)
    change(preds[1])
    with pytest.raises(DataError, match=rf"prediction 1: .*({message})"):
        evaluate(_write(tmp_path, "preds.json", preds), gt_file=_write(tmp_path, "gt.json", gt))


def test_bad_semantic_predictions_name_the_entry(tmp_path: Path) -> None:
    gt, preds, _ = semantic_problem(2)
    gt_path = _write(tmp_path, "gt.json", gt)
    unknown = copy.deepcopy(preds)
    unknown[3]["category_id"] = 99
    with pytest.raises(DataError, match=r"sem.json: prediction 3: category_id 99 is not in the ground truth"):
        evaluate(_write(tmp_path, "sem.json", unknown), gt_file=gt_path)
    twice = [*preds, copy.deepcopy(preds[0])]
    with pytest.raises(DataError, match=rf"sem.json: prediction {len(preds)}: a second region"):
        evaluate(_write(tmp_path, "sem.json", twice), gt_file=gt_path)


def test_mixed_predictions_and_masks_missing_from_the_truth_are_refused(tmp_path: Path) -> None:
    gt, preds = mask_problem(9, with_boxes=True)
    gt_path = _write(tmp_path, "gt.json", gt)
    mixed = copy.deepcopy(preds)
    del mixed[4]["segmentation"]
    with pytest.raises(DataError, match=r"have segmentation, but not prediction 4"):
        evaluate(_write(tmp_path, "p.json", mixed), gt_file=gt_path)
    assert (
        evaluate(_write(tmp_path, "p.json", mixed), gt_file=gt_path, iou_types=["bbox"]).detection is not None
    )
    bare = copy.deepcopy(gt)
    del bare["annotations"][0]["segmentation"]
    with pytest.raises(DataError, match=r"1 ground-truth objects have no mask \(first: annotation 1"):
        evaluate(_write(tmp_path, "p.json", preds), gt_file=_write(tmp_path, "bare.json", bare))
