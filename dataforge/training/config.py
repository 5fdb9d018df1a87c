"""Training configuration: the fields every trainer shares. Plugins subclass :class:`TrainerConfig`.

A config comes from a YAML/JSON file (``--config``) overlaid with ``--set key=value``; the
resolved config is saved as ``config.json`` in the run directory and inside every checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dataforge.errors import UsageError


class TrainerConfig(BaseModel):
    """Options every trainer understands. Learning rates are for ``base_batch_size`` images per
    step: the effective rate follows the linear scaling rule, ``lr * batch_size * world_size /
    base_batch_size`` (Goyal et al., 2017)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="architecture name (see `dataforge trainers`)")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=1, description="images per step per process")
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0, description="learning rate at base_batch_size")
    base_batch_size: int = Field(16, ge=1, description="the batch size lr is meant for (linear scaling rule)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0, description="linear warmup from lr/100, in epochs")
    step_epochs: int = Field(
        10, ge=1, description="step schedule: multiply lr by gamma every this many epochs"
    )
    gamma: float = Field(0.1, gt=0, le=1)
    early_stopping: int | None = Field(
        None, ge=1, description="stop after this many epochs without a better val metric"
    )
    seed: int = 0
    deterministic: bool = Field(
        True,
        description="torch.use_deterministic_algorithms for the run (ops without a deterministic kernel warn)",
    )
    shuffle: bool = Field(True, description="shuffle the training images every epoch")
    amp: bool = Field(True, description="mixed precision (CUDA only; ignored on CPU)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    weights: str | None = Field(None, description="local weights file (.pth) to start from; no downloads")
    freeze_backbone: bool = False
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: loss weights ~ 1/frequency"
    )
    pipeline: str | None = Field(
        None, description="augmentation pipeline file applied on the fly to training images"
    )
    train_split: str = "train"
    val_split: str | None = "val"
    workers: int = Field(0, ge=0, description="DataLoader worker processes")
    log_images: int = Field(4, ge=0, description="validation images with predictions logged to TensorBoard")
    max_steps: int | None = Field(
        None, ge=1, description="stop after this many steps (quick runs, benchmarks)"
    )
    record_sample_ids: bool = Field(
        False, description="write the image ids each process trained on (debugging DDP)"
    )

    def effective_lr(self, world_size: int = 1) -> float:
        return self.lr * self.batch_size * world_size / self.base_batch_size


#: options that name files; relative ones in a config file are resolved against the file's folder
PATH_OPTIONS = ("pipeline", "weights")


def _coerce(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def resolve_config(
    config_cls: type[TrainerConfig],
    file: str | Path | None,
    overrides: list[str],
    extra: dict[str, Any] | None = None,
    *,
    base: dict[str, Any] | None = None,
) -> TrainerConfig:
    """``base`` (a resumed run's config), then the file, then ``--set key=value`` overrides (values
    parsed as JSON when they are), then the non-None values of ``extra``."""
    doc: dict[str, Any] = dict(base or {})
    source = "--set"
    if file:
        path = Path(file)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"{path}: no such config file") from None
        import yaml

        try:
            loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise UsageError(f"{path}: malformed config: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UsageError(f"{path}: a training config is a mapping of option: value")
        loaded = dict(loaded or {})
        for key in PATH_OPTIONS:  # paths in a config file are relative to the file
            value = loaded.get(key)
            if isinstance(value, str) and not Path(value).is_absolute():
                loaded[key] = str(path.parent / value)
        doc.update(loaded)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=20")
        doc[key.strip()] = _coerce(value.strip())
    doc.update({k: v for k, v in (extra or {}).items() if v is not None})
    try:
        return config_cls.model_validate(doc)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors()[:5]:
            field = ".".join(str(x) for x in err["loc"]) or "config"
            msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            msgs.append(f"{field}: {msg}")
        raise UsageError(
            f"{source}: invalid training config: " + "; ".join(msgs),
            hint="`dataforge trainers --json` lists every option of every trainer",
        ) from None
