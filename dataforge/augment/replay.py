"""Replay one augmented image from its lineage: the source image plus the recorded ops."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataforge.augment.pipeline import Pipeline
from dataforge.augment.sample import augment_sample, label_args
from dataforge.errors import UsageError
from dataforge.keypoints import flip_perms
from dataforge.store.store import Store


@dataclass(frozen=True)
class Replayed:
    """``data``: the encoded file as augment wrote it; ``image``: the pixels before encoding (BGR
    uint8 for the CPU backend, a CHW tensor for torchvision); ``boxes_xyxy``: kept boxes; ``masks``
    ``(N, H, W)`` and ``keypoints`` ``(N, K, 3)`` (a list, one per kept annotation): theirs, when the
    source has any."""

    data: bytes
    image: Any
    boxes_xyxy: np.ndarray
    ops: list[dict[str, Any]]
    masks: np.ndarray | None = None
    keypoints: list[np.ndarray] | None = None


def replay(store_path: str | Path, image_id: int) -> Replayed:
    """Recompute augmented image ``image_id`` of an augmented store from its source and lineage."""
    store = Store.open(store_path)
    meta = store.data.get("dataforge", {}).get("augment")
    img = next((i for i in store.images if i["id"] == image_id), None)
    if img is None:
        raise UsageError(f"{store.root}: no image with id {image_id}")
    lineage = img.get("source") or {}
    if not isinstance(meta, dict) or "ops" not in lineage:
        raise UsageError(
            f"{store.root}: image {image_id} was not made by dataforge augment (no ops in its lineage)"
        )
    pipeline = Pipeline.model_validate(meta["pipeline"])
    source = Store.open(lineage["source_store"])
    src = source.get(int(lineage["source_image_id"]))
    raw = src.path.read_bytes()
    ops = lineage["ops"]
    anns = source.index.anns_by_image.get(src.id, [])  # parallel to src.boxes_xyxy
    labels, spans = label_args(
        anns, src.size_wh, flip_perms(source.data["categories"], pipeline.keypoints.flip_idx)
    )
    out = pipeline.output
    if str(lineage.get("backend", "opencv")).startswith("torchvision"):
        from dataforge.augment import gpu

        device = "cuda" if lineage["backend"] == "torchvision-cuda" else "cpu"
        tensor = gpu.decode_batch([raw], gpu.resolve_device(device), names=[src.file_name])[0]
        aug = augment_sample(
            pipeline,
            tensor,
            src.boxes_xyxy,
            src.size_wh,
            key=src.file_name,
            copy=0,
            ops=ops,
            backend="torchvision",
            **labels,
        )
        data = gpu.encode_batch(
            [aug.image], out.format, quality=out.quality, png_compression=out.png_compression
        )[0]
    else:
        from dataforge.augment import cpu

        image = cpu.decode(raw, where=src.file_name)
        aug = augment_sample(
            pipeline, image, src.boxes_xyxy, src.size_wh, key=src.file_name, copy=0, ops=ops, **labels
        )
        data = cpu.encode(aug.image, out.format, quality=out.quality, png_compression=out.png_compression)
    kept = np.flatnonzero(aug.keep)
    kps = None
    if aug.keypoints is not None:
        kps = [aug.keypoints[spans[k][0] : spans[k][1]] for k in kept]
    return Replayed(
        data=data,
        image=aug.image,
        boxes_xyxy=aug.kept_boxes,
        ops=ops,
        masks=None if aug.masks is None else aug.masks[kept],
        keypoints=kps,
    )
