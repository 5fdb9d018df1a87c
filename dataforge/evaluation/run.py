"""``dataforge evaluate``: ground truth from a store or a COCO file, predictions, report.json."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataforge import __version__
from dataforge.errors import DataError, UsageError
from dataforge.evaluation.classification import evaluate_classification
from dataforge.evaluation.detection import evaluate_detections
from dataforge.evaluation.predictions import (
    check_detections,
    check_semantic,
    is_classification,
    is_semantic,
    load_predictions,
)
from dataforge.evaluation.regression import is_regression
from dataforge.jsonio import load_json, write_json
from dataforge.runtime import paused_gc

if TYPE_CHECKING:
    from dataforge.evaluation.overlaps import Overlaps


def ground_truth_from_store(
    store_path: Path, split: str | None, where: str | None
) -> tuple[dict[str, Any], set[int]]:
    """The selected images as a COCO dict, and every image id of the store."""
    from dataforge.store import Store

    store = Store.open(store_path)
    images = store.select(where, split=split)
    if not images:
        raise UsageError(
            f"{store_path}: no images match (split {split!r}, where {where!r}); nothing to evaluate"
        )
    ids = {img["id"] for img in images}
    gt = {
        "images": images,
        "annotations": [a for a in store.annotations if a["image_id"] in ids],
        "categories": store.data["categories"],
    }
    return gt, {img["id"] for img in store.images}


def ground_truth_from_file(path: Path) -> dict[str, Any]:
    gt = load_json(path, what="COCO ground-truth file")
    if not isinstance(gt, dict) or not all(isinstance(gt.get(k), list) for k in ("images", "categories")):
        raise DataError(
            f"{path}: not a COCO annotation file (needs 'images' and 'categories' lists)", source=str(path)
        )
    gt.setdefault("annotations", [])
    _check_annotations(gt, path)
    for a in gt["annotations"]:
        if "area" not in a and isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4:
            a["area"] = a["bbox"][2] * a["bbox"][3]
    return gt


def _check_annotations(gt: dict[str, Any], path: Path) -> None:
    """Every annotation of a ground-truth file is an object of a listed image and category with a
    box of 4 finite numbers (w, h >= 0); one without a box but with a mask (some exporters write
    masks only) gets its mask's box, as COCO defines it. Anything else is a one-line error naming
    the annotation."""
    import numpy as np

    from dataforge.ingest.checks import is_number
    from dataforge.masks import has_mask, rle_bbox, segmentation_problem, to_rle

    sizes = {
        img.get("id"): (img.get("width"), img.get("height")) for img in gt["images"] if isinstance(img, dict)
    }
    cats = {c.get("id") for c in gt["categories"] if isinstance(c, dict)}
    anns = gt["annotations"]
    try:  # the usual case in one vectorized pass; otherwise each is looked at, to name the first
        boxes = [a["bbox"] for a in anns if not a.get("semantic")]
        if (
            {a["image_id"] for a in anns} <= sizes.keys()
            and {a["category_id"] for a in anns} <= cats
            and all(type(b) is list and len(b) == 4 for b in boxes)
            and not ({type(v) for b in boxes for v in b} - {int, float})
        ):
            arr = np.array(boxes, dtype=np.float64).reshape(-1, 4)
            if np.isfinite(arr).all() and (arr[:, 2:] >= 0).all():
                return
    except (KeyError, TypeError, AttributeError):
        pass
    for i, a in enumerate(anns):
        where = f"{path}: annotation {i}" + (f" (id {a.get('id')!r})" if isinstance(a, dict) else "")
        if not isinstance(a, dict):
            raise DataError(f"{where} is not an object", source=str(path))
        if a.get("semantic"):
            continue  # a semantic region: the semantic evaluation's, with a mask and no box
        if a.get("image_id") not in sizes:
            raise DataError(f"{where}: image_id {a.get('image_id')!r} is not in 'images'", source=str(path))
        if a.get("category_id") not in cats:
            raise DataError(
                f"{where}: category_id {a.get('category_id')!r} is not in 'categories'", source=str(path)
            )
        box = a.get("bbox")
        if box is None and has_mask(a.get("segmentation")):
            w, h = sizes[a["image_id"]]
            if not (type(w) is int and type(h) is int and w > 0 and h > 0):
                raise DataError(f"{where}: no bbox, and its image has no width and height", source=str(path))
            problem = segmentation_problem(a["segmentation"], w, h)
            if problem:
                raise DataError(f"{where}: no bbox, and its segmentation: {problem}", source=str(path))
            a["bbox"] = rle_bbox(to_rle(a["segmentation"], h, w))
            continue
        if not (
            isinstance(box, list)
            and len(box) == 4
            and all(is_number(v) for v in box)
            and box[2] >= 0
            and box[3] >= 0
        ):
            raise DataError(
                f"{where}: bbox must be [x, y, width, height] finite numbers with width, height >= 0, "
                f"found {box!r}",
                source=str(path),
            )


def evaluate(
    predictions: Path,
    *,
    store: Path | None = None,
    gt_file: Path | None = None,
    split: str | None = None,
    where: str | None = None,
    out: Path | None = None,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    fiftyone: str | None = None,
    iou_types: list[str] | None = None,
    kpt_sigmas: list[float] | None = None,
    bootstrap: int = 1000,
    bootstrap_seed: int = 0,
    compare: Path | None = None,
    explain: bool = False,
) -> dict[str, Any]:
    """Evaluate ``predictions`` against a store (or a COCO file); write ``out/report.json`` if ``out``.

    ``iou_types``: which of ``bbox``, ``segm``, ``keypoints`` to evaluate instance predictions by
    (default: each that every prediction carries); ``kpt_sigmas``: the OKS sigma of each point."""
    with paused_gc():  # millions of small dicts: the cyclic GC would walk them again and again
        return _evaluate(
            predictions,
            store=store,
            gt_file=gt_file,
            split=split,
            where=where,
            out=out,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            fiftyone=fiftyone,
            iou_types=iou_types,
            kpt_sigmas=kpt_sigmas,
            bootstrap=bootstrap,
            bootstrap_seed=bootstrap_seed,
            compare=compare,
            explain=explain,
        )


IOU_TYPES = ("bbox", "segm", "keypoints")


def _iou_types(
    preds: list[dict[str, Any]], wanted: list[str] | None, source: str, point_cats: set[int]
) -> list[str]:
    """What instance predictions can be evaluated by: every type all of them carry (a box is
    carried by a mask too; keypoints by all predictions of the categories with points, ``point_cats``),
    or those asked for, each of which all must carry."""
    pointed = [p for p in preds if p["category_id"] in point_cats]
    carried = {
        "bbox": all("bbox" in p or "segmentation" in p for p in preds),
        "segm": all("segmentation" in p for p in preds),
        "keypoints": bool(pointed) and all("keypoints" in p for p in pointed),
    }
    if wanted is None and not preds:
        return ["bbox"]
    if wanted is None:
        for kind in ("segmentation", "keypoints"):
            among = pointed if kind == "keypoints" else preds
            some = [i for i, p in enumerate(among) if kind in p]
            if some and len(some) < len(among):
                lacking = next(
                    i
                    for i, p in enumerate(preds)
                    if kind not in p and (kind != "keypoints" or p["category_id"] in point_cats)
                )
                raise DataError(
                    f"{source}: {len(some)} of {len(preds)} predictions have {kind}, but not "
                    f"prediction {lacking}; give every prediction {kind}, or choose with --iou-type",
                    source=source,
                )
        chosen = [t for t in IOU_TYPES if carried[t]]
        return chosen or ["bbox"]
    for t in wanted:
        if t not in IOU_TYPES:
            raise UsageError(f"--iou-type {t!r}: choose from {', '.join(IOU_TYPES)}")
        if preds and not carried[t]:
            field = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}[t]
            if t == "keypoints" and not pointed:
                raise DataError(
                    f"{source}: --iou-type keypoints, but no prediction is of a category with keypoints",
                    source=source,
                )
            lacking = next(
                i
                for i, p in enumerate(preds)
                if field not in p
                and not (t == "bbox" and "segmentation" in p)
                and (t != "keypoints" or p["category_id"] in point_cats)
            )
            raise DataError(
                f"{source}: --iou-type {t}, but prediction {lacking} has no {field}", source=source
            )
    return list(dict.fromkeys(wanted))


def _evaluate(
    predictions: Path,
    *,
    store: Path | None,
    gt_file: Path | None,
    split: str | None,
    where: str | None,
    out: Path | None,
    iou_threshold: float,
    score_threshold: float,
    fiftyone: str | None,
    iou_types: list[str] | None,
    kpt_sigmas: list[float] | None,
    bootstrap: int = 1000,
    bootstrap_seed: int = 0,
    compare: Path | None = None,
    explain: bool = False,
) -> dict[str, Any]:
    if (store is None) == (gt_file is None):
        raise UsageError("give the ground truth as a store or as --gt FILE (one of the two)")
    if not 0 < iou_threshold <= 1:
        raise UsageError(f"--iou must be in (0, 1], not {iou_threshold}")
    if bootstrap < 0 or 0 < bootstrap < 20:
        raise UsageError(f"--bootstrap {bootstrap}: 0 (none) or at least 20 resamples (default 1000)")
    if store is not None:
        gt, store_ids = ground_truth_from_store(store, split, where)
    else:
        assert gt_file is not None
        gt = ground_truth_from_file(gt_file)
        store_ids = None
    preds = load_predictions(predictions)
    report: dict[str, Any] = {
        "dataforge_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "ground_truth": {
            "store": str(store) if store else None,
            "file": str(gt_file) if gt_file else None,
            "split": split,
            "where": where,
            "images": len(gt["images"]),
            "annotations": len(gt["annotations"]),
        },
        "predictions": {"file": str(predictions), "count": len(preds)},
    }
    checked: list[dict[str, Any]] = []
    tide_table = None
    if is_classification(preds):
        truth = {img["id"]: img["labels"][0] for img in gt["images"] if img.get("labels")}
        if store_ids is not None:  # a split of a store: predictions for its other images are set aside
            selected = {img["id"] for img in gt["images"]}
            outside = store_ids - selected
            kept = [p for p in preds if not (isinstance(p, dict) and p.get("image_id") in outside)]
            report["predictions"]["outside_selection"] = len(preds) - len(kept)
            preds = kept
        if not truth:
            raise DataError(
                f"{predictions}: classification predictions, but no image in the ground truth has a "
                "label (image-level labels come from class folders, CSV, CVAT tags, ...)"
            )
        names = {c["id"]: c["name"] for c in gt["categories"]}
        report["task"] = "classification"
        report["classification"] = evaluate_classification(truth, preds, names, predictions.name)
        checked = preds  # what the FiftyOne export shows
    elif is_regression(preds):
        from dataforge.evaluation.regression import check_regression, evaluate_regression

        checked = check_regression(preds, gt, predictions.name, store_ids)
        report["predictions"]["outside_selection"] = len(preds) - len(checked)
        report["task"] = "regression"
        report["regression"] = evaluate_regression(gt, checked)
    elif is_semantic(preds):
        from dataforge.evaluation.semantic import evaluate_semantic

        checked = check_semantic(preds, gt, predictions.name, store_ids)
        report["predictions"]["outside_selection"] = len(preds) - len(checked)
        report["task"] = "semantic"
        report["semantic"] = evaluate_semantic(gt, checked)
    else:
        from dataforge.evaluation.errors import breakdown
        from dataforge.evaluation.instances import evaluate_keypoints, evaluate_masks, instance_ground_truth
        from dataforge.evaluation.overlaps import overlaps
        from dataforge.masks import rle_bbox

        checked = check_detections(preds, gt, predictions.name, store_ids)
        report["predictions"]["outside_selection"] = len(preds) - len(checked)
        report["task"] = "detection"
        point_cats = {c["id"] for c in gt["categories"] if c.get("keypoints")}
        kinds = _iou_types(checked, iou_types, predictions.name, point_cats)
        report["iou_types"] = kinds
        objects = instance_ground_truth(gt)
        if "bbox" in kinds:
            boxed = [p if "bbox" in p else {**p, "bbox": rle_bbox(p["segmentation"])} for p in checked]
            table = overlaps(objects, boxed)  # one table of overlaps for every number below
            errors, tide_table = breakdown(objects, boxed, table=table)
            report["detection"] = evaluate_detections(
                objects, boxed, iou_threshold=iou_threshold, score_threshold=score_threshold, table=table
            ).to_dict()
            report["detection"]["errors"] = errors
            _at_thresholds(report["detection"], objects, boxed, iou_threshold, table)
            if bootstrap:
                from dataforge.evaluation.bootstrap import bootstrap as resample

                report["detection"]["bootstrap"] = resample(
                    objects, boxed, n=bootstrap, seed=bootstrap_seed, table=table
                )
            if explain:
                from dataforge.evaluation.explain import explain as explained

                report["explain"] = explained(report, objects, boxed, table)
            if compare is not None:
                report["comparison"] = _compare(
                    objects, boxed, compare, gt, store_ids, max(bootstrap, 200), bootstrap_seed, table
                )
        if "segm" in kinds:
            masks = overlaps(objects, checked, "segm") if _all_masked(objects) else None
            report["segmentation"] = evaluate_masks(objects, checked, table=masks)
            report["segmentation"]["errors"] = breakdown(objects, checked, iou_type="segm", table=masks)[0]
        if "keypoints" in kinds:
            # the predictions of categories with points (a keypoint detector's other boxes have none)
            pointed = [p for p in checked if p["category_id"] in point_cats]
            report["keypoints"] = evaluate_keypoints(objects, pointed, kpt_sigmas)
        if "bbox" in kinds:
            checked = boxed  # what the FiftyOne export and the HTML report draw
    if explain and "explain" not in report:
        raise UsageError(
            f"--explain explains detection numbers (boxes); these predictions are {report['task']}"
        )
    if compare is not None and "comparison" not in report:
        raise UsageError(
            f"--compare pairs two sets of detections (boxes); these predictions are {report['task']}",
            hint="compare detection results, evaluated by their boxes",
        )
    if fiftyone is not None:
        if store is None:
            raise UsageError("--fiftyone needs a store (its images), not --gt FILE")
        if report["task"] == "detection" and "detection" not in report:
            raise UsageError("--fiftyone shows detections by their boxes: evaluate with --iou-type bbox too")
        from dataforge.evaluation.fiftyone_export import to_fiftyone

        fo_gt, fo_preds = gt, checked
        if report["task"] == "detection" and tide_table is not None:
            fo_gt, fo_preds = _with_tide(objects, checked, tide_table)
        fo_result = to_fiftyone(fiftyone, report["task"], fo_gt, fo_preds, store / "images", report)
        if report["task"] == "detection":
            fo_result["dataforge_AP"] = report["detection"]["coco_stats"][0]
            fo_result["difference"] = fo_result["fiftyone_mAP"] - fo_result["dataforge_AP"]
        report["fiftyone"] = fo_result
    if out is not None:
        from dataforge.evaluation.html import write_html

        out.mkdir(parents=True, exist_ok=True)
        compared_b = report.get("comparison", {}).pop("_b", None)
        if "deployment_thresholds" in report.get("detection", {}):
            write_json(out / "thresholds.json", report["detection"]["deployment_thresholds"])
            report["thresholds_path"] = str(out / "thresholds.json")
        write_json(out / "report.json", report)
        images_dir = store / "images" if store is not None else None
        checked_preds = checked if report["task"] in ("detection", "semantic", "regression") else None
        html_path = write_html(
            report, out, gt=gt, predictions=checked_preds, images_dir=images_dir, compared=compared_b
        )
        report["report_path"] = str(out / "report.json")
        report["html_path"] = str(html_path)
    report.get("comparison", {}).pop("_b", None)
    return report


def _compare(
    gt: dict[str, Any],
    a: list[dict[str, Any]],
    path: Path,
    full_gt: dict[str, Any],
    store_ids: set[int] | None,
    n: int,
    seed: int,
    table: Overlaps,
) -> dict[str, Any]:
    """Predictions B (``path``) against A (``a``, checked; ``table``: its overlaps) on the same
    image resamples."""
    from dataforge.evaluation.bootstrap import compare, image_changes
    from dataforge.masks import rle_bbox

    other = load_predictions(path)
    if is_classification(other) or is_semantic(other) or is_regression(other):
        raise UsageError(f"--compare {path.name}: not detection results (boxes)")
    b = check_detections(other, full_gt, path.name, store_ids)
    b = [p if "bbox" in p else {**p, "bbox": rle_bbox(p["segmentation"])} for p in b]
    res = compare(gt, a, b, n=n, seed=seed, table_a=table)
    res["A"], res["B"] = "predictions", str(path)
    res["images"] = image_changes(gt, a, b, table_a=table)
    res["_b"] = b  # for the HTML report's drawings; dropped before the JSON is written
    return res


def _all_masked(gt: dict[str, Any]) -> bool:
    """Every object has a mask (else evaluate_masks refuses, naming the first without)."""
    return all(a.get("segmentation") for a in gt["annotations"])


def _at_thresholds(
    d: dict[str, Any],
    gt: dict[str, Any],
    preds: list[dict[str, Any]],
    iou_threshold: float,
    table: Overlaps,
) -> None:
    """The recommended score threshold per class (operating points: best F1; the overall one for a
    class the model never finds) as ``deployment_thresholds``, and the confusion matrix of the
    predictions they keep as ``confusion_at_thresholds``."""
    import numpy as np

    from dataforge.evaluation.detection import detection_confusion
    from dataforge.evaluation.overlaps import index_of

    ops = d.get("metrics", {}).get("operating_points")
    if not isinstance(ops, dict):
        return
    fallback = ops["overall"]["score_threshold"]
    chosen = {
        int(c["category_id"]): c["score_threshold"] if c["score_threshold"] is not None else fallback
        for c in ops["per_class"]
    }
    d["deployment_thresholds"] = {
        "about": "keep a detection of a class when its score is at least the class's threshold (best F1 "
        "on the evaluated images; the overall best-F1 threshold for a class never found)",
        "iou_threshold": iou_threshold,
        "default": fallback,
        "thresholds": {c["name"]: chosen[int(c["category_id"])] for c in ops["per_class"]},
        "by_category_id": {str(k): v for k, v in chosen.items()},
    }
    ids = sorted(chosen)
    bars = np.array([np.inf if chosen[c] is None else chosen[c] for c in ids] + [np.inf])
    k = index_of(table.d_cls, np.array(ids, dtype=np.int64))  # -1 (no class): the last bar, inf
    keep = table.d_score >= bars[k]
    d["confusion_at_thresholds"] = detection_confusion(
        gt, preds, iou_threshold=iou_threshold, table=table, keep=keep
    )


def _with_tide(gt: dict[str, Any], preds: list[dict[str, Any]], table: Any) -> Any:
    """Copies of the ground truth and predictions carrying TIDE's error type as ``_tide``."""
    from dataforge.evaluation.errors import ground_truth_errors, prediction_errors

    g_types, p_types = (
        ground_truth_errors(table, len(gt["annotations"])),
        prediction_errors(table, len(preds)),
    )
    anns = [{**a, "_tide": t} if t else a for a, t in zip(gt["annotations"], g_types, strict=True)]
    return {**gt, "annotations": anns}, [
        {**p, "_tide": t} if t else p for p, t in zip(preds, p_types, strict=True)
    ]


