"""Masks and keypoints move with the pixels: property tests of their maps against the kernels, flips
swap left and right, the visibility rules, both backends, and the augment job end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.augment import parse_pipeline, replay
from dataforge.augment.job import augment
from dataforge.augment.ops import OPS, transform_keypoints, transform_masks
from dataforge.augment.sample import augment_sample
from dataforge.errors import UsageError
from dataforge.keypoints import flip_permutation
from dataforge.masks import decode, iou
from dataforge.store import Store
from tests.conftest import shapes_store
from tests.test_augment_boxes import exact_ops
from tests.test_augment_registry import EXAMPLES

MOVING = sorted(n for n, k in OPS.items() if k.moves_pixels)
NOOP = {"seed": 0, "steps": [{"type": "hflip", "p": 0}]}


def random_masks(rng: np.random.Generator, n: int, w: int, h: int) -> np.ndarray:
    """``n`` masks of blobs with holes and several parts (what polygons cannot hold)."""
    m = rng.random((n, h // 4 + 1, w // 4 + 1)) < 0.35
    return np.repeat(np.repeat(m, 4, axis=1), 4, axis=2)[:, :h, :w]


@settings(max_examples=120, deadline=None)
@given(data=st.data(), w=st.integers(8, 64), h=st.integers(8, 64), n=st.integers(1, 19))
def test_after_flips_and_crops_masks_are_the_pixels_moved_exactly(
    data: st.DataObject, w: int, h: int, n: int
) -> None:
    """A mask written into the image's channels goes through the image kernels; the mask maps give
    the same pixels, for any number of masks (the bit planes hold eight per channel)."""
    ops = data.draw(exact_ops(w, h))
    masks = random_masks(np.random.default_rng(n * w + h), n, w, h)
    out = transform_masks(ops, masks, (w, h))
    for i in range(n):
        img = np.repeat(masks[i, :, :, None].astype(np.uint8) * 255, 3, axis=2)
        aug = augment_sample(parse_pipeline(NOOP), img, [], (w, h), key="x", copy=0, ops=ops)
        assert np.array_equal(out[i], aug.image[..., 0] > 127)


def _enclosing_op(draw: st.DrawFn, name: str, w: int, h: int) -> dict:
    """Random parameters for each op that declares ``boxes_enclose_masks``."""
    if name == "crop":
        x0, y0 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
        return {"op": "crop", "xyxy": [x0, y0, draw(st.integers(x0 + 1, w)), draw(st.integers(y0 + 1, h))]}
    if name == "resize":
        return {"op": "resize", "size": [draw(st.integers(3, 3 * w)), draw(st.integers(3, 3 * h))]}
    if name == "rotate":
        return {"op": "rotate", "angle": draw(st.floats(-180, 180)), "fill": 0}
    return {"op": name}


ENCLOSING = sorted(n for n, k in OPS.items() if k.boxes_enclose_masks)


def test_every_op_declaring_enclosure_has_random_parameters_here() -> None:
    assert set(ENCLOSING) == {"hflip", "vflip", "crop", "resize", "rotate"}


@st.composite
def enclosing_ops(draw: st.DrawFn, w: int, h: int) -> list[dict]:
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        op = _enclosing_op(draw, draw(st.sampled_from(ENCLOSING)), w, h)
        ops.append(op)
        w, h = OPS[op["op"]].size(op, w, h)
    return ops


@settings(max_examples=200, deadline=None)
@given(data=st.data(), w=st.integers(4, 48), h=st.integers(4, 48), n=st.integers(1, 11))
def test_masks_moved_within_their_boxes_equal_masks_moved_whole(
    data: st.DataObject, w: int, h: int, n: int
) -> None:
    """The fast path (each mask packed and unpacked within its moved box) gives exactly the masks
    and tight boxes of the whole-image path, for every op that declares its boxes enclose its
    masks, at any angle and scale: the declaration holds."""
    from dataforge.augment.ops import transform_masks_boxed
    from dataforge.masks import bbox_xyxy

    ops = data.draw(enclosing_ops(w, h))
    rng = np.random.default_rng(n * 1000 + w * 50 + h)
    masks = np.zeros((n, h, w), bool)
    boxes = np.zeros((n, 4), np.int64)
    for i in range(n):
        if i == 0:
            continue  # an empty mask stays empty
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))
        masks[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.6
        masks[i, y0, x0] = masks[i, y1 - 1, x1 - 1] = True  # the box is the mask's tight box
        boxes[i] = (x0, y0, x1, y1)
    column_major = np.asfortranarray(masks.transpose(1, 2, 0)).transpose(2, 0, 1)  # as pycocotools decodes
    whole = transform_masks(ops, masks, (w, h))
    for given_masks in (masks, column_major):
        fast, tight = transform_masks_boxed(ops, given_masks, (w, h), boxes)
        assert np.array_equal(fast, whole), ops
        assert tight == [bbox_xyxy(m) for m in whole]


@settings(max_examples=100, deadline=None)
@given(w=st.integers(8, 64), h=st.integers(8, 64), seed=st.integers(0, 10_000))
def test_flip_twice_is_the_identity_and_keeps_the_area(w: int, h: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, 5, w, h)
    k = np.concatenate([rng.uniform(0, [w, h], (6, 2)), rng.integers(0, 3, (6, 1))], axis=1)
    k[k[:, 2] == 0, :2] = 0
    perm = np.array(flip_permutation(["nose", "left_eye", "right_eye", "l_ear", "r_ear", "tail"]))
    for flip in ("hflip", "vflip"):
        once = transform_masks([{"op": flip}], masks, (w, h))
        assert (once.sum(axis=(1, 2)) == masks.sum(axis=(1, 2))).all()
        twice = transform_masks([{"op": flip}] * 2, masks, (w, h))
        assert np.array_equal(twice, masks)
        assert np.allclose(transform_keypoints([{"op": flip}] * 2, k, (w, h), perm), k, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(w=st.integers(8, 64), h=st.integers(8, 64), seed=st.integers(0, 10_000))
def test_a_crop_shifts_points_and_unlabels_those_it_cuts_off(w: int, h: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = np.concatenate([rng.uniform(0, [w, h], (8, 2)), np.full((8, 1), 2.0)], axis=1)
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    x1, y1 = int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))
    out = transform_keypoints([{"op": "crop", "xyxy": [x0, y0, x1, y1]}], k, (w, h))
    inside = (k[:, 0] >= x0) & (k[:, 0] <= x1) & (k[:, 1] >= y0) & (k[:, 1] <= y1)
    assert np.allclose(out[inside, :2], k[inside, :2] - [x0, y0], atol=1e-12)
    assert (out[inside, 2] == 2).all() and (out[~inside] == 0).all()


def test_hflip_turns_the_left_eye_into_the_right_eye() -> None:
    names = ["nose", "left_eye", "right_eye"]
    k = np.array([[50.0, 40, 2], [40, 30, 2], [60, 30, 1]])  # a face seen from the front, 100 wide
    out = transform_keypoints([{"op": "hflip"}], k, (100, 80), np.array(flip_permutation(names)))
    # the point on the image's left is still called the left eye: it is the old right eye, mirrored
    assert out.tolist() == [[50, 40, 2], [40, 30, 1], [60, 30, 2]]
    # without a pairing (no flip_perm) the points only mirror
    assert transform_keypoints([{"op": "hflip"}], k, (100, 80)).tolist() == [
        [50, 40, 2],
        [60, 30, 2],
        [40, 30, 1],
    ]


def white_square(w: int, h: int, box: list[int]) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[box[1] : box[3], box[0] : box[2]] = 255
    return img


@pytest.mark.parametrize("name", MOVING)
@pytest.mark.parametrize("backend", ["opencv", "torchvision"])
def test_masks_and_keypoints_land_where_the_kernels_put_the_pixels(name: str, backend: str) -> None:
    """A white square through each op on each backend: its mask is the white pixels (exactly for flips
    and crops; IoU >= 0.9 where the kernel interpolates and the mask is nearest-neighbour) and a
    keypoint at its centre is the centre of the white pixels (within 0.5 px)."""
    w, h, box = 80, 60, [10, 8, 34, 30]
    img = white_square(w, h, box)
    mask = img[None, :, :, 0] > 0
    centre = np.array([[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 2.0]])
    if backend == "torchvision":
        img = torch.from_numpy(np.ascontiguousarray(img[..., ::-1])).permute(2, 0, 1).contiguous()
    aug = augment_sample(
        parse_pipeline(NOOP),
        img,
        [box],
        (w, h),
        key="x",
        copy=0,
        ops=[EXAMPLES[name]],
        backend=backend,
        masks=mask,
        keypoints=centre,  # type: ignore[arg-type]
    )
    out = aug.image if backend == "opencv" else aug.image.permute(1, 2, 0).numpy()
    white = out[..., 0] > 127
    assert aug.masks is not None and aug.keypoints is not None and aug.masks.shape[1:] == white.shape
    if name in ("hflip", "vflip", "crop"):
        assert np.array_equal(aug.masks[0], white)
    else:
        assert iou(aug.masks[0], white) >= 0.9, iou(aug.masks[0], white)
    ys, xs = np.nonzero(white)
    assert np.allclose(aug.keypoints[0, :2], [xs.mean() + 0.5, ys.mean() + 0.5], atol=0.5)
    # the box is the mask's tight box
    mys, mxs = np.nonzero(aug.masks[0])
    assert aug.boxes_xyxy[0].tolist() == [mxs.min(), mys.min(), mxs.max() + 1, mys.max() + 1]


def test_both_backends_give_the_same_masks_and_keypoints() -> None:
    rng = np.random.default_rng(5)
    w, h = 72, 56
    masks = random_masks(rng, 11, w, h)
    k = np.concatenate([rng.uniform(0, [w, h], (9, 2)), np.full((9, 1), 2.0)], axis=1)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    p = parse_pipeline(
        {
            "seed": 3,
            "steps": [
                {"type": "hflip", "p": 0.5},
                {"type": "random_resized_crop", "scale": [0.3, 1], "size": [64, 48]},
                {"type": "rotate", "limit": 20, "p": 0.7},
                {"type": "color_jitter", "brightness": 0.3},
            ],
        }
    )
    tensor = torch.from_numpy(np.ascontiguousarray(img[..., ::-1])).permute(2, 0, 1).contiguous()
    boxes = [[0, 0, w, h]] * 11
    for copy in range(6):
        a = augment_sample(p, img, boxes, (w, h), key="k", copy=copy, masks=masks, keypoints=k)
        b = augment_sample(
            p, tensor, boxes, (w, h), key="k", copy=copy, masks=masks, keypoints=k, backend="torchvision"
        )
        assert a.ops == b.ops and np.array_equal(a.masks, b.masks)
        assert np.abs(a.keypoints - b.keypoints).max() <= 1e-6 and np.array_equal(a.keep, b.keep)


def test_an_instance_whose_mask_is_cut_away_is_dropped_but_a_semantic_region_is_kept() -> None:
    w, h = 60, 40
    masks = np.zeros((3, h, w), bool)
    masks[0, 2:10, 2:10] = True  # an object the crop removes
    masks[1, 20:38, 30:58] = True  # an object the crop keeps
    masks[2, :, :] = True  # "background": a semantic region of which the crop keeps 10 %
    masks[2, 2:10, 2:10] = False
    boxes = [[2, 2, 10, 10], [30, 20, 58, 38], [0, 0, 60, 40]]
    p = parse_pipeline({"steps": [{"type": "hflip", "p": 0}], "boxes": {"min_visibility": 0.3}})
    crop = [{"op": "crop", "xyxy": [30, 20, 60, 28]}]
    img = np.zeros((h, w, 3), np.uint8)
    aug = augment_sample(
        p, img, boxes, (w, h), key="x", copy=0, ops=crop, masks=masks, semantic=np.array([False, False, True])
    )
    assert aug.keep.tolist() == [False, True, True]
    assert aug.masks[2].all() and aug.boxes_xyxy[2].tolist() == [0, 0, 30, 8]
    aug = augment_sample(p, img, boxes, (w, h), key="x", copy=0, ops=crop, masks=masks)
    assert aug.keep.tolist() == [False, True, False]  # not flagged semantic: the box rules apply


# --- the augment job ----------------------------------------------------------------------------

SPEC = {
    "seed": 4,
    "copies": 2,
    "steps": [
        {"type": "hflip", "p": 0.5},
        {"type": "random_resized_crop", "scale": [0.4, 1.0]},
        {"type": "rotate", "limit": 10, "p": 0.5},
        {"type": "color_jitter", "brightness": 0.2, "p": 0.8},
    ],
    "boxes": {"min_visibility": 0.2, "min_area": 4},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shapes_store(tmp_path_factory.mktemp("masks"), n=10, seed=9)


def test_augment_writes_the_moved_masks_and_keypoints_and_replay_recomputes_them(
    store: Path, tmp_path: Path, cli
) -> None:
    res = augment(store, parse_pipeline(SPEC), tmp_path / "out", scheduler="sync")
    out = Store.open(tmp_path / "out")
    src = Store.open(store)
    assert out.data["categories"] == src.data["categories"]  # keypoint names and skeleton kept
    assert res.counts["masks_out"] == len(out.annotations) and res.counts["keypoints_out"] > 0
    assert not res.warnings
    assert cli("validate", tmp_path / "out").code == 0
    flipped = 0
    for img in out.images:
        anns = out.index.anns_by_image[img["id"]]
        again = replay(tmp_path / "out", img["id"])
        if not anns:
            continue
        assert again.masks is not None and len(again.masks) == len(anns)
        flipped += {"op": "hflip"} in img["source"]["ops"]
        points = again.keypoints or [None] * len(anns)  # None: no annotation of the image has points
        for a, m, k in zip(anns, again.masks, points, strict=True):
            stored = decode(a["segmentation"], img["height"], img["width"])
            assert np.array_equal(stored, m) and a["area"] == int(m.sum())
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            assert (k is not None and len(k) > 0) == bool(a.get("keypoints"))
            if a.get("keypoints"):
                assert np.allclose(np.reshape(a["keypoints"], (-1, 3)), k, atol=1e-3)
                assert a["num_keypoints"] == int((k[:, 2] > 0).sum())
    assert flipped > 0  # the pipeline exercised the left/right swap


def test_masks_and_keypoints_do_not_depend_on_workers(store: Path, tmp_path: Path) -> None:
    one = augment(store, parse_pipeline(SPEC), tmp_path / "a", scheduler="sync")
    two = augment(store, parse_pipeline(SPEC), tmp_path / "b", workers=2, chunk_size=3)
    assert one.counts == two.counts
    a = json.loads((tmp_path / "a" / "annotations.json").read_text())["annotations"]
    b = json.loads((tmp_path / "b" / "annotations.json").read_text())["annotations"]
    assert a == b


def test_a_flip_idx_that_is_not_a_pairing_is_refused_before_anything_runs(
    store: Path, tmp_path: Path
) -> None:
    bad = {**SPEC, "keypoints": {"flip_idx": {"bird": [0, 1, 1]}}}
    with pytest.raises(UsageError, match="flip_idx"):
        augment(store, parse_pipeline(bad), tmp_path / "x", scheduler="sync")
    with pytest.raises(UsageError, match="no keypoints"):
        augment(
            store,
            parse_pipeline({**SPEC, "keypoints": {"flip_idx": {"cat": [0]}}}),
            tmp_path / "y",
            scheduler="sync",
        )
    assert not (tmp_path / "x" / "annotations.json").exists()


def test_the_pipeline_flip_idx_overrides_the_names(store: Path, tmp_path: Path) -> None:
    """flip_idx [0, 1, 2] (no swap) keeps each base point's name after a flip: the point named
    left_base ends on the image's right."""
    spec = {"seed": 0, "steps": [{"type": "hflip", "p": 1}], "keypoints": {"flip_idx": {"bird": [0, 1, 2]}}}
    augment(store, parse_pipeline(spec), tmp_path / "o", scheduler="sync")
    augment(store, parse_pipeline({**spec, "keypoints": {}}), tmp_path / "n", scheduler="sync")
    for name, left_is_left in (("o", False), ("n", True)):
        data = json.loads((tmp_path / name / "annotations.json").read_text())
        both_bases = [k for a in data["annotations"] if (k := a.get("keypoints")) and k[5] and k[8]]
        assert len(both_bases) >= 3  # triangles whose two base points are both labelled
        for k in both_bases:
            assert (k[3] < k[6]) == left_is_left


def test_a_mask_rotated_then_upscaled_twice_stays_within_its_region() -> None:
    """The case hypothesis found: the nearest-neighbour rounding of a rotation, scaled up by two
    resizes, spills past a margin added only once at the end; the margin is added after each op."""
    from dataforge.augment.ops import transform_masks_boxed

    ops = [
        {"op": "rotate", "angle": -69.0, "fill": 0},
        {"op": "resize", "size": [112, 3]},
        {"op": "resize", "size": [241, 3]},
    ]
    rng = np.random.default_rng(0)
    for _ in range(200):
        masks = np.zeros((4, 4, 43), bool)
        boxes = np.zeros((4, 4), np.int64)
        for i in range(4):
            x0, y0 = int(rng.integers(0, 43)), int(rng.integers(0, 4))
            x1, y1 = int(rng.integers(x0 + 1, 44)), int(rng.integers(y0 + 1, 5))
            masks[i, y0:y1, x0:x1] = True
            boxes[i] = (x0, y0, x1, y1)
        fast, _ = transform_masks_boxed(ops, masks, (43, 4), boxes)
        assert np.array_equal(fast, transform_masks(ops, masks, (43, 4)))
