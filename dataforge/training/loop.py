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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataforge import runtime
from dataforge.boxes import xyxy_to_xywh
from dataforge.errors import ComponentError, DataforgeError, UsageError
from dataforge.jsonio import write_json
from dataforge.progress import ProgressBar
from dataforge.training.callbacks import BestMetric, Checkpoints, FitProgress, TensorBoard
from dataforge.training.config import TrainerConfig
from dataforge.training.contract import Callback, FitContext, FitResult, Trainer
from dataforge.training.data import (
    StoreDataset,
    collate_classification,
    collate_detection,
    collate_regression,
    collate_segmentation,
    keypoint_count,
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

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a decision only rank 0 can make: it validates)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


@dataclass
class _Run:
    """What one :meth:`TorchTrainer.fit` trains with, made by ``_prepare``."""

    config: TrainerConfig
    dist: _Dist
    train_ds: StoreDataset
    val_ds: StoreDataset
    train_loader: Any
    val_loader: Any | None
    model: Any  # the module checkpoints hold and validation runs
    train_model: Any  # the module training steps run: ``model``, or its DistributedDataParallel wrapper
    optimizer: Any
    use_amp: bool
    scaler: Any
    class_weights: Any | None
    start_epoch: int


class TorchTrainer(Trainer):
    """Subclass and implement :meth:`build_model`, :meth:`loss`, :meth:`infer` (and :meth:`validate`).
    ``self.run_config`` holds the config of the run in progress."""

    run_config: TrainerConfig
    #: the run's category table (:func:`~dataforge.training.data.category_table`), set before
    #: :meth:`build_model` is called
    categories: list[dict[str, Any]]

    def input_size(self, config: TrainerConfig) -> int | None:
        """Square size images are resized to before the model (classifiers); None: the model resizes."""
        return None

    def instance_targets(self, config: TrainerConfig) -> frozenset[str]:
        """What a detector learns besides boxes: ``"masks"`` (instance masks), ``"keypoints"``.
        The data loader then carries them, moved with the pixels by the pipeline."""
        return frozenset()

    def outputs(self, categories: list[dict[str, Any]]) -> int:
        """What :meth:`build_model`'s ``num_classes`` is: the number of categories (a regressor:
        the numbers it predicts)."""
        return len(categories)

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

    def embed(self, model: Any, images: Any) -> Any:
        """Eval-mode feature vectors, ``(N, D)``: what the model's last linear layer reads (a
        classifier's pooled features), captured while :meth:`infer` runs. ``dataforge dedupe
        --embeddings`` compares images by them."""
        import torch

        linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        if not linear:
            raise UsageError(f"trainer {self.name!r}: its model has no linear layer to take embeddings from")
        captured: list[Any] = []
        hook = linear[-1].register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
        try:
            self.infer(model, images)
        finally:
            hook.remove()
        return captured[0].flatten(1)

    def embeddings(
        self, checkpoint: dict[str, Any], images: list[Any], *, device: str = "auto", batch_size: int = 32
    ) -> Any:
        """:meth:`embed` of every image averaged with its mirror image's, as a float32 numpy array
        ``(N, D)``, rows in ``images``' order."""
        import numpy as np
        import torch

        model, dev, _items, ds = self.prediction_inputs(checkpoint, images, device)
        rows = []
        with torch.no_grad():
            for start in range(0, len(ds), batch_size):
                batch = torch.stack([ds[i][0] for i in range(start, min(len(ds), start + batch_size))]).to(
                    dev
                )
                # with its mirror image's: a mirrored copy gets the same vector
                both = self.embed(model, batch) + self.embed(model, batch.flip(-1))
                rows.append((both / 2).float().cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    def backbone(self, model: Any) -> Any | None:
        """The sub-module ``freeze_backbone`` freezes (None: the trainer has no such notion)."""
        return getattr(model, "backbone", None)

    def validate(
        self, model: Any, loader: Any, device: str, categories: list[dict[str, Any]]
    ) -> dict[str, float]:
        """Validation metrics; must include :attr:`metric` (better as :attr:`metric_mode` says)."""
        raise NotImplementedError

    # -- the loop ---------------------------------------------------------------------------
    def _loader(
        self, ds: StoreDataset, config: TrainerConfig, *, shuffle: bool, dist: _Dist | None, seed: int
    ) -> Any:
        """``dist``: shard the data across processes (training); None: every process reads all of it."""
        import torch
        from torch.utils.data import DataLoader, DistributedSampler

        collate = {
            "classification": collate_classification,
            "segmentation": collate_segmentation,
            "regression": collate_regression,
        }.get(self.task, collate_detection)
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
        if self.task == "regression":
            raise UsageError(
                f"trainer {self.name}: class_weights=balanced needs classes; regression has none"
            )
        import torch

        if self.task == "segmentation":  # by pixels: each region's area
            from dataforge.masks import area

            counts: np.ndarray = np.zeros(k, dtype=np.float64)
            for s in items:
                for seg, lab in s.regions:
                    counts[lab] += area(seg, s.height, s.width)
        else:
            counts = np.bincount([lab for s in items for lab in s.labels], minlength=k).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / (k * np.maximum(counts, 1)), 0.0)
        return torch.as_tensor(w, dtype=torch.float32, device=device)

    def fit(self, ctx: FitContext, callbacks: list[Callback]) -> FitResult:
        import torch

        t0 = time.perf_counter()
        config = ctx.config
        self.run_config = config
        dist = _Dist(resolve_device(config.device))
        device = dist.device
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(deterministic_algorithms(config.deterministic, device))
            seed_everything(config.seed)
            run = self._prepare(ctx, dist)
            progress = FitProgress.resumed(ctx.resume, self.metric)
            validates = run.val_loader is not None
            hooks: list[Callback] = [
                BestMetric(
                    progress,
                    self.metric,
                    patience=config.early_stopping,
                    validates=validates,
                    lower_is_better=self.metric_mode == "min",
                )
            ]
            if dist.main:
                hooks.append(Checkpoints(self, ctx, run.model, run.optimizer, progress, validates=validates))
                if TensorBoard.available():
                    board = TensorBoard(
                        ctx.run_dir, lambda writer, epoch: self._log_images(writer, run, ctx, epoch)
                    )
                    stack.callback(board.close)
                    hooks.append(board)
            hooks += callbacks
            for cb in hooks:
                cb.on_fit_start(ctx)
            seen: list[int] = []
            stopped = False
            epoch = run.start_epoch - 1
            for epoch in range(run.start_epoch, config.epochs):
                run.train_ds.set_epoch(epoch)
                if dist.world > 1:
                    run.train_loader.sampler.set_epoch(epoch)
                for cb in hooks:
                    cb.on_epoch_start(epoch)
                logs = self._train_epoch(
                    run, progress, epoch, hooks, seen if config.record_sample_ids else None
                )
                if validates and dist.main:
                    run.model.eval()
                    with torch.no_grad():
                        metrics = self.validate(run.model, run.val_loader, device, ctx.categories)
                    logs.update({f"val_{name}": value for name, value in metrics.items()})
                progress.history.append(logs)
                for cb in hooks:
                    cb.on_epoch_end(epoch, logs)
                progress.stop = dist.from_main(progress.stop)  # rank 0 validates, so it decides
                dist.barrier()
                if config.max_steps and progress.step >= config.max_steps:
                    break
                if progress.stop:
                    stopped = True
                    break
            if config.record_sample_ids:
                write_json(ctx.run_dir / f"samples-rank{dist.rank}.json", seen)
            result = FitResult(
                epochs=epoch + 1,
                steps=progress.step,
                best_metric=progress.best,
                metric_name=self.metric,
                history=progress.history,
                stopped_early=stopped,
                best=ctx.run_dir / "best.pt",
                last=ctx.run_dir / "last.pt",
                seconds=time.perf_counter() - t0,
            )
            for cb in hooks:
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

    def _prepare(self, ctx: FitContext, dist: _Dist) -> _Run:
        """Data, loaders, the model (weights, frozen backbone, resumed state, DDP) and its optimizer."""
        import torch

        from dataforge.store import Store

        config, device = ctx.config, dist.device
        store = Store.open(ctx.store)
        pipeline = load_pipeline_dict(config.pipeline)
        flip_idx = (pipeline or {}).get("keypoints", {}).get("flip_idx")
        extra = self.instance_targets(config)
        with_masks, with_keypoints = "masks" in extra, "keypoints" in extra
        train_items = samples(
            store,
            self.task,
            config.train_split,
            ctx.categories,
            flip_idx=flip_idx,
            with_masks=with_masks,
            with_keypoints=with_keypoints,
        )
        val_items = (
            samples(
                store,
                self.task,
                config.val_split,
                ctx.categories,
                with_masks=with_masks,
                with_keypoints=with_keypoints,
            )
            if config.val_split
            else []
        )
        size = self.input_size(config)
        k = keypoint_count(ctx.categories) if with_keypoints else 0
        train_ds = StoreDataset(
            train_items, self.task, pipeline=pipeline, resize_to=size, with_masks=with_masks, keypoint_count=k
        )
        val_ds = StoreDataset(val_items, self.task, resize_to=size, with_masks=with_masks, keypoint_count=k)
        train_loader = self._loader(train_ds, config, shuffle=config.shuffle, dist=dist, seed=config.seed)
        val_loader = (
            self._loader(val_ds, config, shuffle=False, dist=None, seed=config.seed) if val_items else None
        )

        self.categories = ctx.categories
        model = self.build_model(config, self.outputs(ctx.categories))
        if config.weights:
            _load_weights(model, config.weights)
        if config.freeze_backbone:
            bb = self.backbone(model)
            if bb is None:
                raise UsageError(f"trainer {self.name}: model {config.model} has no backbone to freeze")
            for p in bb.parameters():
                p.requires_grad_(False)
        model.to(device)
        optimizer = _optimizer(config, [p for p in model.parameters() if p.requires_grad], dist.world)
        start_epoch = 0
        if ctx.resume is not None:
            model.load_state_dict(ctx.resume["model"])
            if "optimizer" in ctx.resume:
                optimizer.load_state_dict(ctx.resume["optimizer"])
            start_epoch = int(ctx.resume["epoch"]) + 1
        train_model = model
        if dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(
                model, device_ids=[dist.local_rank] if device.startswith("cuda") else None
            )
        use_amp = config.amp and device.startswith("cuda")
        return _Run(
            config=config,
            dist=dist,
            train_ds=train_ds,
            val_ds=val_ds,
            train_loader=train_loader,
            val_loader=val_loader,
            model=model,
            train_model=train_model,
            optimizer=optimizer,
            use_amp=use_amp,
            scaler=torch.amp.GradScaler("cuda", enabled=use_amp),
            class_weights=self._class_weights(train_items, len(ctx.categories), config, device),
            start_epoch=start_epoch,
        )

    def _train_epoch(
        self,
        run: _Run,
        progress: FitProgress,
        epoch: int,
        hooks: list[Callback],
        seen: list[int] | None,
    ) -> dict[str, float]:
        """One pass over the training data (or up to ``max_steps``); the epoch's mean of each logged number."""
        import torch

        config, dist = run.config, run.dist
        run.train_model.train()
        bar = ProgressBar(
            f"epoch {epoch + 1}/{config.epochs}",
            unit="batch",
            total=len(run.train_loader),
            enabled=dist.main,
            leave=False,
        )
        steps_per_epoch = max(1, len(run.train_loader))
        sums: dict[str, float] = {}
        n_batches = 0
        for images, targets in run.train_loader:
            if seen is not None:
                ids = targets["image_id"] if isinstance(targets, dict) else [t["image_id"] for t in targets]
                seen.extend(int(i) for i in ids)
            images, targets = self._to(images, targets, dist.device)
            lr = lr_at(config, progress.step, steps_per_epoch, dist.world)
            for g in run.optimizer.param_groups:
                g["lr"] = lr
            with torch.autocast(device_type="cuda", enabled=run.use_amp):
                loss, logs = self.loss(run.train_model, images, targets, run.class_weights)
            if not torch.isfinite(loss.detach()):
                raise DataforgeError(
                    f"training diverged at step {progress.step} (loss {float(loss)})",
                    hint="lower the learning rate (--set lr=...) or add warmup (--set warmup_epochs=1)",
                )
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
            progress.step += 1
            n_batches += 1
            logs = {"loss": float(loss.detach()), **logs, "lr": lr}
            for name, value in logs.items():
                sums[name] = sums.get(name, 0.0) + value
            for cb in hooks:
                cb.on_step_end(progress.step, logs)
            bar.advance(1, loss=logs["loss"])
            if config.max_steps and progress.step >= config.max_steps:
                break
        bar.close()
        out = {f"train_{name}": total / max(1, n_batches) for name, total in sums.items()}
        out["epoch"] = epoch + 1
        return out

    def _log_images(self, writer: Any, run: _Run, ctx: FitContext, epoch: int) -> None:
        """Validation images with the boxes predicted (score >= 0.3), for TensorBoard (detection)."""
        ds, n = run.val_ds, run.config.log_images
        if run.val_loader is None or n <= 0 or len(ds) == 0 or self.task != "detection":
            return
        import torch
        from torchvision.utils import draw_bounding_boxes

        for i in range(min(n, len(ds))):
            img, _ = ds[i]
            with torch.no_grad():
                out = self.infer(run.model, [img.to(run.dist.device)])[0]
            keep = out["scores"] >= 0.3
            drawn = (img * 255).to(torch.uint8)
            if bool(keep.any()):  # (torchvision warns when asked to draw no boxes)
                names = [ctx.categories[int(c) - 1]["name"] for c in out["labels"][keep].tolist()]
                drawn = draw_bounding_boxes(drawn, out["boxes"][keep].cpu(), labels=names, colors="red")
            writer.add_image(f"val/predictions/{i}", drawn, epoch)

    def prediction_inputs(
        self, checkpoint: dict[str, Any], images: list[Any], device: str
    ) -> tuple[Any, str, list[Any], StoreDataset]:
        """What :meth:`predict` runs on: the checkpoint's model in eval mode on its device, the
        images as samples, and a dataset of them resized as the model was trained."""
        from dataforge.training.data import Sample

        config = self.config.model_validate(checkpoint["config"])
        self.run_config = config
        dev = resolve_device(device)
        self.categories = checkpoint["categories"]
        model = self.build_model(config, self.outputs(checkpoint["categories"]))
        model.load_state_dict(checkpoint["model"])
        model.to(dev).eval()
        items = [Sample(r.id, str(r.path), r.file_name, r.width, r.height, (), (0,)) for r in images]
        return model, dev, items, StoreDataset(items, "classification", resize_to=self.input_size(config))

    def predict(
        self, checkpoint: dict[str, Any], images: list[Any], *, device: str = "auto", batch_size: int = 8
    ) -> list[dict[str, Any]]:
        import torch

        model, dev, _items, ds = self.prediction_inputs(checkpoint, images, device)
        categories = checkpoint["categories"]
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


def dump_config(run_dir: Path, trainer: str, config: TrainerConfig, categories: list[dict[str, Any]]) -> None:
    (run_dir).mkdir(parents=True, exist_ok=True)
    write_json(
        run_dir / "config.json",
        {"trainer": trainer, "config": config.model_dump(mode="json"), "categories": categories},
    )