@dataclass
class ClassAP:
    name: str
    ap: float  # COCO AP, IoU 0.50:0.95
    ap50: float
    ar100: float
    voc_ap50: float  # VOC all-point AP at the --iou threshold


@dataclass
class DetectionScores:
    #: COCOeval's 12 numbers, in ``detection.STAT_NAMES`` order (AP, AP50, AP75, ...)
    coco_stats: list[float]
    voc_iou: float
    voc_map_all_point: float
    voc_map_11_point: float
    per_class: list[ClassAP]


@dataclass
class ClassScores:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class ClassificationScores:
    accuracy: float
    top_k: dict[str, float]
    macro_f1: float
    per_class: list[ClassScores]


@dataclass
class FiftyOneComparison:
    dataset: str
    samples: int
    eval_key: str
    #: detection: FiftyOne's box mAP, dataforge's COCO AP and their difference (None otherwise)
    fiftyone_map: float | None
    dataforge_ap: float | None
    difference: float | None
    #: every FiftyOne number beside dataforge's: ``{"metric", "fiftyone", "dataforge", "difference"}``
    comparisons: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ClassIoU:
    name: str
    iou: float | None  # None: the class is in neither the truth nor the predictions
    accuracy: float | None
    pixels: int


@dataclass
class SemanticScores:
    miou: float | None
    mean_accuracy: float | None
    pixel_accuracy: float | None
    frequency_weighted_iou: float | None
    per_class: list[ClassIoU]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SemanticScores:
        return cls(
            d["mIoU"],
            d["mean_accuracy"],
            d["pixel_accuracy"],
            d["frequency_weighted_IoU"],
            [ClassIoU(c["name"], c["IoU"], c["accuracy"], c["pixels"]) for c in d["per_class"]],
        )


