"""``dataforge train`` and ``dataforge predict``: resolve the plugin and config, check the run
directory and categories, call the trainer, write predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dataforge.boxes import xyxy_to_xywh
from dataforge.errors import DataError, UsageError
from dataforge.jsonio import atomic_write_bytes, dumps
from dataforge.training.checkpoint import load_checkpoint
from dataforge.training.config import TrainerConfig, resolve_config
from dataforge.training.contract import Callback, FitContext, FitResult, get_trainer


def train(
    store: str | Path,
    *,
    trainer: str | None,
    out: str | Path,
    config_file: str | Path | None = None,
    sets: list[str] | None = None,
    resume: bool = False,
    weights: str | None = None,
    callbacks: list[Callback] | None = None,
) -> FitResult:
    """Train ``trainer`` on ``store`` into run directory ``out`` (or continue it with ``resume``)."""
    from dataforge.store import Store
    from dataforge.training.data import category_table
    from dataforge.training.loop import dump_config

    run_dir = Path(out)
    s = Store.open(store)
    categories = category_table(s)
    if not categories:
        raise UsageError(
            f"{store}: the store has no categories to train on", hint="import a labelled dataset first"
        )
    resumed: dict[str, Any] | None = None
    if resume:
        resumed = load_checkpoint(run_dir / "last.pt") if (run_dir / "last.pt").exists() else None
        if resumed is None:
            raise UsageError(
                f"--resume {run_dir}: no last.pt there to continue from", hint="start a new run with --out"
            )
        trainer = trainer or resumed["trainer"]
        if trainer != resumed["trainer"]:
            raise UsageError(
                f"--resume {run_dir}: the run used trainer {resumed['trainer']!r}, not {trainer!r}"
            )
        cls = get_trainer(trainer)
        config = resolve_config(
            cls.config, config_file, sets or [], extra={"weights": weights}, base=dict(resumed["config"])
        )
        _check_categories(resumed["categories"], categories, what=f"the run in {run_dir}", store=str(store))
        categories = resumed["categories"]
    else:
        if not trainer:
            raise UsageError("--trainer is required (see `dataforge trainers`)")
        cls = get_trainer(trainer)
        if run_dir.exists() and any((run_dir / n).exists() for n in ("last.pt", "best.pt")):
            raise UsageError(
                f"{run_dir}: already holds a training run",
                hint=f"continue it with `dataforge train {store} --resume {run_dir}`, or choose another --out",
            )
        config = resolve_config(cls.config, config_file, sets or [], extra={"weights": weights})
    if config.model not in cls.models and cls.models:
        raise UsageError(
            f"trainer {trainer}: unknown model {config.model!r} (available: {', '.join(cls.models)})",
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(run_dir, cls.name, config, categories)
    ctx = FitContext(store=Path(store), run_dir=run_dir, config=config, categories=categories, resume=resumed)
    return cls().fit(ctx, callbacks or [])


def _check_categories(
    model_cats: list[dict[str, Any]], store_cats: list[dict[str, Any]], *, what: str, store: str
) -> None:
    names = {c["name"] for c in model_cats}
    missing = [c["name"] for c in store_cats if c["name"] not in names]
    if missing:
        raise DataError(
            f"{store}: categories {', '.join(repr(m) for m in missing)} are missing from the checkpoint of {what} "
            f"(it knows {', '.join(sorted(names))})",
            hint="train a new run on this store (the model has no outputs for them)",
        )


def _model_to_store_ids(checkpoint: dict[str, Any], store: Any, source: str) -> dict[int, int]:
    """Checkpoint category id -> the store's id for the same name."""
    store_ids = {c.name: c.id for c in store.categories}
    missing = [c["name"] for c in checkpoint["categories"] if c["name"] not in store_ids]
    if missing:
        raise DataError(
            f"{source}: the model predicts categories {', '.join(repr(m) for m in missing)}, which the store "
            f"{store.root} does not have",
            hint="predict on a store with the same categories (import them, or train on this store)",
        )
    return {int(c["id"]): store_ids[c["name"]] for c in checkpoint["categories"]}


