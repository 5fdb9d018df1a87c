"""Every box convention round-trips through absolute xyxy."""

from __future__ import annotations

import numpy as np
import pytest

from dataforge import boxes as B

XYXY = np.array([[0.0, 0.0, 10.0, 20.0], [5.5, 3.25, 63.0, 47.0], [1.0, 1.0, 1.0, 1.0]])
SIZE = (64, 48)


@pytest.mark.parametrize(
    "fwd, back, sized",
    [
        (B.xyxy_to_xywh, B.xywh_to_xyxy, False),
        (B.xyxy_to_cxcywh_norm, B.cxcywh_norm_to_xyxy, True),
        (B.xyxy_to_xyxy_norm, B.xyxy_norm_to_xyxy, True),
        (B.xyxy_to_xywh_percent, B.xywh_percent_to_xyxy, True),
        (B.xyxy_to_xywh_rel, B.xywh_rel_to_xyxy, True),
        (B.xyxy_to_voc_devkit, B.voc_devkit_to_xyxy, False),
    ],
)
def test_round_trip(fwd, back, sized) -> None:
    args = (SIZE,) if sized else ()
    out = back(fwd(XYXY, *args), *args)
    np.testing.assert_allclose(out, XYXY, atol=1e-9)
    assert out.dtype == np.float64


def test_known_values() -> None:
    box = np.array([10.0, 20.0, 30.0, 60.0])
    assert B.xyxy_to_xywh(box).tolist() == [10, 20, 20, 40]
    assert B.xyxy_to_cxcywh_norm(box, (100, 100)).tolist() == [0.2, 0.4, 0.2, 0.4]
    assert B.xyxy_to_xywh_percent(box, (200, 100)).tolist() == [5, 20, 10, 40]
    assert B.xyxy_to_voc_devkit(box).tolist() == [11, 21, 30, 60]
    assert B.box_area(XYXY).tolist() == [200.0, 57.5 * 43.75, 0.0]


def test_out_of_bounds_uses_a_half_pixel_tolerance() -> None:
    b = np.array([[-0.4, 0, 64.4, 48], [-0.6, 0, 10, 10], [0, 0, 10, 48.6]])
    assert B.out_of_bounds(b, SIZE).tolist() == [False, True, True]


def test_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        B.xywh_to_xyxy([1, 2, 3])


def test_the_scalar_converters_agree_with_the_array_ones() -> None:
    """The per-annotation converters (plain floats, for the hot paths of readers and writers) give
    what the array converters give for the same boxes."""
    for xyxy in XYXY:
        xywh = B.xyxy_to_xywh(xyxy[None])[0].tolist()
        assert B.xywh_to_xyxy_floats(xywh) == pytest.approx(xyxy.tolist(), abs=1e-12)
        norm = B.xyxy_to_xyxy_norm(xyxy[None], SIZE)[0]
        assert B.xywh_to_xyxy_norm_floats(xywh, SIZE) == pytest.approx(norm.tolist(), abs=1e-12)
        assert B.xyxy_norm_to_xywh_floats(*norm, SIZE) == pytest.approx(xywh, abs=1e-12)
        cxcywh = B.xyxy_to_cxcywh_norm(xyxy[None], SIZE)[0]
        assert B.xywh_to_cxcywh_norm_floats(xywh, SIZE) == pytest.approx(cxcywh.tolist(), abs=1e-12)