@dataclass
class PointErrors:
    name: str
    category: str
    points: int
    mean_error_px: float | None
    median_error_px: float | None
    pck: float | None  # at HEADLINE_ALPHA of the image's longer side


@dataclass
class RegressionScores:
    images: int
    points: int
    missing_predictions: int
    mean_error_px: float | None
    median_error_px: float | None
    mean_error_relative: float | None
    #: PCK by threshold (a fraction of the image's longer side, e.g. "0.05")
    pck: dict[str, float | None]
    per_point: list[PointErrors]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegressionScores:
        from dataforge.evaluation.regression import HEADLINE_ALPHA

        return cls(
            d["images"],
            d["points"],
            d["missing_predictions"],
            d["mean_error_px"],
            d["median_error_px"],
            d["mean_error_relative"],
            {k[4:]: v for k, v in d.items() if k.startswith("PCK@")},
            [
                PointErrors(
                    p["name"],
                    p["category"],
                    p["points"],
                    p["mean_error_px"],
                    p["median_error_px"],
                    p[f"PCK@{HEADLINE_ALPHA:g}"],
                )
                for p in d["per_point"]
            ],
        )


@dataclass
class EvaluationResult:
    """What :func:`dataforge.api.evaluate` returns: the scores, typed, and the whole report
    (``report``, the JSON ``report.json`` holds)."""

    task: str
    images: int
    predictions: int
    #: predictions for images outside the evaluated selection (another split), set aside
    set_aside: int
    detection: DetectionScores | None
    classification: ClassificationScores | None
    fiftyone: FiftyOneComparison | None
    report_path: Path | None
    html_path: Path | None
    report: dict[str, Any]
    #: the registered extra metrics (``dataforge/evaluation/metrics/``) of the task, by name
    metrics: dict[str, Any]
    #: COCO's 12 ``segm`` numbers (``detection.STAT_NAMES`` order) when masks were evaluated
    segm_stats: list[float] | None = None
    #: COCO's 10 keypoint numbers (``instances.KEYPOINT_STAT_NAMES`` order) when keypoints were
    keypoint_stats: list[float] | None = None
    semantic: SemanticScores | None = None
    regression: RegressionScores | None = None

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> EvaluationResult:
        detection = classification = fiftyone = None
        if "detection" in report:
            d, voc = report["detection"], report["detection"]["voc"]
            detection = DetectionScores(
                coco_stats=list(d["coco_stats"]),
                voc_iou=voc["iou_threshold"],
                voc_map_all_point=voc["mAP50_all_point"],
                voc_map_11_point=voc["mAP50_11_point"],
                per_class=[
                    ClassAP(
                        c["name"],
                        c["AP"],
                        c["AP50"],
                        c["AR100"],
                        voc["per_class"][c["name"]]["AP50_all_point"],
                    )
                    for c in d["per_class"]
                ],
            )
        if "classification" in report:
            c = report["classification"]
            classification = ClassificationScores(
                accuracy=c["accuracy"],
                top_k=dict(c["top_k"]),
                macro_f1=c["macro_f1"],
                per_class=[
                    ClassScores(p["name"], p["precision"], p["recall"], p["f1"], p["support"])
                    for p in c["per_class"]
                ],
            )
        if "fiftyone" in report:
            f = report["fiftyone"]
            fiftyone = FiftyOneComparison(
                f["dataset"],
                f["samples"],
                f["eval_key"],
                f.get("fiftyone_mAP"),
                f.get("dataforge_AP"),
                f.get("difference"),
                list(f.get("comparisons", [])),
            )
        set_aside = report["predictions"].get("outside_selection", 0)
        return cls(
            task=report["task"],
            images=report["ground_truth"]["images"],
            predictions=report["predictions"]["count"] - set_aside,
            set_aside=set_aside,
            detection=detection,
            classification=classification,
            fiftyone=fiftyone,
            report_path=Path(report["report_path"]) if "report_path" in report else None,
            html_path=Path(report["html_path"]) if "html_path" in report else None,
            report=report,
            metrics=dict(report.get(report["task"], {}).get("metrics", {})),
            segm_stats=list(report["segmentation"]["coco_stats"]) if "segmentation" in report else None,
            keypoint_stats=list(report["keypoints"]["coco_stats"]) if "keypoints" in report else None,
            semantic=SemanticScores.from_dict(report["semantic"]) if "semantic" in report else None,
            regression=RegressionScores.from_dict(report["regression"]) if "regression" in report else None,
        )
