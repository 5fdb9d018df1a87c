"""What runs on a dask worker: one chunk of source images in, augmented files and a manifest out.

Workers read source images from the source store and write augmented images straight into the
output store's ``images/`` folder (no image bytes travel through the scheduler). Every file is
written to a temporary name and renamed; when the chunk is done its manifest (the records of
every image it made) lands atomically in ``<out>/.augment/done/``. A chunk killed half-way leaves
no manifest, so a re-run redoes it and overwrites its files with the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataforge.augment.pipeline import Pipeline
from dataforge.augment.sample import Augmented, Backend, augment_sample, label_args
from dataforge.errors import DataforgeError, ImageError

DONE_DIR = "done"


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One source image and the copies of it this chunk makes. Pickles small (no pixels)."""

    image_id: int
    file_name: str
    width: int
    height: int
    boxes_xyxy: list[list[float]]
    #: category_id, iscrowd, segmentation, keypoints and extra fields; parallel to boxes
    annotations: list[dict[str, Any]]
    copies: list[int]
    out_names: list[str]  # parallel to copies


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    source_images_dir: str
    out_root: str
    pipeline: dict[str, Any]
    backend: str  # "auto" | "opencv" | "torchvision"
    device: str  # "auto" | "cpu" | "cuda"
    on_error: str  # "fail" | "skip"
    items: list[SourceItem] = field(default_factory=list)
    #: keypoint category id -> the point permutation a flip applies (left and right swap)
    flip_perms: dict[int, list[int]] = field(default_factory=dict)

    @property
    def units(self) -> int:
        return sum(len(it.copies) for it in self.items)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _read_source(images_dir: str, file_name: str) -> bytes:
    path = os.path.join(images_dir, file_name)
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ImageError(
            f"{file_name}: the source image is missing from the store",
            source=file_name,
            reason="missing-image",
        ) from None
    except OSError as exc:
        raise ImageError(
            f"{file_name}: cannot read the source image: {exc}", source=file_name, reason="unreadable-image"
        ) from None


def _record(
    item: SourceItem,
    copy: int,
    name: str,
    data: bytes,
    aug: Augmented,
    backend: str,
    spans: list[tuple[int, int]],
) -> dict[str, Any]:
    """The manifest record of one augmented image; the driver derives every count from these.
    Masks are written as compressed RLE (exact), keypoints with their new ``num_keypoints``."""
    from dataforge.keypoints import to_coco
    from dataforge.masks import encode_all, has_mask

    kept = np.flatnonzero(aug.keep)
    rles: dict[int, tuple[dict[str, Any], int]] = {}
    if aug.masks is not None:
        with_mask = [int(k) for k in kept if has_mask(item.annotations[k].get("segmentation"))]
        rles = dict(zip(with_mask, zip(*encode_all(aug.masks[with_mask]), strict=True), strict=True))
    anns = []
    for k in kept:
        x0, y0, x1, y1 = (float(v) for v in aug.boxes_xyxy[k])
        ann = {
            **{f: v for f, v in item.annotations[k].items() if f not in ("segmentation", "keypoints")},
            "bbox_xyxy": [x0, y0, x1, y1],
            "visibility": round(float(aug.visibility[k]), 6),
        }
        if int(k) in rles:
            ann["segmentation"], ann["area"] = rles[int(k)]
        if aug.keypoints is not None and spans[k][1] > spans[k][0]:
            ann["keypoints"], ann["num_keypoints"] = to_coco(aug.keypoints[spans[k][0] : spans[k][1]])
        anns.append(ann)
    return {
        "source_image_id": item.image_id,
        "source_file_name": item.file_name,
        "copy": copy,
        "file_name": name,
        "width": aug.size_wh[0],
        "height": aug.size_wh[1],
        "sha256": hashlib.sha256(data).hexdigest(),
        "ops": aug.ops,
        "backend": backend,
        "annotations": anns,
    }


def _copies(
    pipeline: Pipeline, item: SourceItem, image: Any, backend: Backend, flip_perms: dict[int, list[int]]
) -> list[tuple[int, str, Augmented, list[tuple[int, int]]]]:
    """Every copy this chunk makes of one decoded source image: (copy index, file name, result,
    each annotation's keypoint slice)."""
    size = (item.width, item.height)
    labels, spans = label_args(item.annotations, size, flip_perms)
    return [
        (
            copy,
            name,
            augment_sample(
                pipeline,
                image,
                item.boxes_xyxy,
                size,
                key=item.file_name,
                copy=copy,
                backend=backend,
                **labels,
            ),
            spans,
        )
        for copy, name in zip(item.copies, item.out_names, strict=True)
    ]


