"""Training commands: trainers, train, predict, demo."""

from __future__ import annotations

import argparse

from dataforge.cli.args import WHERE_HELP, Commands
from dataforge.cli.render import out, print_json


def cmd_trainers(a: argparse.Namespace) -> int:
    from dataforge.api import trainers

    rows = trainers()
    if a.json:
        print_json(rows)
        return 0
    if not rows:
        out("no trainer plugins installed (./setup.sh installs the first-party ones from plugins/)")
        return 0
    for r in rows:
        which = "lowest" if r.get("metric_mode") == "min" else "highest"
        out(
            f"{r['name']}  [{r['task']}]  from {r['distribution']}; best checkpoint: {which} val {r['metric']}"
        )
        out(f"  models: {', '.join(r['models'])}")
        opts = ", ".join(f"{k}={v.get('default')!r}" for k, v in r["options"].items() if "default" in v)
        out(f"  options (--set KEY=VALUE): {opts}\n")
    return 0


def add_trainers(add: Commands) -> None:
    sp = add("trainers", cmd_trainers, "installed trainer plugins, their tasks, models and options")
    sp.add_argument("--json", action="store_true", help="print JSON (with every option's schema)")


def cmd_train(a: argparse.Namespace) -> int:
    from dataforge.api import train

    res = train(
        a.store,
        trainer=a.trainer,
        out=a.resume or a.out,
        config_file=a.config,
        sets=a.set or [],
        resume=bool(a.resume),
        weights=a.weights,
    )
    if res.rank != 0:
        return 0  # under torchrun rank 0 reports (it alone validates and writes)
    if a.json:
        print_json({**res.__dict__, "best": str(res.best), "last": str(res.last)})
        return 0
    for h in res.history:
        out("  " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in h.items()))
    best = f"{res.best_metric:.4f}" if res.best_metric is not None else "n/a (no val split)"
    stop = " (stopped early)" if res.stopped_early else ""
    out(
        f"trained {res.epochs} epochs, {res.steps} steps in {res.seconds:.1f} s{stop}; best val {res.metric_name} {best}\n"
        f"checkpoints: {res.best} (best), {res.last} (last); curves: tensorboard --logdir {res.best.parent if res.best else ''}"
    )
    return 0


def add_train(add: Commands) -> None:
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


def cmd_predict(a: argparse.Namespace) -> int:
    from dataforge.api import predict

    *runs, store = a.paths
    res = predict(
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
        print_json({**res.__dict__, "out": str(res.out)})
        return 0
    how = f"an ensemble of {len(runs)} runs" if len(runs) > 1 else runs[0]
    out(f"{res.predictions} {res.task} predictions for {res.images} images from {how} -> {res.out}")
    return 0


def add_predict(add: Commands) -> None:
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
    sp.add_argument("--where", help="only the images this filter matches; " + WHERE_HELP)
    sp.add_argument(
        "--ensemble", action="store_true", help="combine several runs (mean scores; NMS for boxes)"
    )
    sp.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    sp.add_argument("--batch-size", type=int, default=8)
    sp.add_argument("--json", action="store_true")


def cmd_demo(a: argparse.Namespace) -> int:
    from dataforge.api import demo

    demo(a.dir, quick=a.quick, task=a.task, echo=out)
    return 0


def add_demo(add: Commands) -> None:
    sp = add(
        "demo",
        cmd_demo,
        "the whole loop on built-in sample data: import, split, augment, train, predict, evaluate",
    )
    sp.add_argument(
        "dir", nargs="?", default="dataforge-demo", help="where to put everything (default: ./dataforge-demo)"
    )
    sp.add_argument("--quick", action="store_true", help="a shorter training (for a smoke test)")
    sp.add_argument(
        "--task",
        choices=["detection", "segmentation", "keypoints"],
        default="detection",
        help="the loop for boxes (a detector, mAP), semantic segmentation (a segmenter, mIoU) or "
        'keypoints ("where\'s my nose": a point regressor, pixel error and PCK)',
    )
