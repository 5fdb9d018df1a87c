"""EXIF orientation (phone photos): detected on import and by validate; `--exif rotate` turns the
pixels upright as a viewer shows them and every label with them (issue 20)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataforge.api import import_dataset, validate
from dataforge.imageio import probe_bytes
from dataforge.masks import decode, encode
from dataforge.store import Store

W, H = 60, 40
BOX = (10, 5, 18, 12)  # x, y, w, h of the red patch in the stored pixels


def photo(orientation: int) -> bytes:
    """A grey image with a red patch at BOX, stored sideways with the EXIF orientation tag."""
    pixels = np.full((H, W, 3), 128, np.uint8)
    x, y, w, h = BOX
    pixels[y : y + h, x : x + w] = (230, 20, 20)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95, exif=exif)
    return buf.getvalue()


def dataset(root: Path, orientation: int) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "images" / "p.jpg").write_bytes(photo(orientation))
    x, y, w, h = BOX
    mask = np.zeros((H, W), bool)
    mask[y : y + h, x : x + w] = True
    doc = {
        "images": [{"id": 1, "file_name": "p.jpg", "width": W, "height": H}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": list(BOX),
                "area": w * h,
                "iscrowd": 0,
                "segmentation": encode(mask),
                "keypoints": [x + 3.5, y + 2.5, 2],  # a pixel centre near the patch's top-left corner
                "num_keypoints": 1,
            }
        ],
        "categories": [{"id": 1, "name": "patch", "keypoints": ["corner"], "skeleton": []}],
    }
    (root / "instances.json").write_text(json.dumps(doc))
    return root / "instances.json"


def test_the_probe_reads_the_orientation_from_the_jpeg_header() -> None:
    for k in range(1, 9):
        assert probe_bytes(photo(k)).orientation == k


def test_default_keeps_the_stored_pixels_and_says_so(tmp_path: Path) -> None:
    res = import_dataset(dataset(tmp_path / "src", 6), store=tmp_path / "s")
    s = Store.open(tmp_path / "s")
    (img,) = s.images
    assert img["exif_orientation"] == 6 and (img["width"], img["height"]) == (W, H)
    assert s.annotations[0]["bbox"] == list(BOX)
    assert any(
        "1 images carry an EXIF orientation other than 1" in w and "--exif rotate" in w for w in res.warnings
    )
    report = validate(tmp_path / "s")
    assert [f.code for f in report.warnings] == ["exif-orientation"] and report.ok


@pytest.mark.parametrize("orientation", range(2, 9))
def test_rotate_turns_pixels_and_labels_together(tmp_path: Path, orientation: int) -> None:
    """After --exif rotate the stored image is what a viewer shows (Pillow's exif_transpose), and
    the box, the mask and the point still sit on the red patch."""
    import_dataset(dataset(tmp_path / "src", orientation), store=tmp_path / "s", exif="rotate")
    s = Store.open(tmp_path / "s")
    (img,) = s.images
    with Image.open(s.images_dir / img["file_name"]) as im:
        assert im.getexif().get(0x0112, 1) == 1
        pixels = np.asarray(im.convert("RGB")).astype(int)
    w, h = img["width"], img["height"]
    assert (w, h) == ((H, W) if orientation >= 5 else (W, H)) and pixels.shape[:2] == (h, w)
    assert "exif_orientation" not in img and img["source"]["exif_turned"] == orientation
    red = (pixels[..., 0] - pixels[..., 1]) > 100  # the patch, less JPEG's blurred colour edges
    ys, xs = np.nonzero(red)
    a = s.annotations[0]
    bx, by, bw, bh = a["bbox"]
    assert (bx, by, bx + bw, by + bh) == pytest.approx(
        (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), abs=1
    )
    m = decode(a["segmentation"], h, w)
    ys, xs = np.nonzero(m)  # the mask is the box, exactly, and covers the patch
    assert (
        m.sum() == BOX[2] * BOX[3]
        and [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] == a["bbox"]
    )
    print(f"orientation {orientation}: red {red.sum()}, in the mask {(m & red).sum()}")
    assert (m & red).sum() / red.sum() >= 0.95 and (m & red).sum() / m.sum() >= 0.9
    px, py, v = a["keypoints"]
    assert v == 2 and red[int(py), int(px)]  # the point is on the patch
    want = {  # where a viewer sees that pixel: the stored (13, 7) -> turned, by the table in dataforge.exif
        2: (W - 13.5, 7.5),
        3: (W - 13.5, H - 7.5),
        4: (13.5, H - 7.5),
        5: (7.5, 13.5),
        6: (H - 7.5, 13.5),
        7: (H - 7.5, W - 13.5),
        8: (7.5, W - 13.5),
    }[orientation]
    assert (px, py) == pytest.approx(want)
    assert validate(tmp_path / "s").ok and not validate(tmp_path / "s").warnings
