"""Boxes are right: property tests of the box maths against the pixels, and the two backends agree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.augment import cpu, gpu, parse_pipeline
from dataforge.augment.geometry import color_matrix
from dataforge.augment.ops import apply_box_rules, draw_ops, image_rng, transform_boxes
from dataforge.augment.pipeline import BoxRules


@st.composite
def image_and_box(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    w = draw(st.integers(8, 96))
    h = draw(st.integers(8, 96))
    x0 = draw(st.integers(0, w - 2))
    y0 = draw(st.integers(0, h - 2))
    x1 = draw(st.integers(x0 + 1, w))
    y1 = draw(st.integers(y0 + 1, h))
    return w, h, [x0, y0, x1, y1]


def mask_of(w: int, h: int, box: list[int]) -> np.ndarray:
    m = np.zeros((h, w, 3), np.uint8)
    m[box[1] : box[3], box[0] : box[2]] = 255
    return m


def bbox_of_mask(m: np.ndarray, threshold: int = 127) -> list[float] | None:
    ys, xs = np.nonzero(m[..., 0] > threshold)
    if len(xs) == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@st.composite
def exact_ops(draw: st.DrawFn, w: int, h: int) -> list[dict]:
    """Flips and crops: pixel-exact operations."""
    ops: list[dict] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["hflip", "vflip", "crop"]))
        if kind == "crop":
            x0 = draw(st.integers(0, w - 1))
            y0 = draw(st.integers(0, h - 1))
            x1 = draw(st.integers(x0 + 1, w))
            y1 = draw(st.integers(y0 + 1, h))
            ops.append({"op": "crop", "xyxy": [x0, y0, x1, y1]})
            w, h = x1 - x0, y1 - y0
        else:
            ops.append({"op": kind})
    return ops


@settings(max_examples=150, deadline=None)
@given(data=st.data(), ibox=image_and_box())
def test_after_flips_and_crops_each_box_covers_exactly_its_pixels(data: st.DataObject, ibox: tuple) -> None:
    w, h, box = ibox
    ops = data.draw(exact_ops(w, h))
    out = cpu.apply_ops(mask_of(w, h, box), ops)
    boxes, vis, size = transform_boxes(ops, np.array([box], float), (w, h))
    assert (out.shape[1], out.shape[0]) == size
    expected = bbox_of_mask(out)
    if expected is None:  # the crop cut the whole box away
        assert vis[0] == 0
        assert not apply_box_rules(boxes, vis, BoxRules()).keep[0]
    else:
        assert boxes[0].tolist() == expected
        assert vis[0] == pytest.approx(
            (expected[2] - expected[0])
            * (expected[3] - expected[1])
            / ((box[2] - box[0]) * (box[3] - box[1]))
        )


@settings(max_examples=60, deadline=None)
@given(ibox=image_and_box(), factor=st.sampled_from([2, 3]))
def test_resize_scales_boxes_with_the_pixels(ibox: tuple, factor: int) -> None:
    w, h, box = ibox
    ops = [{"op": "resize", "size": [w * factor, h * factor]}]
    out = cpu.apply_ops(mask_of(w, h, box), ops)
    boxes, vis, _ = transform_boxes(ops, np.array([box], float), (w, h))
    assert boxes[0].tolist() == [v * factor for v in box]
    assert vis[0] == 1
    # bilinear edges: the half-intensity contour sits on the scaled box within one output pixel
    assert np.allclose(bbox_of_mask(out), boxes[0], atol=1.0)


@settings(max_examples=60, deadline=None)
@given(ibox=image_and_box(), angle=st.floats(-45, 45))
def test_a_rotated_box_encloses_the_rotated_pixels(ibox: tuple, angle: float) -> None:
    w, h, box = ibox
    ops = [{"op": "rotate", "angle": angle, "fill": 0}]
    out = cpu.apply_ops(mask_of(w, h, box), ops)
    boxes, _vis, _ = transform_boxes(ops, np.array([box], float), (w, h))
    got = bbox_of_mask(out, threshold=200)
    if got is not None:
        b = boxes[0]
        assert b[0] - 1 <= got[0] and b[1] - 1 <= got[1] and got[2] <= b[2] + 1 and got[3] <= b[3] + 1


@settings(max_examples=100, deadline=None)
@given(ibox=image_and_box())
def test_flipping_twice_is_the_identity(ibox: tuple) -> None:
    w, h, box = ibox
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    for kind in ("hflip", "vflip"):
        ops = [{"op": kind}, {"op": kind}]
        assert np.array_equal(cpu.apply_ops(img, ops), img)
        assert transform_boxes(ops, np.array([box], float), (w, h))[0][0].tolist() == box


def test_box_rules_drop_or_clip_and_count() -> None:
    # image 100x100, crop the left half: box A inside, B cut to 25%, C cut to 75%, D gone
    boxes = np.array([[10, 10, 20, 20], [40, 0, 80, 10], [20, 50, 60, 60], [70, 70, 90, 90]], float)
    ops = [{"op": "crop", "xyxy": [0, 0, 50, 100]}]
    b, vis, _ = transform_boxes(ops, boxes, (100, 100))
    assert vis.tolist() == [1.0, 0.25, 0.75, 0.0]
    assert b[1].tolist() == [40, 0, 50, 10]
    out = apply_box_rules(b, vis, BoxRules(min_visibility=0.3))
    assert out.keep.tolist() == [True, False, True, False] and out.clipped == 1 and out.dropped == 2
    out = apply_box_rules(b, vis, BoxRules(cut="drop"))
    assert out.keep.tolist() == [True, False, False, False] and out.clipped == 0 and out.dropped == 3
    out = apply_box_rules(b, vis, BoxRules(min_area=150))
    assert out.keep.tolist() == [False, False, True, False]


def test_draws_depend_only_on_seed_image_and_copy() -> None:
    p = parse_pipeline(
        {
            "steps": [
                {"type": "hflip"},
                {"type": "random_resized_crop"},
                {"type": "color_jitter", "brightness": 0.3},
            ]
        }
    )
    a = draw_ops(p, image_rng(0, "a.jpg", 1), (640, 480))
    assert a == draw_ops(p, image_rng(0, "a.jpg", 1), (640, 480))
    assert a != draw_ops(p, image_rng(0, "a.jpg", 2), (640, 480))
    assert a != draw_ops(p, image_rng(1, "a.jpg", 1), (640, 480))
    # a step that does not fire still consumes its draws: later steps do not shift
    q = parse_pipeline({"steps": [{"type": "hflip", "p": 0.0}, {"type": "random_resized_crop"}]})
    r = parse_pipeline({"steps": [{"type": "hflip", "p": 1.0}, {"type": "random_resized_crop"}]})
    assert draw_ops(q, image_rng(0, "x", 0), (64, 48)) == draw_ops(r, image_rng(0, "x", 0), (64, 48))[1:]


def test_opencv_kernels_match_albumentations_functional_pixel_for_pixel() -> None:
    import albumentations.augmentations.crops.functional as fc
    import albumentations.augmentations.geometric.functional as fg
    import cv2

    img = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    assert np.array_equal(cpu.apply_ops(img, [{"op": "hflip"}]), fg.hflip(img))
    assert np.array_equal(cpu.apply_ops(img, [{"op": "vflip"}]), fg.vflip(img))
    assert np.array_equal(
        cpu.apply_ops(img, [{"op": "crop", "xyxy": [3, 4, 40, 30]}]), fc.crop(img, 3, 4, 40, 30)
    )
    assert np.array_equal(
        cpu.apply_ops(img, [{"op": "resize", "size": [80, 61]}]), fg.resize(img, (61, 80), cv2.INTER_LINEAR)
    )


def test_colour_matrix_keeps_greys_grey_and_matches_torchvision_brightness_contrast_saturation() -> None:
    import torch
    import torchvision.transforms.v2.functional as F

    m = color_matrix(1.0, 1.0, 1.7, 0.2)
    assert np.allclose(m @ np.ones(3), np.ones(3))  # greys stay grey: hue and saturation pivot on them
    assert np.allclose(color_matrix(1, 1, 1, 0), np.eye(3))
    rng = np.random.default_rng(2)
    rgb = rng.integers(40, 200, (32, 48, 3), dtype=np.uint8)
    t = torch.from_numpy(rgb).permute(2, 0, 1)
    ref = (
        F.adjust_saturation(F.adjust_contrast(F.adjust_brightness(t, 1.1), 0.8), 1.3).permute(1, 2, 0).numpy()
    )
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    ours = cpu.apply_ops(
        bgr, [{"op": "color", "brightness": 1.1, "contrast": 0.8, "saturation": 1.3, "hue": 0.0}]
    )[..., ::-1]
    # torchvision rounds to uint8 after every step and its contrast mean comes from rounded greys
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 3


def _torchvision_boxes(ops: list[dict], boxes: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """The reference: torchvision v2's own box kernels (unclamped), then our clipping rule."""
    import torch
    import torchvision.transforms.v2.functional as F
    from torchvision import tv_tensors

    from dataforge.augment.geometry import clip_boxes

    w, h = size_wh
    b = tv_tensors.BoundingBoxes(
        torch.as_tensor(boxes), format="XYXY", canvas_size=(h, w), clamping_mode=None
    )
    vis = np.ones(len(boxes))

    def clip(t, w: int, h: int):  # type: ignore[no-untyped-def]
        nonlocal vis
        out, vis = clip_boxes(t.as_subclass(torch.Tensor).numpy(), vis, w, h)
        return tv_tensors.wrap(torch.as_tensor(out), like=t)

    for op in ops:
        if op["op"] == "hflip":
            b = F.horizontal_flip(b)
        elif op["op"] == "vflip":
            b = F.vertical_flip(b)
        elif op["op"] == "crop":
            x0, y0, x1, y1 = op["xyxy"]
            b, (w, h) = F.crop(b, y0, x0, y1 - y0, x1 - x0), (x1 - x0, y1 - y0)
            b = clip(b, w, h)
        elif op["op"] == "resize":
            (w, h) = op["size"]
            b = F.resize(b, [h, w])
        elif op["op"] == "rotate":
            b = clip(F.rotate(b, op["angle"]), w, h)
    return b.as_subclass(torch.Tensor).numpy(), vis


