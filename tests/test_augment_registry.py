"""The augment registry is complete: every pipeline step draws (and has an albumentations twin), every op it draws has a kernel on
both backends and maps every label type (or declares it moves no pixel), and the labels an op maps
land where its kernels put the pixels. A new step is one module (the last test)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from dataforge.augment import cpu, gpu, registry
from dataforge.augment.ops import DRAWERS, OPS, TARGETS, draw_ops, image_rng
from dataforge.augment.pipeline import STEP_TYPES, Pipeline
from dataforge.augment.sample import augment_sample
from tests.test_augment_boxes import bbox_of_mask, mask_of

#: one concrete instance of every op, for the tests below; a new op without one fails them
EXAMPLES: dict[str, dict] = {
    "hflip": {"op": "hflip"},
    "vflip": {"op": "vflip"},
    "crop": {"op": "crop", "xyxy": [6, 4, 50, 40]},
    "resize": {"op": "resize", "size": [96, 64]},
    "rotate": {"op": "rotate", "angle": 90.0, "fill": 0},
    "color": {"op": "color", "brightness": 1.1, "contrast": 0.9, "saturation": 1.2, "hue": 0.02},
    "blur": {"op": "blur", "sigma": 1.0, "ksize": 7},
    "normalize": {"op": "normalize", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
}

#: a pipeline with every step type, each firing
EVERY_STEP = {
    "seed": 1,
    "steps": [
        {"type": "hflip", "p": 1},
        {"type": "vflip", "p": 1},
        {"type": "crop", "p": 1, "x_min": 2, "y_min": 2, "x_max": 70, "y_max": 52},
        {"type": "center_crop", "p": 1, "width": 60, "height": 44},
        {"type": "random_crop", "p": 1, "width": 56, "height": 40},
        {"type": "random_resized_crop", "p": 1, "size": [64, 48]},
        {"type": "random_scale", "p": 1, "scale": [0.9, 1.1]},
        {"type": "resize", "p": 1, "width": 64, "height": 48},
        {"type": "rotate", "p": 1, "limit": 10},
        {"type": "color_jitter", "p": 1, "brightness": 0.2},
        {"type": "gaussian_blur", "p": 1, "sigma": [0.5, 1.0]},
        {"type": "normalize", "p": 1},
    ],
}


def test_every_step_type_has_a_drawer_and_every_drawn_op_is_registered() -> None:
    from dataforge.augment.albu import _albumentations_steps, to_albumentations

    assert set(STEP_TYPES) == set(DRAWERS) == set(_albumentations_steps())
    p = Pipeline.model_validate(EVERY_STEP)
    assert {s["type"] for s in EVERY_STEP["steps"]} == set(STEP_TYPES)  # the pipeline covers them all
    assert len(to_albumentations(p).transforms) == len(p.steps)
    ops = draw_ops(p, image_rng(1, "a.jpg", 0), (80, 60))
    assert {o["op"] for o in ops} == set(OPS) == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_has_a_kernel_on_both_backends_and_maps_every_label_type(name: str) -> None:
    kind = OPS[name]
    assert name in cpu.KERNELS and name in gpu.KERNELS, f"op {name!r} lacks a kernel"
    if kind.moves_pixels:
        for target in TARGETS:
            assert getattr(kind, target) is not None, f"op {name!r} moves pixels but does not map {target}"


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("backend", ["opencv", "torchvision"])
def test_labels_land_where_the_kernels_put_the_pixels(name: str, backend: str) -> None:
    """A white box on black through the op: the mapped box is the bounding box of the white pixels
    (within a pixel where the kernel interpolates)."""
    w, h, box = 80, 60, [10, 8, 34, 30]
    img = mask_of(w, h, box)
    if backend == "torchvision":
        img = torch.from_numpy(np.ascontiguousarray(img[..., ::-1])).permute(2, 0, 1).contiguous()
    p = Pipeline.model_validate({"steps": [{"type": "hflip", "p": 0}]})  # the ops are given
    aug = augment_sample(p, img, [box], (w, h), key="x", copy=0, ops=[EXAMPLES[name]], backend=backend)  # type: ignore[arg-type]
    out = aug.image if backend == "opencv" else aug.image.permute(1, 2, 0).numpy()[..., ::-1]
    if not OPS[name].in_files:  # normalized floats: the white pixels are the largest values
        out = (out == out.max()).astype(np.uint8) * 255
    assert (out.shape[1], out.shape[0]) == aug.size_wh
    expected = bbox_of_mask(np.ascontiguousarray(out))
    assert expected is not None and aug.keep.tolist() == [True]
    exact = name in ("hflip", "vflip", "crop", "color", "normalize")
    tol = 0 if exact else 1.5 if name != "blur" else 3.5  # blur spreads the edge by about 3 sigma
    assert np.allclose(aug.boxes_xyxy[0], expected, atol=tol), (aug.boxes_xyxy[0].tolist(), expected)


#: a whole new step, as its module in dataforge/augment/steps/ would be: one file registers the
#: step class (and so its schema), its drawer, its op, both kernels and its albumentations twin
TRANSPOSE_MODULE = """
from typing import Any, Literal

