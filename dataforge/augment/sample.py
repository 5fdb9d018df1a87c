"""One sample through a pipeline: draw the ops, run the backend's kernels on the pixels and the ops'
own maps on the labels, apply the box rules. ``dataforge augment`` (both backends), ``--preview``,
replay and the training dataset all call :func:`augment_sample`, so an op cannot move an image in one
of them and not in another, nor move the image without its labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dataforge.augment.ops import OPS, Op, apply_box_rules, draw_ops, image_rng, transform_boxes
from dataforge.augment.pipeline import Pipeline
from dataforge.boxes import FloatArray
from dataforge.errors import ImageError

Backend = Literal["opencv", "torchvision"]


@dataclass(frozen=True, slots=True)
class Augmented:
    """``image``: BGR uint8 ``(H, W, 3)`` (opencv) or an RGB ``(3, H, W)`` tensor (torchvision);
    ``boxes_xyxy`` and ``visibility``: every input box, transformed (parallel to the input);
    ``keep``: which of them the box rules keep."""

    image: Any
    ops: list[Op]
    boxes_xyxy: FloatArray
    visibility: FloatArray
    keep: np.ndarray
    size_wh: tuple[int, int]

    @property
    def kept_boxes(self) -> FloatArray:
        return self.boxes_xyxy[self.keep]


def augment_sample(
    pipeline: Pipeline,
    image: Any,
    boxes_xyxy: Any,
    size_wh: tuple[int, int],
    *,
    key: str,
    copy: int,
    backend: Backend = "opencv",
    ops: list[Op] | None = None,
    files_only: bool = False,
) -> Augmented:
    """Augment one image and its boxes. ``key`` (the source file name) and ``copy`` pick the random
    draws (:func:`dataforge.augment.ops.image_rng`); ``ops`` replays recorded ops instead of drawing.
    ``files_only`` leaves out ops whose output no image file holds (normalize), for a consumer that
    wants uint8 pixels. An image whose size is not ``size_wh`` is an :class:`ImageError`."""
    if ops is None:
        ops = draw_ops(pipeline, image_rng(pipeline.seed, key, copy), size_wh, where=key)
    if files_only:
        ops = [o for o in ops if OPS[o["op"]].in_files]
    # the labels are mapped on the store's size: pixels of another size would move differently
    got = (int(image.shape[-1]), int(image.shape[-2])) if backend == "torchvision" else image.shape[1::-1]
    if tuple(got) != tuple(size_wh):
        raise ImageError(
            f"{key}: the image is {got[0]}x{got[1]} but the store says {size_wh[0]}x{size_wh[1]}",
            source=key,
            reason="size-mismatch",
            hint="re-import the image; the store's sizes and boxes must match the file",
        )
    if backend == "torchvision":
        from dataforge.augment import gpu

        image = gpu.apply_ops(image, ops)
    else:
        from dataforge.augment import cpu

        image = cpu.apply_ops(image, ops)
    boxes, vis, size = transform_boxes(ops, boxes_xyxy, size_wh)
    keep = apply_box_rules(boxes, vis, pipeline.boxes).keep
    return Augmented(image=image, ops=ops, boxes_xyxy=boxes, visibility=vis, keep=keep, size_wh=size)
