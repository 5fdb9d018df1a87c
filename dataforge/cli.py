"""The ``dataforge`` command line. Each command parses, calls one API function, and renders.

Errors from the ``DataforgeError`` hierarchy print one line (plus a hint) and exit with the
class's code (see ``dataforge.errors``); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dataforge import __version__
from dataforge.errors import DataforgeError, UsageError

Handler = Callable[[argparse.Namespace], int]


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _is_num(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [all(_is_num(r[i]) for r in cells[1:]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.rjust(w) if numeric[i] and i else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join("  " + ln for ln in lines)


# -- commands ------------------------------------------------------------------------------
def cmd_import(a: argparse.Namespace) -> int:
    from dataforge.api import import_dataset

    res = import_dataset(
        **_options(a.option),
        source=a.source,
        store=a.store,
        format=a.format,
        images=a.images,
        on_error=a.on_error,
        split=a.split,
        tags=a.tag or [],
        link=a.link,
    )
    how = " (detected)" if a.format == "auto" else ""
    _out(
        f"imported {res.images} images, {res.annotations} annotations into {res.store} [format: {res.format}{how}]"
    )
    if res.new_categories:
        _out(f"new categories: {', '.join(res.new_categories)}")
    changed = {k: v for k, v in res.id_changes.items() if v}
    if changed:
        _out(
            "ids re-assigned (taken in the store, or annotation id 0): "
            + ", ".join(f"{v} {k}" for k, v in changed.items())
        )
    for w in res.warnings[:5]:
        _err(f"warning: {w}")
    if len(res.warnings) > 5:
        _err(f"warning: ... and {len(res.warnings) - 5} more (see the report)")
    if res.skipped:
        _err(f"skipped {len(res.skipped)} items:")
        for reason, n in sorted(res.skipped_by_reason.items()):
            _err(f"  {n:6d}  {reason}")
    if res.report:
        _out(f"report: {res.report}")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from dataforge.api import info

    if a.image is not None:
        from dataforge.info import image_lineage
        from dataforge.store import Store

        _json(image_lineage(Store.open(a.store), a.image))
        return 0
    d = info(a.store, where=a.where)
    if a.json:
        _json(d)
        return 0
    _out(f"store {d['store']} (revision {d['revision']})" + (f", where {d['where']}" if d["where"] else ""))
    _out(
        f"  {d['images']} images ({d['images_without_annotations']} without annotations), "
        f"{d['annotations']} boxes ({d['crowd_annotations']} crowd), {len(d['categories'])} categories"
    )
    if d["augmented_images"]:
        _out(
            f"  {d['augmented_images']} augmented images (each image's lineage: dataforge info STORE --image ID)"
        )
    aug = d.get("augmentation")
    if aug:
        c = aug["counts"]
        _out(
            f"  made by dataforge augment from {aug['source_store']} (revision {aug['source_revision']}): "
            f"pipeline {aug['pipeline_sha256'][:12]} ({', '.join(aug['steps'])}), seed {aug['seed']}, "
            f"{aug['copies']} copies; boxes {c.get('boxes_in')} in, {c.get('boxes_out')} out, "
            f"{c.get('boxes_clipped')} clipped, {c.get('boxes_dropped')} dropped"
        )
    _out("\nsplits")
    _out(_table([(s, v["images"], v["boxes"]) for s, v in d["splits"].items()], ["split", "images", "boxes"]))
    _out("\ncategories")
    splits = list(d["splits"])
    labelled = any(c["labelled_images"] for c in d["categories"])
    rows = [
        (
            c["name"],
            c["id"],
            c["images"],
            c["boxes"],
            *[c["boxes_by_split"].get(s, 0) for s in splits],
            *([c["labelled_images"]] if labelled else []),
        )
        for c in d["categories"]
    ]
    header = ["category", "id", "images", "boxes", *[f"boxes:{s}" for s in splits]]
    _out(_table(rows, header + (["labelled images"] if labelled else [])))
    bw, bh = d["box_sizes"]["width"], d["box_sizes"]["height"]
    if bw:
        _out("\nbox sizes (pixels)")
        _out(
            _table(
                [(k, f"{bw[k]:.1f}", f"{bh[k]:.1f}") for k in ("min", "p5", "median", "p95", "max")],
                ["stat", "width", "height"],
            )
        )
        b = d["box_sizes"]["coco_area_buckets"]
        _out(f"  COCO area buckets: small {b['small']}, medium {b['medium']}, large {b['large']}")
    if d["tags"]:
        _out("\ntags")
        _out(_table(list(d["tags"].items()), ["tag", "images"]))
    return 0


def cmd_tag(a: argparse.Namespace) -> int:
    from dataforge.api import tag_images

    ids = _parse_ids(a.ids) if a.ids else None
    res = tag_images(a.store, add=a.add or [], remove=a.remove or [], where=a.where, ids=ids)
    _out(f"{res.matched} images matched, {res.changed} changed")
    return 0


def _options(pairs: list[str] | None) -> dict[str, str]:
    """--option KEY=VALUE pairs for a format plugin."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option {pair!r}: expected KEY=VALUE, e.g. --option coordinates=devkit")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _parse_ids(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--ids {text!r}: expected comma-separated integers, e.g. --ids 1,2,3") from None


def cmd_split(a: argparse.Namespace) -> int:
    from dataforge.api import split_store
    from dataforge.splits import parse_ratios

    res = split_store(a.store, ratios=parse_ratios(a.ratios), seed=a.seed, stratify=a.stratify, where=a.where)
    names = list(res["images"])
    _out(f"{'stratified' if a.stratify else 'random'} split, seed {a.seed}")
    _out(
        _table(
            [("(images)", *[res["images"][n] for n in names])]
            + [(c, *[v[n] for n in names]) for c, v in res["boxes_by_category"].items()],
            ["", *names],
        )
    )
    return 0


def cmd_validate(a: argparse.Namespace) -> int:
    from dataforge.api import validate

    rep = validate(a.store, check_files=not a.no_files)
    if a.json:
        _json(rep.to_dict())
    else:
        for f in rep.findings[: a.max]:
            _out(f"{f.severity}: [{f.code}] {f.message}")
        if len(rep.findings) > a.max:
            _out(f"... {len(rep.findings) - a.max} more findings (use --json for all)")
        _out(
            f"{rep.images} images, {rep.annotations} annotations: {len(rep.errors)} errors, "
            f"{len(rep.warnings)} warnings"
        )
    return 0 if rep.ok else 1


def cmd_export(a: argparse.Namespace) -> int:
    from dataforge.api import export_dataset

    opts: dict[str, Any] = {}
    if a.category_ids is not None:
        opts["category_ids"] = a.category_ids
    if a.link:
        opts["link"] = True
    opts.update(_options(a.option))
    res = export_dataset(a.store, format=a.format, out=a.out, where=a.where, split=a.split, **opts)
    _out(f"exported {res.images} images, {res.annotations} annotations to {res.out} ({a.format})")
    for note in res.notes:
        _out(f"  {note}")
    for what, n in res.dropped.items():
        _err(f"warning: {n} {what} could not be written in this format and were dropped")
    return 0


def cmd_augment(a: argparse.Namespace) -> int:
    from dataforge.augment import load_pipeline

    pipeline = load_pipeline(a.pipeline)
    if a.seed is not None:
        pipeline = pipeline.model_copy(update={"seed": a.seed})
    if a.preview is not None:
        from dataforge.augment.preview import preview

        if a.preview < 1:
            raise UsageError(f"--preview needs a positive number of images, not {a.preview}")
        path = preview(a.store, pipeline, a.out, n=a.preview, where=a.where, split=a.split)
        _out(f"preview of {a.preview} images (original | augmented copy 0) written to {path}")
        return 0
    from dataforge.augment.job import augment
    from dataforge.progress import ProgressBar

    bar = ProgressBar("augment", unit="img", enabled=not a.json and not a.quiet)
    try:
        res = augment(
            a.store,
            pipeline,
            a.out,
            copies=a.copies,
            where=a.where,
            split=a.split,
            workers=a.workers,
            scheduler=a.scheduler,
            device=a.device,
            backend=a.backend,
            on_error=a.on_error,
            chunk_size=a.chunk_size,
            progress=bar.set_done,
            on_dashboard=lambda link: _err(f"dask dashboard: {link}"),
        )
    finally:
        bar.close()
    if a.json:
        _json(res.as_dict())
        return 0
    if res.already_done:
        _out(f"{res.out}: this job is already complete ({res.images} images); nothing to do")
        return 0
    c = res.counts
    resumed = f", {res.resumed_units} done by an earlier run" if res.resumed_units else ""
    _out(
        f"augmented {res.source_images} images x {res.copies} copies -> {res.images} images in {res.out} "
        f"({res.seconds:.1f} s, {res.images / max(res.seconds, 1e-9):.0f} img/s, "
        f"{res.workers} workers, {res.scheduler}{resumed})"
    )
    _out(
        f"boxes: {c['boxes_in']} in, {c['boxes_out']} out, {c['boxes_clipped']} clipped by crops/rotations, "
        f"{c['boxes_dropped']} dropped by the box rules"
    )
    if res.skipped:
        _out(f"skipped {len(res.skipped)} source images; see {res.report}")
    for w in res.warnings:
        _err(f"warning: {w}")
    return 0


def cmd_trainers(a: argparse.Namespace) -> int:
    from dataforge.training.contract import describe, trainer_names

    rows = [describe(n) for n in trainer_names()]
    if a.json:
        _json(rows)
        return 0
    if not rows:
        _out("no trainer plugins installed (./setup.sh installs the first-party ones from plugins/)")
        return 0
    for r in rows:
        _out(f"{r['name']}  [{r['task']}]  from {r['distribution']}; best checkpoint by val {r['metric']}")
        _out(f"  models: {', '.join(r['models'])}")
        opts = ", ".join(f"{k}={v.get('default')!r}" for k, v in r["options"].items() if "default" in v)
        _out(f"  options (--set KEY=VALUE): {opts}\n")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from dataforge.training.run import train

    res = train(
        a.store,
        trainer=a.trainer,
        out=a.resume or a.out,
        config_file=a.config,
        sets=a.set or [],
        resume=bool(a.resume),
        weights=a.weights,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun rank 0 reports (it alone validates and writes)
    if a.json:
        _json({**res.__dict__, "best": str(res.best), "last": str(res.last)})
        return 0
    for h in res.history:
        _out("  " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in h.items()))
    best = f"{res.best_metric:.4f}" if res.best_metric is not None else "n/a (no val split)"
    stop = " (stopped early)" if res.stopped_early else ""
    _out(
        f"trained {res.epochs} epochs, {res.steps} steps in {res.seconds:.1f} s{stop}; best val {res.metric_name} {best}\n"
        f"checkpoints: {res.best} (best), {res.last} (last); curves: tensorboard --logdir {res.best.parent if res.best else ''}"
    )
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from dataforge.training.run import predict

    *runs, store = a.paths
    if not runs:
        raise UsageError("predict needs one or more run directories (or checkpoints) and then a store")
    rep = predict(
        runs,
        store,
        out=a.out,
        split=a.split,
        where=a.where,
        ensemble=a.ensemble,
        device=a.device,
        batch_size=a.batch_size,
    )
    if a.json:
        _json(rep)
        return 0
    how = f"an ensemble of {len(runs)} runs" if len(runs) > 1 else runs[0]
    _out(
        f"{rep['predictions']} {rep['task']} predictions for {rep['images']} images from {how} -> {rep['out']}"
    )
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from dataforge.demo import run_demo

    run_demo(a.dir, quick=a.quick, echo=_out)
    return 0


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
        _json(rep)
        return 0
    gt = rep["ground_truth"]
    aside = rep["predictions"].get("outside_selection", 0)
    used = rep["predictions"]["count"] - aside
    _out(
        f"{rep['task']}: {used} predictions on {gt['images']} images"
        + (f" ({aside} for images outside the selection set aside)" if aside else "")
    )
    if rep["task"] == "detection":
        d = rep["detection"]
        _out(
            _table(
                [(n, f"{v:.4f}") for n, v in zip(STAT_NAMES, d["coco_stats"], strict=True)], ["COCO", "value"]
            )
        )
        voc = d["voc"]
        _out(
            f"\nVOC AP{int(voc['iou_threshold'] * 100)}: all-point {voc['mAP50_all_point']:.4f}, "
            f"11-point {voc['mAP50_11_point']:.4f}"
        )
        _out("\nper class")
        _out(
            _table(
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
        _out(
            f"accuracy {c['accuracy']:.4f}  "
            + "  ".join(f"{k} {v:.4f}" for k, v in c["top_k"].items())
            + f"  macro F1 {c['macro_f1']:.4f}"
        )
        _out(
            _table(
                [
                    (p["name"], f"{p['precision']:.4f}", f"{p['recall']:.4f}", f"{p['f1']:.4f}", p["support"])
                    for p in c["per_class"]
                ],
                ["category", "precision", "recall", "F1", "support"],
            )
        )
    if "fiftyone" in rep:
        f = rep["fiftyone"]
        _out(
            f"\nFiftyOne dataset {f['dataset']!r}: {f['samples']} samples, eval_key {f['eval_key']!r}; "
            f"FiftyOne mAP {f['fiftyone_mAP']:.4f} vs dataforge AP {f['dataforge_AP']:.4f} "
            f"(difference {f['difference']:+.4f}); open it with `dataforge app {f['dataset']}`"
        )
    if "report_path" in rep:
        _out(f"\nreport: {rep['report_path']} and {rep['html_path']}")
    return 0


def _ls_client(a: argparse.Namespace) -> Any:
    from dataforge.labelstudio.client import LabelStudio

    return LabelStudio(a.url, a.api_key)


def cmd_ls_push(a: argparse.Namespace) -> int:
    from pathlib import Path

    from dataforge.evaluation.predictions import load_predictions
    from dataforge.labelstudio.sync import push

    root = a.document_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    if not root:
        raise UsageError(
            "no document root: pass --document-root or set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
            "(the folder the Label Studio server serves local files from)"
        )
    preds = load_predictions(Path(a.predictions)) if a.predictions else None
    r = push(
        Path(a.store),
        a.project,
        _ls_client(a),
        document_root=Path(root),
        where=a.where,
        predictions=preds,
        with_annotations=a.with_annotations,
    )
    _out(
        f"project {r['project']} ({'created' if r['created'] else 'existing'}): {r['pushed']} tasks pushed, "
        f"{r['already_there']} already there; {r['requests']} HTTP requests"
    )
    return 0


def cmd_ls_pull(a: argparse.Namespace) -> int:
    from pathlib import Path

    from dataforge.labelstudio.sync import pull

    r = pull(Path(a.store), a.project, _ls_client(a))
    _out(
        f"project {r['project']}: {r['updated']} images updated, {r['skipped']} skipped; "
        f"{r['requests']} HTTP requests"
    )
    return 0


def cmd_ls_status(a: argparse.Namespace) -> int:
    from pathlib import Path

    from dataforge.labelstudio.sync import status

    r = status(Path(a.store), a.project, _ls_client(a))
    if a.json:
        _json(r)
    else:
        _out(
            f"project {r['project']} {r['title']!r}: {r['tasks']} tasks, {r['annotated']} annotated, "
            f"{r['skipped']} skipped, {r['pending']} pending; last pull: {r['last_pull'] or 'never'}"
        )
    return 0


def cmd_ls_serve(a: argparse.Namespace) -> int:
    import signal
    import time
    from pathlib import Path

    from dataforge.labelstudio.server import LabelStudioServer

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM stop the server even when this process was started with SIGINT ignored
    # (what a shell does to background jobs, and Python then installs no KeyboardInterrupt handler)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)

    srv = LabelStudioServer(Path(a.data_dir), files_root=Path(a.document_root), port=a.port)
    with srv:
        _out(
            f"Label Studio at {srv.url} (user {srv.username}, password {srv.password}); Ctrl-C to stop\n"
            f"export LABEL_STUDIO_URL={srv.url} LABEL_STUDIO_API_KEY=<the token printed below> "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={srv.files_root}"
        )
        _err(f"API token (keep it secret): {srv.token}")
        try:
            while srv.proc is not None and srv.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_app(a: argparse.Namespace) -> int:
    from dataforge.evaluation.app import serve

    serve(a.name, address=a.address, port=a.port)
    return 0


def cmd_doctor(a: argparse.Namespace) -> int:
    from dataforge.doctor import as_json, run_checks

    checks = run_checks(a.only)
    report = as_json(checks)
    if a.json:
        _json(report)
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "no  ")
            _out(f"[{mark}] {c.name:20s} {c.detail}")
            if c.hint:
                _out(f"       {'':20s} fix: {c.hint}")
        _out("all required components work" if report["ok"] else "some required components do not work")
    return 0 if report["ok"] else 1


def cmd_formats(a: argparse.Namespace) -> int:
    from dataforge import plugins
    from dataforge.formats import list_formats

    info = plugins.available(plugins.FORMATS)
    rows = [
        (
            f.name,
            "yes" if f.can_import else "-",
            "yes" if f.can_export else "-",
            info[f.name].distribution,
            f.description,
        )
        for f in list_formats()
    ]
    if a.json:
        _json(
            [
                dict(zip(["name", "import", "export", "distribution", "description"], r, strict=True))
                for r in rows
            ]
        )
    else:
        _out(_table(rows, ["format", "import", "export", "from", "description"]))
    return 0


def cmd_history(a: argparse.Namespace) -> int:
    from dataforge.store import Store

    entries = Store.open(a.store).history()[-a.n :]
    if a.json:
        _json(entries)
    else:
        for e in entries:
            extra = {
                k: v for k, v in e.items() if k not in ("time", "op", "revision", "user", "host", "dataforge")
            }
            _out(
                f"{e['time']}  r{e.get('revision', '?'):<4} {e['op']:8s} {e.get('user', '')}  {json.dumps(extra, default=str)}"
            )
    return 0


# -- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dataforge",
        description="Computer-vision datasets from import to evaluation. Run `dataforge COMMAND --help` for details.",
        epilog="exit codes: 0 ok, 1 check found problems, 2 usage error, 3 bad input data, 4 store error, "
        "5 component missing, 130 interrupted",
    )
    p.add_argument("--version", action="version", version=f"dataforge {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str, handler: Handler, help: str, description: str | None = None
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(
            name,
            help=help,
            description=description or help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sp.set_defaults(handler=handler)
        return sp

    where_help = (
        "filter images, e.g. \"category == 'cat' and boxes > 3\"; fields: id, file, width, height, "
        "split, boxes, category, tag, label; functions: count(name), glob(pattern)"
    )

    sp = add(
        "import",
        cmd_import,
        "import a dataset into a store (new or existing)",
        "Import a dataset into a store. All-or-nothing: on any problem the store is left exactly as it "
        "was, unless --on-error skip, which skips bad items and writes a report of each.",
    )
    sp.add_argument("source", help="annotation file or dataset directory")
    sp.add_argument(
        "--store", required=True, help="store directory (created if missing; merged into if it exists)"
    )
    sp.add_argument(
        "--format", default="auto", help="format plugin name (see `dataforge formats`), default: auto"
    )
    sp.add_argument(
        "--images", help="folder that the file names in SOURCE are relative to (default: guessed)"
    )
    sp.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="fail: stop at the first bad item (default); skip: skip bad items and report them",
    )
    sp.add_argument("--split", help="put every imported image in this split (e.g. train)")
    sp.add_argument(
        "--tag", action="append", metavar="TAG", help="add this tag to every imported image (repeatable)"
    )
    sp.add_argument("--link", action="store_true", help="hard-link images into the store instead of copying")
    sp.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="format option, e.g. --option coordinates=devkit (VOC); see the format's docs",
    )

    sp = add("info", cmd_info, "counts per split and category, box sizes, tags")
    sp.add_argument("store")
    sp.add_argument("--image", type=int, metavar="ID", help="print one image's record and lineage as JSON")
    sp.add_argument("--where", help=where_help)
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = add(
        "tag",
        cmd_tag,
        "add or remove tags on the images a filter matches",
        "Add or remove tags on images. Without --where/--ids every image matches.\n\n"
        "examples:\n  dataforge tag ./pets --add needs-review --where \"category == 'cat' and boxes > 3\"\n"
        "  dataforge tag ./pets --remove needs-review --ids 4,8,15",
    )
    sp.add_argument("store")
    sp.add_argument("--add", action="append", metavar="TAG", help="tag to add (repeatable)")
    sp.add_argument("--remove", action="append", metavar="TAG", help="tag to remove (repeatable)")
    sp.add_argument("--where", help=where_help)
    sp.add_argument("--ids", help="comma-separated image ids")

    sp = add(
        "augment",
        cmd_augment,
        "augment a store into a new store (dask-parallel, box-aware)",
        "Augment every selected image COPIES times with a pipeline file into a new store. Boxes are "
        "transformed with the images; each new image records its source, copy index, pipeline hash and "
        "the exact parameters drawn. Output depends only on (seed, source image, copy), never on the "
        "workers or chunking. Re-run the same command after a kill to finish the remaining work.\n\n"
        "examples:\n"
        "  dataforge augment ./pets --pipeline examples/pipelines/flip-crop-jitter.yaml --copies 4 --out ./pets-aug\n"
        "  dataforge augment ./pets --pipeline p.yaml --out ./pets-aug --workers 8\n"
        "  dataforge augment ./pets --pipeline p.yaml --out ./pets-aug --scheduler tcp://10.0.0.5:8786\n"
        "  dataforge augment ./pets --pipeline p.yaml --out ./pets-aug --device cuda\n"
        "  dataforge augment ./pets --pipeline p.yaml --preview 16 --out preview.png",
    )
    sp.add_argument("store")
    sp.add_argument(
        "--pipeline", required=True, help="pipeline file (YAML or JSON; schemas/pipeline.schema.json)"
    )
    sp.add_argument("--out", required=True, help="new store directory (or the PNG file with --preview)")
    sp.add_argument(
        "--copies", type=int, help="augmented copies per image (default: the pipeline's `copies`)"
    )
    sp.add_argument("--seed", type=int, help="override the pipeline's seed")
    sp.add_argument("--where", help="only augment the images this filter matches; " + where_help)
    sp.add_argument("--split", help="only augment this split (e.g. train)")
    sp.add_argument("--workers", type=int, help="local worker processes (default: the number of cores)")
    sp.add_argument(
        "--scheduler",
        default="processes",
        metavar="processes|threads|sync|ADDRESS",
        help="local dask processes (default), threads, sync (in-process, for debugging), "
        "or the address of a dask scheduler, e.g. tcp://10.0.0.5:8786",
    )
    sp.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="auto (default): a worker with a CUDA GPU uses it (torchvision), others the CPU; "
        "cuda: GPU only, tasks go only to workers with a GPU resource; cpu: never the GPU",
    )
    sp.add_argument(
        "--backend",
        choices=["auto", "opencv", "torchvision"],
        default="auto",
        help="auto (default): OpenCV kernels on CPU, torchvision v2 on CUDA; torchvision also runs on CPU tensors (slow; for checks)",
    )
    sp.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="fail: stop at a bad source image (default); skip: skip it and report it",
    )
    sp.add_argument("--chunk-size", type=int, help="images per dask task (default: 4-64, by job size)")
    sp.add_argument(
        "--preview", type=int, metavar="N", help="write a PNG grid of N originals vs augmented and exit"
    )
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--json", action="store_true", help="print the job summary as JSON")

    sp = add("trainers", cmd_trainers, "installed trainer plugins, their tasks, models and options")
    sp.add_argument("--json", action="store_true", help="print JSON (with every option's schema)")

    sp = add(
        "train",
        cmd_train,
        "train a classifier or detector on a store (trainer plugins)",
        "Train with a trainer plugin (see `dataforge trainers`). Options come from --config (YAML/JSON) "
        "and --set KEY=VALUE; the resolved config is saved in the run directory with best.pt, last.pt, "
        "history.json and tensorboard/ logs.\n\n"
        "examples:\n"
        "  dataforge train ./pets --trainer torchvision-detector --config train.yaml --out runs/pets-frcnn\n"
        "  dataforge train ./digits --trainer torchvision-classifier --set model=resnet18 --set epochs=20 --out runs/digits\n"
        "  dataforge train ./pets --resume runs/pets-frcnn --set epochs=30     # continue from last.pt\n"
        "  torchrun --nproc_per_node 2 -m dataforge train ./pets --trainer ... --out runs/ddp   # DDP",
    )
    sp.add_argument("store")
    sp.add_argument("--trainer", help="trainer plugin name")
    sp.add_argument("--config", help="YAML or JSON file of options")
    sp.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="an option (repeatable; overrides --config)"
    )
    sp.add_argument("--out", help="new run directory")
    sp.add_argument("--resume", metavar="RUN", help="continue the run in this directory from its last.pt")
    sp.add_argument(
        "--weights", help="local weights file (.pth state dict or dataforge checkpoint) to start from"
    )
    sp.add_argument("--json", action="store_true", help="print the result as JSON")

    sp = add(
        "predict",
        cmd_predict,
        "predict with trained runs on a store's images (COCO results / classification JSON)",
        "examples:\n  dataforge predict runs/pets-frcnn ./pets --split test --out runs/pets-frcnn/predictions.json\n"
        "  dataforge predict runs/a runs/b ./pets --ensemble --out ens.json",
    )
    sp.add_argument(
        "paths", nargs="+", metavar="RUN... STORE", help="run directories (or .pt files), then the store"
    )
    sp.add_argument("--out", required=True, help="predictions file to write")
    sp.add_argument("--split", help="only this split")
    sp.add_argument("--where", help="only the images this filter matches; " + where_help)
    sp.add_argument(
        "--ensemble", action="store_true", help="combine several runs (mean scores; NMS for boxes)"
    )
    sp.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    sp.add_argument("--batch-size", type=int, default=8)
    sp.add_argument("--json", action="store_true")

    sp = add(
        "demo",
        cmd_demo,
        "the whole loop on built-in sample data: import, split, augment, train, predict, evaluate",
    )
    sp.add_argument(
        "dir", nargs="?", default="dataforge-demo", help="where to put everything (default: ./dataforge-demo)"
    )
    sp.add_argument("--quick", action="store_true", help="a shorter training (for a smoke test)")

    sp = add(
        "split",
        cmd_split,
        "assign train/val/test splits by ratio",
        "Assign splits by ratio with a seed. --stratify keeps every category's share close to the ratios "
        "in each split, also for multi-label detection images (iterative stratification).",
    )
    sp.add_argument("store")
    sp.add_argument(
        "--ratios", default="train=0.8,val=0.1,test=0.1", help="NAME=FRACTION,... (default %(default)s)"
    )
    sp.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    sp.add_argument("--stratify", action="store_true", help="stratify by category")
    sp.add_argument("--where", help="only split the images this filter matches; " + where_help)

    sp = add("validate", cmd_validate, "check a store: errors (exit 1) and warnings")
    sp.add_argument("store")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.add_argument("--no-files", action="store_true", help="skip reading the image files")
    sp.add_argument(
        "--max", type=int, default=50, help="print at most this many findings (default %(default)s)"
    )

    sp = add("export", cmd_export, "export a store (or part of it) to another format")
    sp.add_argument("store")
    sp.add_argument("--format", required=True, help="format plugin name (see `dataforge formats`)")
    sp.add_argument("--out", required=True, help="output directory (must be new or empty)")
    sp.add_argument(
        "--category-ids",
        choices=["keep", "contiguous-from-1", "contiguous-from-0"],
        help="COCO: how category ids are numbered in the output (default keep)",
    )
    sp.add_argument("--where", help=where_help)
    sp.add_argument("--split", help="export only this split")
    sp.add_argument("--link", action="store_true", help="hard-link images instead of copying")
    sp.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="format option, e.g. --option coordinates=devkit (VOC)",
    )

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
    sp.add_argument("--where", help=where_help)
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

    ls = sub.add_parser(
        "labelstudio",
        help="push images to and pull annotations from a Label Studio server",
        description="Label Studio round trip. The server URL and API key come from "
        "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (or --url / --api-key).",
    )
    ls_sub = ls.add_subparsers(dest="ls_command", metavar="COMMAND")

    def ls_add(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p2 = ls_sub.add_parser(name, help=help, description=help)
        p2.set_defaults(handler=handler)
        if name != "serve":
            p2.add_argument("store")
            p2.add_argument("--project", required=True, help="project title or id")
            p2.add_argument("--url", help="server URL (default: $LABEL_STUDIO_URL)")
            p2.add_argument(
                "--api-key", help="API key (default: $LABEL_STUDIO_API_KEY; never stored or logged)"
            )
        return p2

    p2 = ls_add(
        "push", cmd_ls_push, "create or reuse a project and push the store's images (and predictions)"
    )
    p2.add_argument("--where", help=where_help)
    p2.add_argument("--predictions", help="COCO results JSON to attach as pre-annotations")
    p2.add_argument(
        "--with-annotations",
        action="store_true",
        help="also push the store's boxes and labels as (ground-truth) annotations",
    )
    p2.add_argument(
        "--document-root",
        help="the server's local-files document root "
        "(default: $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); must contain the store",
    )
    ls_add("pull", cmd_ls_pull, "bring finished annotations back into the store (atomic, incremental)")
    p2 = ls_add("status", cmd_ls_status, "tasks, annotated, skipped and pending, and the last pull")
    p2.add_argument("--json", action="store_true", help="print JSON")
    p2 = ls_add("serve", cmd_ls_serve, "start a local Label Studio for this user (until Ctrl-C)")
    p2.add_argument("--data-dir", default="labelstudio-data", help="where the server keeps its database")
    p2.add_argument(
        "--document-root", default=".", help="folder served as local files; must contain your stores"
    )
    p2.add_argument("--port", type=int, default=8080)

    sp = add("app", cmd_app, "open the FiftyOne App on a FiftyOne dataset (until Ctrl-C)")
    sp.add_argument("name", help="the FiftyOne dataset (as made by `dataforge evaluate ... --fiftyone NAME`)")
    sp.add_argument("--address", default="127.0.0.1", help="address to serve on (default %(default)s)")
    sp.add_argument("--port", type=int, default=5151, help="port to serve on (default %(default)s)")

    sp = add("doctor", cmd_doctor, "check which components work here, with a fix for each that does not")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.add_argument("--only", action="append", metavar="NAME", help="run only this check (repeatable)")

    sp = add("formats", cmd_formats, "list the dataset format plugins and what each can do")
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = add("history", cmd_history, "show the operations that changed a store")
    sp.add_argument("store")
    sp.add_argument("-n", type=int, default=20, help="last N entries (default %(default)s)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except DataforgeError as exc:
        if args.debug:
            raise
        _err(f"error: {exc.message}")
        if exc.hint:
            _err(f"hint: {exc.hint}")
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`dataforge info STORE | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
