"""``dataforge evaluate`` and ``dataforge app``."""

from __future__ import annotations

import argparse

from dataforge.cli.args import WHERE_HELP, Commands
from dataforge.cli.render import out, print_json, table


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _px(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _sigmas(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, found {text!r}") from None


def _ci(c: list[float] | None) -> str:
    return "-" if c is None else f"[{c[0]:.4f}, {c[1]:.4f}]"


def _intervals(b: dict | None) -> None:
    if not b:
        return
    out(f"\n95% intervals ({b['resamples']} bootstrap resamples of the images, seed {b['seed']})")
    rows = [
        ("AP", _f(b["AP"]["value"]), _ci(b["AP"]["ci95"])),
        ("AP50", _f(b["AP50"]["value"]), _ci(b["AP50"]["ci95"])),
    ]
    rows += [(f"AP {c['name']}", _f(c["AP"]), _ci(c["ci95"])) for c in b["per_class"]]
    out(table(rows, ["", "value", "95% interval"]))


def _comparison(c: dict | None) -> None:
    if not c:
        return
    out(f"\nB ({c['B']}) against A (these predictions), {c['resamples']} paired resamples")
    rows = [
        (k, _f(c[k]["A"]), _f(c[k]["B"]), _f(c[k]["delta"]), _ci(c[k]["ci95"]), _f(c[k]["B_better"]))
        for k in ("AP", "AP50")
    ]
    rows += [
        (f"AP {r['name']}", _f(r["A"]), _f(r["B"]), _f(r["delta"]), _ci(r["ci95"]), _f(r["B_better"]))
        for r in c["per_class"]
    ]
    out(table(rows, ["", "A", "B", "B - A", "95% interval", "B better"]))


def _errors(e: dict | None, what: str) -> None:
    """TIDE's error breakdown: per type, the AP50 it costs (dAP) and how many there are."""
    if not e:
        return
    from dataforge.evaluation.errors import ERROR_TYPES, SPECIAL

    out(f"\nerrors of the {what} (TIDE, AP50 {e['ap']:.4f}): dAP is the AP50 gained if that type were fixed")
    rows = [(k, f"{e['dAP'][k]:.4f}", str(e["counts"][k])) for k in ERROR_TYPES]
    rows += [(k, f"{e['dAP'][k]:.4f}", "") for k in SPECIAL]
    out(table(rows, ["error", "dAP", "count"]))


def cmd_evaluate(a: argparse.Namespace) -> int:
    from dataforge.api import evaluate
    from dataforge.evaluation.detection import STAT_NAMES
    from dataforge.evaluation.instances import KEYPOINT_STAT_NAMES

    res = evaluate(
        a.predictions,
        store=a.store,
        gt_file=a.gt,
        split=a.split,
        where=a.where,
        out=a.out,
        iou_threshold=a.iou,
        score_threshold=a.score,
        fiftyone=a.fiftyone,
        iou_types=a.iou_type,
        kpt_sigmas=a.kpt_sigmas,
        bootstrap=a.bootstrap,
        bootstrap_seed=a.seed,
        compare=a.compare,
        explain=a.explain,
    )
    if a.json:
        print_json(res.report)
        return 0
    aside = f" ({res.set_aside} for images outside the selection set aside)" if res.set_aside else ""
    out(f"{res.task}: {res.predictions} predictions on {res.images} images{aside}")
    if res.detection is not None:
        d = res.detection
        out(
            table([(n, f"{v:.4f}") for n, v in zip(STAT_NAMES, d.coco_stats, strict=True)], ["COCO", "value"])
        )
        out(
            f"\nVOC AP{int(d.voc_iou * 100)}: all-point {d.voc_map_all_point:.4f}, "
            f"11-point {d.voc_map_11_point:.4f}"
        )
        out("\nper class")
        rows = [
            (c.name, f"{c.ap:.4f}", f"{c.ap50:.4f}", f"{c.ar100:.4f}", f"{c.voc_ap50:.4f}")
            for c in d.per_class
        ]
        out(table(rows, ["category", "AP", "AP50", "AR100", "VOC AP50"]))
        _intervals(res.report["detection"].get("bootstrap"))
        _comparison(res.report.get("comparison"))
        _errors(res.report["detection"].get("errors"), "boxes")
    for label, stats, names in (
        ("COCO segm (masks)", res.segm_stats, STAT_NAMES),
        ("COCO keypoints (OKS)", res.keypoint_stats, KEYPOINT_STAT_NAMES),
    ):
        if stats is not None:
            out("\n" + table([(n, f"{v:.4f}") for n, v in zip(names, stats, strict=True)], [label, "value"]))
    if "segmentation" in res.report:
        _errors(res.report["segmentation"].get("errors"), "masks")
    if "keypoints" in res.report:
        points = [
            (k["name"], k["matched"], _px(k["mean_px"]), _px(k["median_px"]))
            for k in res.report["keypoints"]["per_keypoint"]
        ]
        out("\nper keypoint (matched at OKS >= 0.5)")
        out(table(points, ["point", "matched", "mean px", "median px"]))
    if res.semantic is not None:
        s = res.semantic
        out(
            f"mIoU {_f(s.miou)}  pixel accuracy {_f(s.pixel_accuracy)}  mean accuracy {_f(s.mean_accuracy)}  "
            f"frequency-weighted IoU {_f(s.frequency_weighted_iou)}"
        )
        out(
            table(
                [(c.name, _f(c.iou), _f(c.accuracy), c.pixels) for c in s.per_class],
                ["class", "IoU", "accuracy", "pixels"],
            )
        )
    if res.regression is not None:
        r = res.regression
        missing = f", {r.missing_predictions} images without a prediction" if r.missing_predictions else ""
        out(
            f"points {r.points} on {r.images} images{missing}: mean error {_px(r.mean_error_px)} px, "
            f"median {_px(r.median_error_px)} px, "
            + ", ".join(f"PCK@{k} {_f(v)}" for k, v in r.pck.items())
            + " (PCK: within that fraction of the image's longer side)"
        )
        out(
            table(
                [
                    (p.category, p.name, p.points, _px(p.mean_error_px), _px(p.median_error_px), _f(p.pck))
                    for p in r.per_point
                ],
                ["category", "point", "points", "mean px", "median px", "PCK@0.05"],
            )
        )
    if res.classification is not None:
        c = res.classification
        out(
            f"accuracy {c.accuracy:.4f}  "
            + "  ".join(f"{k} {v:.4f}" for k, v in c.top_k.items())
            + f"  macro F1 {c.macro_f1:.4f}"
        )
        per_class = [
            (p.name, f"{p.precision:.4f}", f"{p.recall:.4f}", f"{p.f1:.4f}", p.support) for p in c.per_class
        ]
        out(table(per_class, ["category", "precision", "recall", "F1", "support"]))
    shown = {k: v for k, v in res.metrics.items() if isinstance(v, dict) and v.get("value") is not None}
    if shown:
        out("\nmore metrics")
        for name, v in shown.items():
            rest = ", ".join(
                f"{k} {x:.4g}" if isinstance(x, float) else f"{k} {x}"
                for k, x in v.items()
                if k != "value" and isinstance(x, (int, float, str))
            )
            out(f"  {name} {v['value']:.4f}" + (f" ({rest})" if rest else ""))
    ops = res.metrics.get("operating_points")
    if isinstance(ops, dict) and ops.get("per_class"):
        out(f"\noperating points (IoU {ops['iou_threshold']}): the best-F1 score threshold per class")
        op_rows = [
            (
                c["name"],
                _f(c["score_threshold"]),
                _f(c["precision"]),
                _f(c["recall"]),
                _f(c["f1"]),
                _f(c["precision_at_recall"]["0.5"]),
                _f(c["precision_at_recall"]["0.8"]),
            )
            for c in [*ops["per_class"], {"name": "(all)", **ops["overall"]}]
        ]
        out(table(op_rows, ["category", "threshold", "precision", "recall", "F1", "P@R0.5", "P@R0.8"]))
        if res.report.get("thresholds_path"):
            out(f"thresholds for deployment: {res.report['thresholds_path']}")
    if "explain" in res.report:
        e = res.report["explain"]
        out("\nwhat sets these numbers (--explain)")
        for k, v in e["settings"].items():
            out(f"  {k}: {v}")
        out("\nthe same predictions, scored as other tools score them")
        out(
            table(
                [(c["name"], _f(c["value"]), c["why"]) for c in e["conventions"]],
                ["convention", "value", "why it differs"],
            )
        )
    if res.fiftyone is not None:
        f = res.fiftyone
        out(f"\nFiftyOne dataset {f.dataset!r}: {f.samples} samples, eval_key {f.eval_key!r}")
        for pair in f.comparisons:
            diff = "" if pair["difference"] is None else f" (difference {pair['difference']:+.4f})"
            out(
                f"  FiftyOne {pair['metric']} {pair['fiftyone']:.4f} vs dataforge {_f(pair['dataforge'])}{diff}"
            )
        if "note" in res.report["fiftyone"]:
            out(f"  {res.report['fiftyone']['note']}")
        out(f"  open it with `dataforge app {f.dataset}`")
    if res.report_path is not None:
        out(f"\nreport: {res.report_path} and {res.html_path}")
    return 0


def add_evaluate(add: Commands) -> None:
    sp = add(
        "evaluate",
        cmd_evaluate,
        "evaluate predictions: COCO box/mask/keypoint mAP (equal to pycocotools), VOC AP50, mIoU, point error, confusion",
        "Evaluate detection, instance segmentation or keypoint predictions (COCO results JSON), "
        "semantic segmentation (COCO-Stuff results: per-class RLE regions, no score), point regression "
        "(keypoint results without a score, one per image: pixel error and PCK) or classification "
        "predictions against a store or, with --gt, a plain COCO file. Writes OUT/report.json with "
        "every number.",
    )
    sp.add_argument("store", nargs="?", help="the ground-truth store (or use --gt)")
    sp.add_argument("--gt", help="a COCO annotation file as ground truth instead of a store")
    sp.add_argument(
        "--predictions", required=True, help="COCO results JSON (detection) or classification JSON"
    )
    sp.add_argument("--split", help="evaluate only this split of the store")
    sp.add_argument("--where", help=WHERE_HELP)
    sp.add_argument("--out", help="write report.json here")
    sp.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="detections: resample the images N times for 95%% intervals of AP, AP50 and per-class AP "
        "(default 1000; 0: none)",
    )
    sp.add_argument("--seed", type=int, default=0, help="the resamples' seed (default 0)")
    sp.add_argument(
        "--explain",
        action="store_true",
        help="print every setting that changes the detection numbers, and the same predictions scored "
        "as VOC (all-point, 11-point) and Ultralytics (mAP50-95) score them",
    )
    sp.add_argument(
        "--compare",
        metavar="B.json",
        help="another predictions file: B against these (A) on the same resamples, with the images "
        "where B gained or lost most",
    )
    sp.add_argument(
        "--iou", type=float, default=0.5, help="IoU for VOC AP and the confusion matrix (default 0.5)"
    )
    sp.add_argument(
        "--score", type=float, default=0.0, help="score threshold for the confusion matrix (default 0)"
    )
    sp.add_argument(
        "--fiftyone",
        metavar="NAME",
        help="also build/update the persistent FiftyOne dataset NAME (boxes, masks, keypoints, class maps, "
        "points or classes) and run FiftyOne's own evaluation where it has one, its numbers beside ours",
    )
    sp.add_argument(
        "--iou-type",
        action="append",
        choices=["bbox", "segm", "keypoints"],
        help="evaluate instance predictions by boxes, masks or keypoints (repeat for several; "
        "default: each one every prediction carries)",
    )
    sp.add_argument(
        "--kpt-sigmas",
        type=_sigmas,
        metavar="S1,S2,...",
        help="OKS sigma per keypoint (default: COCO's for 17 points, else 1/K each)",
    )
    sp.add_argument("--json", action="store_true", help="print the whole report as JSON")


def cmd_app(a: argparse.Namespace) -> int:
    from dataforge.api import serve_app

    serve_app(a.name, address=a.address, port=a.port)
    return 0


def add_app(add: Commands) -> None:
    sp = add("app", cmd_app, "open the FiftyOne App on a FiftyOne dataset (until Ctrl-C)")
    sp.add_argument("name", help="the FiftyOne dataset (as made by `dataforge evaluate ... --fiftyone NAME`)")
    sp.add_argument("--address", default="127.0.0.1", help="address to serve on (default %(default)s)")
    sp.add_argument("--port", type=int, default=5151, help="port to serve on (default %(default)s)")