def worker_has_cuda() -> bool:
    """Cheap first: no NVIDIA driver means no CUDA, without paying for ``import torch``."""
    if not os.path.exists("/proc/driver/nvidia/version"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def run_chunk(spec: ChunkSpec) -> dict[str, Any]:
    """Augment one chunk. Returns sizes and timing; the records go to the chunk's manifest file."""
    import time

    import cv2

    from dataforge.jsonio import atomic_write_bytes, dumps

    started = time.time()
    cv2.setNumThreads(1)  # one worker per core: OpenCV's own threads would oversubscribe
    pipeline = Pipeline.model_validate(spec.pipeline)
    out_images = Path(spec.out_root) / "images"
    records: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    add = records.append

    def fail_or_skip(item: SourceItem, exc: DataforgeError) -> None:
        if spec.on_error != "skip":
            raise exc
        skipped.append(
            {
                "kind": "image",
                "id": item.image_id,
                "reason": getattr(exc, "reason", None) or "error",
                "message": str(exc),
            }
        )

    backend = spec.backend
    if backend == "auto":  # --device auto: this worker's own hardware decides
        backend = "torchvision" if worker_has_cuda() else "opencv"
    if backend == "torchvision":
        _run_torchvision(spec, pipeline, out_images, add, fail_or_skip)
    else:
        from dataforge.augment import cpu

        fmt, q, pc = pipeline.output.format, pipeline.output.quality, pipeline.output.png_compression
        for item in spec.items:
            try:
                img = cpu.decode(_read_source(spec.source_images_dir, item.file_name), where=item.file_name)
                for copy, name, aug, spans in _copies(pipeline, item, img, "opencv", spec.flip_perms):
                    data = cpu.encode(aug.image, fmt, quality=q, png_compression=pc)
                    _write_atomic(out_images / name, data)
                    add(_record(item, copy, name, data, aug, "opencv", spans))
            except DataforgeError as exc:
                fail_or_skip(item, exc)

    manifest = {"records": records, "skipped": skipped}
    done = Path(spec.out_root) / ".augment" / DONE_DIR
    done.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(done / f"{uuid.uuid4().hex}.json", dumps(manifest), fsync=False)
    return {
        "images": len(records),
        "skipped": len(skipped),
        "units": spec.units,
        "started": started,
        "finished": time.time(),
    }


def _run_torchvision(
    spec: ChunkSpec, pipeline: Pipeline, out_images: Path, add: Any, fail_or_skip: Any
) -> None:
    from dataforge.augment import gpu

    device = gpu.resolve_device(spec.device)
    backend = f"torchvision-{device.split(':')[0]}"
    out = pipeline.output
    datas: list[bytes] = []
    items: list[SourceItem] = []
    for item in spec.items:
        try:
            datas.append(_read_source(spec.source_images_dir, item.file_name))
            items.append(item)
        except DataforgeError as exc:
            fail_or_skip(item, exc)
    try:
        decoded = gpu.decode_batch(datas, device, names=[it.file_name for it in items])
    except DataforgeError:
        decoded = []  # one bad file: decode one at a time so the rest still run under --on-error skip
        for it, d in zip(items, datas, strict=True):
            try:
                decoded.extend(gpu.decode_batch([d], device, names=[it.file_name]))
            except DataforgeError as exc:
                fail_or_skip(it, exc)
                decoded.append(None)
    pending: list[tuple[SourceItem, int, str, Augmented, list[tuple[int, int]]]] = []
    for item, img in zip(items, decoded, strict=True):
        if img is None:
            continue
        try:
            pending.extend(
                (item, copy, name, aug, spans)
                for copy, name, aug, spans in _copies(pipeline, item, img, "torchvision", spec.flip_perms)
            )
        except DataforgeError as exc:
            fail_or_skip(item, exc)
    encoded = gpu.encode_batch(
        [p[3].image for p in pending], out.format, quality=out.quality, png_compression=out.png_compression
    )
    for (item, copy, name, aug, spans), data in zip(pending, encoded, strict=True):
        _write_atomic(out_images / name, data)
        add(_record(item, copy, name, data, aug, backend, spans))
