"""One sample through a pipeline: draw the ops, run the backend's kernels on the pixels and the ops'
own maps on the labels (boxes, masks, keypoints), apply the box rules. ``dataforge augment`` (both backends), ``--preview``,
replay and the training dataset all call :func:`augment_sample`, so an op cannot move an image in one
of them and not in another, nor move the image without its labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dataforge.augment.ops import (
    OPS,
    Op,
    apply_box_rules,
    draw_ops,
    image_rng,
    transform_boxes,
    transform_keypoints,
    transform_masks_boxed,
)
from dataforge.augment.pipeline import Pipeline
from dataforge.boxes import FloatArray
from dataforge.errors import ImageError

Backend = Literal["opencv", "torchvision"]


@dataclass(frozen=True, slots=True)
class Augmented:
    """``image``: BGR uint8 ``(H, W, 3)`` (opencv) or an RGB ``(3, H, W)`` tensor (torchvision);
    ``boxes_xyxy`` and ``visibility``: every input box, transformed (parallel to the input);
    ``keep``: which of them the box rules keep. ``masks`` ``(N, H, W)`` bool and ``keypoints``
    ``(M, 3)``: the input's, transformed (None when the input had none). An instance with a mask
    has its box recomputed from the mask, and is dropped when its mask left the image."""

    image: Any
    ops: list[Op]
    boxes_xyxy: FloatArray
    visibility: FloatArray
    keep: np.ndarray
    size_wh: tuple[int, int]
    masks: np.ndarray | None = None
    keypoints: FloatArray | None = None

    @property
    def kept_boxes(self) -> FloatArray:
        return self.boxes_xyxy[self.keep]


def label_args(
    annotations: Sequence[Mapping[str, Any]], size_wh: tuple[int, int], flip_perms: Mapping[int, list[int]]
) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """The mask and keypoint arguments of :func:`augment_sample` for one image's COCO annotations
    (masks decoded once, for all its copies), and each annotation's slice of the flat keypoints."""
    from dataforge.masks import decode_all_boxed, has_mask

    w, h = size_wh
    kwargs: dict[str, Any] = {}
    segs = [a.get("segmentation") for a in annotations]
    with_mask = [has_mask(s) for s in segs]
    if any(with_mask):
        kwargs["masks"], kwargs["mask_boxes"] = decode_all_boxed(segs, h, w)
        kwargs["has_mask"] = np.array(with_mask)
        kwargs["semantic"] = np.array([bool(a.get("semantic")) for a in annotations])
    spans: list[tuple[int, int]] = []
    points: list[list[float]] = []
    perm: list[int] = []
    for a in annotations:
        start = len(points)
        kps = a.get("keypoints")
        if kps:
            k = len(kps) // 3
            points.extend(kps[3 * i : 3 * i + 3] for i in range(k))
            perm.extend(start + j for j in flip_perms.get(a["category_id"]) or range(k))
        spans.append((start, len(points)))
    if points:
        kwargs["keypoints"] = np.asarray(points, dtype=np.float64)
        kwargs["flip_perm"] = np.asarray(perm, dtype=np.int64)
    return kwargs, spans


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
    masks: np.ndarray | None = None,
    has_mask: np.ndarray | None = None,
    mask_boxes: np.ndarray | None = None,
    semantic: np.ndarray | None = None,
    keypoints: FloatArray | None = None,
    flip_perm: np.ndarray | None = None,
) -> Augmented:
    """Augment one image and its labels. ``key`` (the source file name) and ``copy`` pick the random
    draws (:func:`dataforge.augment.ops.image_rng`); ``ops`` replays recorded ops instead of drawing.
    ``files_only`` leaves out ops whose output no image file holds (normalize), for a consumer that
    wants uint8 pixels. An image whose size is not ``size_wh`` is an :class:`ImageError`.

    ``masks``: ``(N, H, W)`` bool, one per box (``has_mask`` says which boxes have one; all, when not
    given); ``semantic`` marks semantic regions, which the box rules never drop (a class's pixels
    stay labelled while any are left); ``mask_boxes`` (``(N, 4)`` int xyxy holding each mask's
    pixels, :func:`dataforge.masks.decode_all_boxed`) lets them move within their boxes alone. ``keypoints``: ``(M, 3)`` ``(x, y, v)`` of all instances,
    ``flip_perm`` the permutation a mirror applies to them (left and right swap)."""
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
    out_masks = None
    if masks is not None:
        out_masks, tights = transform_masks_boxed(ops, masks, size_wh, mask_boxes)
        with_mask = np.ones(len(out_masks), bool) if has_mask is None else np.asarray(has_mask, bool)
        for i in np.flatnonzero(with_mask):
            tight = tights[i]
            if tight is None:
                vis[i] = 0.0
            else:
                boxes[i] = tight
    keep = apply_box_rules(boxes, vis, pipeline.boxes).keep
    if semantic is not None:
        keep |= np.asarray(semantic, bool) & (vis > 0)
    out_kps = None if keypoints is None else transform_keypoints(ops, keypoints, size_wh, flip_perm)
    return Augmented(
        image=image,
        ops=ops,
        boxes_xyxy=boxes,
        visibility=vis,
        keep=keep,
        size_wh=size,
        masks=out_masks,
        keypoints=out_kps,
    )
