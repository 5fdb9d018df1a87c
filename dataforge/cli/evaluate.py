"""``dataforge evaluate`` and ``dataforge app``."""

from __future__ import annotations

import argparse

from dataforge.cli.args import WHERE_HELP, Commands
from dataforge.cli.render import out, print_json, table


def cmd_evaluate(a: argparse.Namespace) -> int:
    from pathlib import Path

    from dataforge.evaluation.detection import STAT_NAMES
    from dataforge.evaluation.run import evaluate

    rep = evaluate(
        Path(a.predictions),
        store=Path(a.store) if a.store else None,
        gt_file=Path(a.gt) if a.gt else None,
        split=a.split,
        where=a.where,
        out=Path(a.out) if a.out else None,
        iou_threshold=a.iou,
        score_threshold=a.score,
        fiftyone=a.fiftyone,
    )
    if a.json:
        print_json(rep)
        return 0
    gt = rep["ground_truth"]
    aside = rep["predictions"].get("outside_selection", 0)
    used = rep["predictions"]["count"] - aside
    out(
        f"{rep['task']}: {used} predictions on {gt['images']} images"
        + (f" ({aside} for images outside the selection set aside)" if aside else "")
    )
    if rep["task"] == "detection":
        d = rep["detection"]
        out(
            table(
                [(n, f"{v:.4f}") for n, v in zip(STAT_NAMES, d["coco_stats"], strict=True)], ["COCO", "value"]
            )
        )
        voc = d["voc"]
        out(
            f"\nVOC AP{int(voc['iou_threshold'] * 100)}: all-point {voc['mAP50_all_point']:.4f}, "
            f"11-point {voc['mAP50_11_point']:.4f}"
        )
        out("\nper class")
        out(
            table(
                [
                    (
                        c["name"],
                        f"{c['AP']:.4f}",
                        f"{c['AP50']:.4f}",
                        f"{c['AR100']:.4f}",
                        f"{voc['per_class'][c['name']]['AP50_all_point']:.4f}",
                    )
                    for c in d["per_class"]
                ],
                ["category", "AP", "AP50", "AR100", "VOC AP50"],
            )
        )
    else:
        c = rep["classification"]
        out(
            f"accuracy {c['accuracy']:.4f}  "
            + "  ".join(f"{k} {v:.4f}" for k, v in c["top_k"].items())
            + f"  macro F1 {c['macro_f1']:.4f}"
        )
        out(
            table(
                [
                    (p["name"], f"{p['precision']:.4f}", f"{p['recall']:.4f}", f"{p['f1']:.4f}", p["support"])
                    for p in c["per_class"]
                ],
                ["category", "precision", "recall", "F1", "support"],
            )
        )
    if "fiftyone" in rep:
        f = rep["fiftyone"]
        out(
            f"\nFiftyOne dataset {f['dataset']!r}: {f['samples']} samples, eval_key {f['eval_key']!r}; "
            f"FiftyOne mAP {f['fiftyone_mAP']:.4f} vs dataforge AP {f['dataforge_AP']:.4f} "
            f"(difference {f['difference']:+.4f}); open it with `dataforge app {f['dataset']}`"
        )
    if "report_path" in rep:
        out(f"\nreport: {rep['report_path']} and {rep['html_path']}")
    return 0


def add_evaluate(add: Commands) -> None:
    sp = add(
        "evaluate",
        cmd_evaluate,
        "evaluate predictions: COCO mAP (equal to pycocotools), VOC AP50, confusion",
        "Evaluate detection (COCO results JSON) or classification predictions against a store or, with "
        "--gt, a plain COCO file. Writes OUT/report.json with every number.",
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
        "--iou", type=float, default=0.5, help="IoU for VOC AP and the confusion matrix (default 0.5)"
    )
    sp.add_argument(
        "--score", type=float, default=0.0, help="score threshold for the confusion matrix (default 0)"
    )
    sp.add_argument(
        "--fiftyone",
        metavar="NAME",
        help="also build/update the persistent FiftyOne dataset NAME and run FiftyOne's evaluation",
    )
    sp.add_argument("--json", action="store_true", help="print the whole report as JSON")


def cmd_app(a: argparse.Namespace) -> int:
    from dataforge.evaluation.app import serve

    serve(a.name, address=a.address, port=a.port)
    return 0


def add_app(add: Commands) -> None:
    sp = add("app", cmd_app, "open the FiftyOne App on a FiftyOne dataset (until Ctrl-C)")
    sp.add_argument("name", help="the FiftyOne dataset (as made by `dataforge evaluate ... --fiftyone NAME`)")
    sp.add_argument("--address", default="127.0.0.1", help="address to serve on (default %(default)s)")
    sp.add_argument("--port", type=int, default=5151, help="port to serve on (default %(default)s)")
