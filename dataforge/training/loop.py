"""``TorchTrainer``: the training loop trainers share, around ``build_model``, ``loss`` and ``infer``.

What it does for a plugin: seeds, device choice, DataLoaders over the store (the pipeline's CPU
backend in the workers), SGD/Adam/AdamW with weight decay, warmup then cosine or step schedules
(the linear scaling rule for the batch size), mixed precision on CUDA, frozen backbones, class
weights, a progress bar per epoch, TensorBoard (losses, learning rate, validation metrics, images
with predicted boxes), best/last checkpoints, resume, early stopping, and DistributedDataParallel
under ``torchrun`` (rank 0 writes; each rank sees a disjoint shard of the data).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dataforge import runtime
from dataforge.boxes import xyxy_to_xywh
from dataforge.errors import ComponentError, DataforgeError, UsageError
from dataforge.jsonio import write_json
from dataforge.progress import ProgressBar
from dataforge.training.checkpoint import save_checkpoint
from dataforge.training.config import TrainerConfig
from dataforge.training.contract import Callback, FitContext, FitResult, Trainer
from dataforge.training.data import (
    StoreDataset,
    collate_classification,
    collate_detection,
    load_pipeline_dict,
    samples,
    worker_count,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_device(device: str) -> str:
    return runtime.resolve_device(
        device, option="device", hint="use --set device=cpu (or auto), or run on a machine with a GPU"
    )


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(on: bool, device: str) -> Iterator[None]:
    """torch's deterministic kernels for one run, and the process's previous setting back afterwards.

    On CPU every op the first-party trainers use has a deterministic kernel. On CUDA, cuBLAS needs a
    fixed workspace (set here when CUDA is not yet initialised) and cuDNN autotuning is off; ops with
    no deterministic CUDA kernel (e.g. some scatter/index backward passes) warn instead of failing.
    """
    import torch

    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    cudnn_before = torch.backends.cudnn.benchmark
    if on and device.startswith("cuda") and not torch.cuda.is_initialized():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)
    if on:
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = cudnn_before


def lr_at(config: TrainerConfig, step: int, steps_per_epoch: int, world_size: int) -> float:
    """The learning rate of ``step`` (0-based): linear warmup from lr/100, then the schedule."""
    base = config.effective_lr(world_size)
    total = max(1, config.epochs * steps_per_epoch)
    warm = int(config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return base * (0.01 + 0.99 * step / warm)
    if config.schedule == "cosine":
        t = (step - warm) / max(1, total - warm)
        return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    if config.schedule == "step":
        return base * config.gamma ** ((step // steps_per_epoch) // config.step_epochs)
    return base


class _Dist:
    """torch.distributed as torchrun sets it up (WORLD_SIZE/RANK/LOCAL_RANK), or a single process."""

    def __init__(self, device: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = device
        if self.world > 1:
            import torch
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
            if device.startswith("cuda"):
                torch.cuda.set_device(self.local_rank)
                self.device = f"cuda:{self.local_rank}"

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


class TorchTrainer(Trainer):
    """Subclass and implement :meth:`build_model`, :meth:`loss`, :meth:`infer` (and :meth:`validate`).
    ``self.run_config`` holds the config of the run in progress."""

    run_config: TrainerConfig

    def input_size(self, config: TrainerConfig) -> int | None:
        """Square size images are resized to before the model (classifiers); None: the model resizes."""
        return None

    # -- what a plugin implements ----------------------------------------------------------
    @abstractmethod
    def build_model(self, config: TrainerConfig, num_classes: int) -> Any:
        """A torch.nn.Module for ``num_classes`` categories (detectors add their own background)."""

    @abstractmethod
    def loss(
        self, model: Any, images: Any, targets: Any, class_weights: Any | None
    ) -> tuple[Any, dict[str, float]]:
        """Training loss (a scalar tensor) and the numbers to log."""

    @abstractmethod
    def infer(self, model: Any, images: Any) -> list[dict[str, Any]]:
        """Eval-mode outputs per image: classification ``{"scores": (K,) tensor}``; detection
        ``{"boxes": (N, 4) xyxy, "labels": (N,) model index + 1, "scores": (N,)}``."""

    def backbone(self, model: Any) -> Any | None:
        """The sub-module ``freeze_backbone`` freezes (None: the trainer has no such notion)."""
        return getattr(model, "backbone", None)

    def validate(
        self, model: Any, loader: Any, device: str, categories: list[dict[str, Any]]
    ) -> dict[str, float]:
        """Validation metrics; must include :attr:`metric` (higher is better)."""
        raise NotImplementedError

    # -- the loop ---------------------------------------------------------------------------
    def _loader(
        self, ds: StoreDataset, config: TrainerConfig, *, shuffle: bool, dist: _Dist | None, seed: int
    ) -> Any:
        """``dist``: shard the data across processes (training); None: every process reads all of it."""
        import torch
        from torch.utils.data import DataLoader, DistributedSampler

        collate = collate_classification if self.task == "classification" else collate_detection
        sampler: Any = None
        dataset: Any = ds  # a map-style dataset (duck-typed: __len__ and __getitem__)
        if dist is not None and dist.world > 1:
            sampler = DistributedSampler(
                dataset, num_replicas=dist.world, rank=dist.rank, shuffle=shuffle, seed=seed
            )
        g = torch.Generator()
        g.manual_seed(seed)
        return DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=worker_count(config.workers),
            collate_fn=collate,
            generator=g,
            drop_last=False,
        )

    def _to(self, images: Any, targets: Any, device: str) -> tuple[Any, Any]:
        if isinstance(images, list):
            images = [im.to(device, non_blocking=True) for im in images]
            targets = [{k: (v.to(device) if hasattr(v, "to") else v) for k, v in t.items()} for t in targets]
        else:
            images = images.to(device, non_blocking=True)
            targets = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in targets.items()}
        return images, targets

    def _class_weights(self, items: list[Any], k: int, config: TrainerConfig, device: str) -> Any | None:
        if config.class_weights == "none":
            return None
        import torch

        counts = np.bincount([lab for s in items for lab in s.labels], minlength=k).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / (k * np.maximum(counts, 1)), 0.0)
        return torch.as_tensor(w, dtype=torch.float32, device=device)

    def fit(self, ctx: FitContext, callbacks: list[Callback]) -> FitResult:
        import torch

        from dataforge.store import Store

        t0 = time.perf_counter()
        config = ctx.config
        self.run_config = config
        device = resolve_device(config.device)
        dist = _Dist(device)
        device = dist.device
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(deterministic_algorithms(config.deterministic, device))
            seed_everything(config.seed)
            store = Store.open(ctx.store)
            k = len(ctx.categories)
            train_items = samples(store, self.task, config.train_split, ctx.categories)
            val_items = (
                samples(store, self.task, config.val_split, ctx.categories) if config.val_split else []
            )
            pipeline = load_pipeline_dict(config.pipeline)
            train_ds = StoreDataset(
                train_items, self.task, pipeline=pipeline, resize_to=self.input_size(config)
            )
            val_ds = StoreDataset(val_items, self.task, resize_to=self.input_size(config))
            train_loader = self._loader(train_ds, config, shuffle=config.shuffle, dist=dist, seed=config.seed)
            val_loader = (
                self._loader(val_ds, config, shuffle=False, dist=None, seed=config.seed)
                if val_items
                else None
            )

            model = self.build_model(config, k)
            if config.weights:
                _load_weights(model, config.weights)
            if config.freeze_backbone:
                bb = self.backbone(model)
                if bb is None:
                    raise UsageError(f"trainer {self.name}: model {config.model} has no backbone to freeze")
                for p in bb.parameters():
                    p.requires_grad_(False)
            model.to(device)
            params = [p for p in model.parameters() if p.requires_grad]
            opt = _optimizer(config, params, dist.world)
            start_epoch, step, best, history = 0, 0, None, []
            if ctx.resume is not None:
                model.load_state_dict(ctx.resume["model"])
                if "optimizer" in ctx.resume:
                    opt.load_state_dict(ctx.resume["optimizer"])
                start_epoch = int(ctx.resume["epoch"]) + 1
                step = int(ctx.resume["step"])
                best = ctx.resume.get("best")
                history = list(ctx.resume.get("history", []))
            train_model = model
            if dist.world > 1:
                from torch.nn.parallel import DistributedDataParallel

                train_model = DistributedDataParallel(
                    model, device_ids=[dist.local_rank] if device.startswith("cuda") else None
                )
            use_amp = config.amp and device.startswith("cuda")
            scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
            weights = self._class_weights(train_items, k, config, device)
            writer = _writer(ctx.run_dir) if dist.main else None
            for cb in callbacks:
                cb.on_fit_start(ctx)
            steps_per_epoch = max(1, len(train_loader))
            # epochs since the best one (its first occurrence: only a strictly better metric counts),
            # so early stopping carries on across --resume
            vals = [h.get(f"val_{self.metric}") for h in history]
            stale = len(vals) - 1 - vals.index(best) if best in vals else 0
            stopped = False
            seen: list[int] = []
            epoch = start_epoch - 1
            for epoch in range(start_epoch, config.epochs):
                train_ds.set_epoch(epoch)
                if dist.world > 1:
                    train_loader.sampler.set_epoch(epoch)
                for cb in callbacks:
                    cb.on_epoch_start(epoch)
                train_model.train()
                bar = ProgressBar(
                    f"epoch {epoch + 1}/{config.epochs}",
                    unit="batch",
                    total=len(train_loader),
                    enabled=dist.main,
                    leave=False,
                )
                sums: dict[str, float] = {}
                n_batches = 0
                for images, targets in train_loader:
                    if config.record_sample_ids:
                        ids = (
                            targets["image_id"]
                            if isinstance(targets, dict)
                            else [t["image_id"] for t in targets]
                        )
                        seen.extend(int(i) for i in ids)
                    images, targets = self._to(images, targets, device)
                    lr = lr_at(config, step, steps_per_epoch, dist.world)
                    for g in opt.param_groups:
                        g["lr"] = lr
                    with torch.autocast(device_type="cuda", enabled=use_amp):
                        loss, logs = self.loss(train_model, images, targets, weights)
                    if not torch.isfinite(loss.detach()):
                        raise DataforgeError(
                            f"training diverged at step {step} (loss {float(loss)})",
                            hint="lower the learning rate (--set lr=...) or add warmup (--set warmup_epochs=1)",
                        )
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    step += 1
                    n_batches += 1
                    logs = {"loss": float(loss.detach()), **logs, "lr": lr}
                    for kk, v in logs.items():
                        sums[kk] = sums.get(kk, 0.0) + v
                    if writer is not None:
                        for kk, v in logs.items():
                            writer.add_scalar(f"train/{kk}", v, step)
                    for cb in callbacks:
                        cb.on_step_end(step, logs)
                    bar.advance(1, loss=logs["loss"])
                    if config.max_steps and step >= config.max_steps:
                        break
                bar.close()
                ep_logs = {f"train_{kk}": v / max(1, n_batches) for kk, v in sums.items()}
                ep_logs["epoch"] = epoch + 1
                metric_value = None
                if val_loader is not None and dist.main:
                    model.eval()
                    with torch.no_grad():
                        metrics = self.validate(model, val_loader, device, ctx.categories)
                    ep_logs.update({f"val_{kk}": v for kk, v in metrics.items()})
                    metric_value = metrics.get(self.metric)
                    if writer is not None:
                        for kk, v in metrics.items():
                            writer.add_scalar(f"val/{kk}", v, epoch + 1)
                        self._log_images(
                            writer, model, val_ds, device, ctx.categories, config.log_images, epoch + 1
                        )
                history.append(ep_logs)
                improved = metric_value is not None and (best is None or metric_value > best)
                if improved:
                    best, stale = metric_value, 0
                else:
                    stale += 1
                if dist.main:
                    payload = {
                        "trainer": self.name,
                        "task": self.task,
                        "config": config.model_dump(mode="json"),
                        "categories": ctx.categories,
                        "model": model.state_dict(),
                        "epoch": epoch,
                        "step": step,
                        "metrics": ep_logs,
                        "best": best,
                        "metric_name": self.metric,
                        "history": history,
                    }
                    save_checkpoint(ctx.run_dir / "last.pt", {**payload, "optimizer": opt.state_dict()})
                    if improved or val_loader is None:
                        save_checkpoint(ctx.run_dir / "best.pt", payload)
                    write_json(ctx.run_dir / "history.json", history)
                for cb in callbacks:
                    cb.on_epoch_end(epoch, ep_logs)
                dist.barrier()
                if config.max_steps and step >= config.max_steps:
                    break
                if config.early_stopping and val_loader is not None and stale >= config.early_stopping:
                    stopped = True
                    break
            if config.record_sample_ids:
                write_json(ctx.run_dir / f"samples-rank{dist.rank}.json", seen)
            if writer is not None:
                writer.close()
            result = FitResult(
                epochs=epoch + 1,
                steps=step,
                best_metric=best,
                metric_name=self.metric,
                history=history,
                stopped_early=stopped,
                best=ctx.run_dir / "best.pt",
                last=ctx.run_dir / "last.pt",
                seconds=time.perf_counter() - t0,
            )
            for cb in callbacks:
                cb.on_fit_end(result)
            return result
        except torch.OutOfMemoryError:
            raise ComponentError(
                f"out of memory with batch_size {config.batch_size} on {device}",
                hint="lower --set batch_size=..., or use a smaller model",
            ) from None
        finally:
            stack.close()
            dist.close()

    def _log_images(
        self,
        writer: Any,
        model: Any,
        ds: StoreDataset,
        device: str,
        categories: list[dict[str, Any]],
        n: int,
        epoch: int,
    ) -> None:
        if n <= 0 or len(ds) == 0 or self.task != "detection":
            return
        import torch
        from torchvision.utils import draw_bounding_boxes

        for i in range(min(n, len(ds))):
            img, _ = ds[i]
            with torch.no_grad():
                out = self.infer(model, [img.to(device)])[0]
            keep = out["scores"] >= 0.3
            drawn = (img * 255).to(torch.uint8)
            if bool(keep.any()):  # (torchvision warns when asked to draw no boxes)
                names = [categories[int(c) - 1]["name"] for c in out["labels"][keep].tolist()]
                drawn = draw_bounding_boxes(drawn, out["boxes"][keep].cpu(), labels=names, colors="red")
            writer.add_image(f"val/predictions/{i}", drawn, epoch)

    def predict(
        self, checkpoint: dict[str, Any], images: list[Any], *, device: str = "auto", batch_size: int = 8
    ) -> list[dict[str, Any]]:
        import torch

        from dataforge.training.data import Sample

        config = self.config.model_validate(checkpoint["config"])
        self.run_config = config
        dev = resolve_device(device)
        categories = checkpoint["categories"]
        model = self.build_model(config, len(categories))
        model.load_state_dict(checkpoint["model"])
        model.to(dev).eval()
        items = [Sample(r.id, str(r.path), r.file_name, r.width, r.height, (), (0,)) for r in images]
        ds = StoreDataset(items, "classification", resize_to=self.input_size(config))
        out: list[dict[str, Any]] = []
        with torch.no_grad():
            for start in range(0, len(ds), batch_size):
                batch = [ds[i] for i in range(start, min(len(ds), start + batch_size))]
                tensors = [b[0].to(dev) for b in batch]
                results = self.infer(
                    model, torch.stack(tensors) if self.task == "classification" else tensors
                )
                for (_, tgt), res in zip(batch, results, strict=True):
                    iid = tgt["image_id"]
                    if self.task == "classification":
                        probs = res["scores"].float().cpu().tolist()
                        out.append(
                            {
                                "image_id": iid,
                                "scores": {
                                    c["name"]: float(p) for c, p in zip(categories, probs, strict=True)
                                },
                            }
                        )
                    else:
                        for box, lab, sc in zip(
                            xyxy_to_xywh(res["boxes"].cpu().numpy().reshape(-1, 4)).tolist(),
                            res["labels"].cpu().tolist(),
                            res["scores"].cpu().tolist(),
                            strict=True,
                        ):
                            out.append(
                                {
                                    "image_id": iid,
                                    "category_id": int(categories[int(lab) - 1]["id"]),
                                    "bbox": box,
                                    "score": float(sc),
                                }
                            )
        return out


def _optimizer(config: TrainerConfig, params: list[Any], world: int) -> Any:
    import torch

    lr = config.effective_lr(world)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=False
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)


def _load_weights(model: Any, path: str) -> None:
    """Start from a local weights file: a state dict, or a dataforge checkpoint. Layers whose shape
    differs (a new head for other classes) keep their fresh initialisation."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise UsageError(
            f"--weights {path}: no such file", hint="pass a local .pth file; dataforge downloads nothing"
        )
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(
            f"--weights {path}: not a readable weights file ({type(exc).__name__}: {exc})"
        ) from None
    if isinstance(state, dict) and state.get("format") == "dataforge-checkpoint":
        state = state["model"]
    if not isinstance(state, dict):
        raise UsageError(f"--weights {path}: expected a state dict (parameter name -> tensor)")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and hasattr(v, "shape") and v.shape == own[k].shape}
    if not usable:
        raise UsageError(
            f"--weights {path}: none of its {len(state)} tensors fit this model",
            hint="is it weights for the same architecture?",
        )
    model.load_state_dict(usable, strict=False)


def _writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is in the "all" extra
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def dump_config(run_dir: Path, trainer: str, config: TrainerConfig, categories: list[dict[str, Any]]) -> None:
    (run_dir).mkdir(parents=True, exist_ok=True)
    write_json(
        run_dir / "config.json",
        {"trainer": trainer, "config": config.model_dump(mode="json"), "categories": categories},
    )