def test_the_two_backends_agree_on_geometry() -> None:
    """The ops' box maps equal torchvision v2's box kernels, and both backends' kernels make an
    image of the size the maps say (pixel for pixel where the op is exact)."""
    import torch

    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    rgb = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1).contiguous()
    boxes = np.array([[5, 5, 30, 40], [50, 10, 79, 59], [0, 0, 80, 60], [70, 50, 80, 60]], float)
    cases = [
        [{"op": "hflip"}],
        [{"op": "vflip"}, {"op": "hflip"}],
        [{"op": "crop", "xyxy": [10, 5, 70, 50]}],
        [{"op": "hflip"}, {"op": "crop", "xyxy": [20, 0, 80, 30]}, {"op": "vflip"}],
        [{"op": "crop", "xyxy": [10, 5, 70, 50]}, {"op": "resize", "size": [120, 90]}],
        [{"op": "rotate", "angle": 12.5, "fill": 0}],
    ]
    for ops in cases:
        b_ours, v_ours, size = transform_boxes(ops, boxes, (80, 60))
        b_tv, v_tv = _torchvision_boxes(ops, boxes, (80, 60))
        assert np.allclose(b_ours, b_tv, atol=1e-6), ops
        assert np.allclose(v_ours, v_tv, atol=1e-9), ops
        img_t = gpu.apply_ops(rgb, ops)
        img_c = cpu.apply_ops(bgr, ops)
        assert (img_t.shape[2], img_t.shape[1]) == size == (img_c.shape[1], img_c.shape[0])
        if all(o["op"] in ("hflip", "vflip", "crop") for o in ops):  # pixel-exact steps
            assert np.array_equal(img_c[..., ::-1], img_t.permute(1, 2, 0).numpy()), ops


def test_the_two_backends_make_the_same_colours() -> None:
    import torch

    rng = np.random.default_rng(4)
    bgr = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    rgb = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1).contiguous()
    op = {"op": "color", "brightness": 1.15, "contrast": 0.85, "saturation": 1.2, "hue": -0.04}
    ours = cpu.apply_ops(bgr, [op])[..., ::-1].astype(int)
    theirs = gpu.apply_ops(rgb, [op]).permute(1, 2, 0).numpy().astype(int)
    # the CPU estimates the contrast pivot from every 4th row; float32 rounding differs
    assert np.abs(ours - theirs).max() <= 2
