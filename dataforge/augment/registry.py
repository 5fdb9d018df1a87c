"""The augment registry: every pipeline step and concrete op, and what each backend runs for it.

A step module (``dataforge/augment/steps/<name>.py``, imported with its package) registers, in
one file: its pipeline step class (``@step``: its fields become the pipeline schema), how the
step draws its random choices into concrete ops (``@draws``), each new concrete op's
:class:`OpKind` (what it does to the canvas and to each label type), the op's kernel on each
backend (``@cpu_kernel``, ``@gpu_kernel``) and its albumentations twin (``@albumentations``).
``tests/test_augment_registry.py`` fails when one of those is missing for any step or op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel

from dataforge.boxes import FloatArray

Op = dict[str, Any]

#: the label types an op that moves pixels must map
TARGETS = ("boxes", "masks", "keypoints")

SizeMap = Callable[[Op, int, int], tuple[int, int]]
#: (op, boxes (N, 4) xyxy, visibility (N,), w, h of the input) -> (boxes, visibility)
BoxMap = Callable[[Op, FloatArray, FloatArray, int, int], tuple[FloatArray, FloatArray]]
#: (op, mask planes (H, W, C) uint8 — eight instance masks bit-packed per channel —, w, h) -> planes;
#: nearest-neighbour only, so every bit (every mask) moves as a whole and stays 0 or 1
MaskMap = Callable[[Op, np.ndarray, int, int], np.ndarray]
#: (op, points (M, 2) xy, w, h of the input) -> points; the caller marks points off the canvas
PointMap = Callable[[Op, FloatArray, int, int], FloatArray]
#: (step, rng, fire, w, h, where) -> the ops the step became
Drawer = Callable[[Any, np.random.Generator, bool, int, int, str], list[Op]]
Kernel = Callable[[Any, Op], Any]


def same_size(op: Op, w: int, h: int) -> tuple[int, int]:
    return w, h


@dataclass(frozen=True, slots=True)
class OpKind:
    """One concrete op. ``moves_pixels=False`` ops (colour, blur, normalize) leave every label as it
    is, by declaration; the others map each of ``TARGETS`` (boxes, masks, keypoints) or the registry
    test fails. ``mirrors``: the op is a reflection, so keypoints swap left and right.
    ``in_files``: whether an image file can hold its output (normalize makes floats).
    ``boxes_enclose_masks``: the box map sends a box enclosing some pixels to a box enclosing the
    pixels the mask map sends them to (give or take a pixel), so masks may be unpacked within their
    moved boxes only (``tests/test_augment_masks_keypoints.py`` checks it for every op declaring it)."""

    name: str
    moves_pixels: bool
    size: SizeMap = same_size
    boxes: BoxMap | None = None
    masks: MaskMap | None = None
    keypoints: PointMap | None = None
    mirrors: bool = False
    in_files: bool = True
    boxes_enclose_masks: bool = False


class Kernels(dict[str, Kernel]):
    """One backend's kernels, op name -> ``(image, op) -> image``: ``@table.register("hflip")``
    adds one, ``table.run(image, ops)`` applies ops in order."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.backend = backend

    def register(self, name: str) -> Callable[[Kernel], Kernel]:
        def add(fn: Kernel) -> Kernel:
            self[name] = fn
            return fn

        return add

    def run(self, image: Any, ops: list[Op]) -> Any:
        for op in ops:
            fn = self.get(op["op"])
            if fn is None:
                raise ValueError(f"unknown op {op['op']!r} for the {self.backend} backend")
            image = fn(image, op)
        return image


#: step type -> its pydantic class (a pipeline's ``steps`` validate against these)
STEPS: dict[str, type[BaseModel]] = {}
#: step type -> how it draws its ops
DRAWERS: dict[str, Drawer] = {}
#: op name -> what it does to the canvas and the labels
OPS: dict[str, OpKind] = {}
#: op name -> the OpenCV kernel on ``(H, W, 3)`` uint8 BGR arrays
CPU_KERNELS = Kernels("opencv")
#: op name -> the torchvision kernel on ``(3, H, W)`` uint8 RGB tensors
GPU_KERNELS = Kernels("torchvision")
#: step type -> ``(albumentations module, step) -> transform`` with the same semantics
ALBUMENTATIONS: dict[str, Callable[[Any, Any], Any]] = {}

T = TypeVar("T", bound=type)


def step(cls: T) -> T:
    """Register a pipeline step class (its ``type`` field's literal is its name)."""
    (name,) = cls.model_fields["type"].annotation.__args__  # type: ignore[attr-defined]
    STEPS[name] = cls
    return cls


def draws(*step_types: str) -> Callable[[Drawer], Drawer]:
    """Register how pipeline steps draw their ops. A drawer makes every draw whether or not the step
    fires (so later steps' draws do not depend on it) and returns ``[]`` when it does not."""

    def register(fn: Drawer) -> Drawer:
        for t in step_types:
            DRAWERS[t] = fn
        return fn

    return register


def op_kind(kind: OpKind) -> OpKind:
    """Register a concrete op."""
    OPS[kind.name] = kind
    return kind


cpu_kernel = CPU_KERNELS.register
gpu_kernel = GPU_KERNELS.register


def albumentations(*step_types: str) -> Callable[[Callable[[Any, Any], Any]], Callable[[Any, Any], Any]]:
    """Register the albumentations transform of pipeline steps: ``fn(A, step)``."""

    def register(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        for t in step_types:
            ALBUMENTATIONS[t] = fn
        return fn

    return register