from dataforge.augment import cpu, gpu, registry
from dataforge.augment.registry import OpKind, albumentations, cpu_kernel, draws, gpu_kernel, op_kind, step
from dataforge.augment.steps.base import StepBase
import numpy as np


@step
class Transpose(StepBase):
    \"\"\"Swap the x and y axes.\"\"\"

    type: Literal["transpose"]


@draws("transpose")
def _draw(step, rng, fire, w, h, where):
    return [{"op": "transpose"}] if fire else []


def _boxes(op, b, vis, w, h):
    return b[:, [1, 0, 3, 2]], vis


def _masks(op, planes, w, h):
    return planes.transpose(1, 0, 2)


def _points(op, p, w, h):
    return p[:, ::-1]


op_kind(
    OpKind(
        "transpose",
        moves_pixels=True,
        size=lambda op, w, h: (h, w),
        boxes=_boxes,
        masks=_masks,
        keypoints=_points,
        mirrors=True,
    )
)


@cpu_kernel("transpose")
def _cpu(img, op):
    return np.ascontiguousarray(img.transpose(1, 0, 2))


@gpu_kernel("transpose")
def _gpu(img, op):
    return img.transpose(1, 2).contiguous()


@albumentations("transpose")
def _albu(A, s):
    return A.Transpose(p=s.p)
"""


@pytest.fixture
def registries() -> Iterator[None]:
    """The registry as it was before the test, restored after it (a test's new step leaves no trace)."""
    tables = [registry.STEPS, registry.DRAWERS, registry.OPS, registry.CPU_KERNELS, registry.GPU_KERNELS]
    tables.append(registry.ALBUMENTATIONS)
    saved = [dict(t) for t in tables]
    yield
    for table, before in zip(tables, saved, strict=True):
        table.clear()
        table.update(before)


def test_a_new_step_is_one_module(registries: None, tmp_path: Path) -> None:
    """A transpose step written as one module and imported: the pipeline validates it, the schema
    lists it, the registry tests' tables are complete with it, both backends run it and its boxes
    follow the pixels."""
    module = tmp_path / "transpose.py"
    module.write_text(TRANSPOSE_MODULE)
    spec = importlib.util.spec_from_file_location("transpose_step_under_test", module)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))

    from dataforge.augment.albu import _albumentations_steps

    assert "transpose" in STEP_TYPES and set(STEP_TYPES) == set(DRAWERS) == set(_albumentations_steps())
    schema = json.dumps(Pipeline.model_json_schema())
    assert '"const": "transpose"' in schema
    p = Pipeline.model_validate({"steps": [{"type": "transpose", "p": 1}]})
    assert p.to_albumentations().transforms[0].__class__.__name__ == "Transpose"
    assert "transpose" in cpu.KERNELS and "transpose" in gpu.KERNELS
    assert all(getattr(OPS["transpose"], t) is not None for t in TARGETS)
    box = [10, 8, 34, 30]
    bgr = mask_of(80, 60, box)
    rgb = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1).contiguous()
    for backend, img in (("opencv", bgr), ("torchvision", rgb)):
        aug = augment_sample(p, img, [box], (80, 60), key="x", copy=0, backend=backend)  # type: ignore[arg-type]
        out = aug.image if backend == "opencv" else aug.image.permute(1, 2, 0).numpy()
        assert aug.ops == [{"op": "transpose"}] and aug.size_wh == (60, 80)
        assert aug.boxes_xyxy[0].tolist() == bbox_of_mask(np.ascontiguousarray(out)) == [8, 10, 30, 34]
    mask = bgr[None, :, :, 0] > 0
    aug = augment_sample(
        p, bgr, [box], (80, 60), key="x", copy=0, masks=mask, keypoints=np.array([[12.0, 9, 2]])
    )
    assert np.array_equal(aug.masks[0], aug.image[..., 0] > 0) and aug.keypoints.tolist() == [[9, 12, 2]]