def predict(
    runs: list[str | Path],
    store: str | Path,
    *,
    out: str | Path,
    split: str | None = None,
    where: str | None = None,
    ensemble: bool = False,
    device: str = "auto",
    batch_size: int = 8,
    iou: float = 0.55,
) -> dict[str, Any]:
    """Predictions of one run (or an ensemble of several) for the selected images, written to ``out``."""
    from dataforge.store import Store

    if len(runs) > 1 and not ensemble:
        raise UsageError(f"{len(runs)} runs given: pass --ensemble to combine them, or predict with one run")
    s = Store.open(store)
    selected = s.select(where, split=split)
    if not selected:
        raise UsageError(f"{store}: no images match (split {split!r}, where {where!r})")
    records = [s.record(img) for img in selected]
    all_preds: list[list[dict[str, Any]]] = []
    tasks = set()
    for run in runs:
        ckpt = load_checkpoint(run)
        tasks.add(ckpt["task"])
        id_map = _model_to_store_ids(ckpt, s, str(run))
        cls = get_trainer(ckpt["trainer"])
        preds = cls().predict(ckpt, records, device=device, batch_size=batch_size)
        for p in preds:
            if "category_id" in p:
                p["category_id"] = id_map[int(p["category_id"])]
        all_preds.append(preds)
    if len(tasks) > 1:
        raise UsageError(f"an ensemble needs runs of one task, not {' and '.join(sorted(tasks))}")
    task = tasks.pop()
    if task == "segmentation" and len(all_preds) > 1:
        raise UsageError(
            "--ensemble combines classification, detection or regression runs; segmentation runs "
            "predict one at a time"
        )
    if task == "classification":
        result = _ensemble_classification(all_preds, {c.name: c.id for c in s.categories})
    elif task == "regression" and len(all_preds) > 1:
        result = _ensemble_points(all_preds)
    else:
        result = all_preds[0] if len(all_preds) == 1 else _ensemble_detection(all_preds, iou)
    atomic_write_bytes(Path(out), dumps(result, indent=True))
    return {
        "task": task,
        "images": len(records),
        "predictions": len(result),
        "runs": [str(r) for r in runs],
        "out": str(out),
    }


def _ensemble_classification(
    all_preds: list[list[dict[str, Any]]], ids: dict[str, int]
) -> list[dict[str, Any]]:
    """Mean of the models' class probabilities; the top class becomes ``category_id``."""
    by_image: dict[int, dict[str, float]] = {}
    for preds in all_preds:
        for p in preds:
            acc = by_image.setdefault(p["image_id"], {})
            for name, v in p["scores"].items():
                acc[name] = acc.get(name, 0.0) + v / len(all_preds)
    out = []
    for iid, scores in by_image.items():
        top = max(scores, key=lambda k: scores[k])
        out.append({"image_id": iid, "category_id": ids[top], "score": scores[top], "scores": scores})
    return out


def _ensemble_points(all_preds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The mean of the models' points, per image and category."""
    sums: dict[tuple[int, int], list[Any]] = {}
    for preds in all_preds:
        for p in preds:
            acc = sums.setdefault((p["image_id"], p["category_id"]), [0, [0.0] * len(p["keypoints"])])
            acc[0] += 1
            acc[1] = [a + b for a, b in zip(acc[1], p["keypoints"], strict=True)]
    return [
        {"image_id": iid, "category_id": cid, "keypoints": [round(v / n, 3) for v in total]}
        for (iid, cid), (n, total) in sums.items()
    ]


def _ensemble_detection(all_preds: list[list[dict[str, Any]]], iou: float) -> list[dict[str, Any]]:
    """Union of the models' boxes, then class-wise NMS at ``iou``; a kept box's score is the mean over
    models of the best overlapping score (0 for a model that did not find it)."""
    import torch
    from torchvision.ops import batched_nms, box_iou

    flat = [(m, p) for m, preds in enumerate(all_preds) for p in preds]
    out: list[dict[str, Any]] = []
    by_image: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for m, p in flat:
        by_image.setdefault(p["image_id"], []).append((m, p))
    for iid, items in by_image.items():
        boxes = torch.tensor(
            [
                [p["bbox"][0], p["bbox"][1], p["bbox"][0] + p["bbox"][2], p["bbox"][1] + p["bbox"][3]]
                for _, p in items
            ],
            dtype=torch.float32,
        )
        scores = torch.tensor([p["score"] for _, p in items])
        cats = torch.tensor([p["category_id"] for _, p in items])
        models = torch.tensor([m for m, _ in items])
        keep = batched_nms(boxes, scores, cats, iou)
        ious = box_iou(boxes[keep], boxes)
        for row, k in enumerate(keep.tolist()):
            same = (ious[row] >= iou) & (cats == cats[k])
            per_model = [
                float(scores[same & (models == m)].max()) if bool((same & (models == m)).any()) else 0.0
                for m in range(len(all_preds))
            ]
            out.append(
                {
                    "image_id": iid,
                    "category_id": int(cats[k]),
                    "bbox": xyxy_to_xywh(boxes[k]).tolist(),
                    "score": sum(per_model) / len(per_model),
                }
            )
    return out


__all__ = ["TrainerConfig", "predict", "train"]
