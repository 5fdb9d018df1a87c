"""store -> export -> import gives the same images, categories and boxes, for every exporting format.

The dataset has the hard cases: an image without boxes, a crowd box, one-pixel boxes, non-ASCII and
spaced file names, images in subfolders, several splits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dataforge.api import export_dataset, import_dataset
from dataforge.store import Store

#: what each format cannot hold (documented in the format's module)
LOSSES = {
    "coco": set(),
    "yolo": {"iscrowd"},  # YOLO label lines have no crowd flag
    "voc": {"iscrowd"},  # VOC has no crowd flag
    "tfrecord": {"iscrowd"},  # the TF OD API schema has no crowd flag
}
#: box tolerance: normalized formats round to 6 decimals of the image size
TOLERANCE = {"coco": 1e-9, "yolo": 1e-3, "voc": 1e-9, "tfrecord": 1e-3}


@pytest.fixture
def tricky_store(coco_factory, tmp_path: Path) -> Path:
    src = coco_factory(
        [
            (1, "plain.jpg", (64, 48)),
            (2, "with space.jpg", (50, 40)),
            (3, "naïve ünï.jpg", (33, 21)),
            (4, "sub/dir/deep.jpg", (20, 20)),
            (5, "empty.jpg", (16, 16)),
        ],
        [
            (1, 1, "cat", [0, 0, 64, 48]),
            (2, 1, "dog", [10.25, 5.5, 1, 1]),
            (3, 2, "cat", [3, 4, 20, 10]),
            (4, 3, "dog", [0.5, 0.5, 1, 1]),
            (5, 4, "cat", [19, 19, 1, 1]),
            (6, 4, "dog", [2, 2, 5.5, 7.25]),
        ],
        categories=[(1, "cat"), (2, "dog")],
    )
    import json

    doc = json.loads(src.read_text())
    doc["annotations"][2]["iscrowd"] = 1
    for img, split in zip(doc["images"], ["train", "train", "val", "test", "val"], strict=True):
        img["split"] = split
    src.write_text(json.dumps(doc))
    import_dataset(src, store=tmp_path / "store")
    return tmp_path / "store"


def snapshot(store: Store, losses: set[str]) -> dict[str, object]:
    """Everything a round trip must keep, keyed by image content (file names may change)."""
    out = {}
    for r in store:
        boxes = sorted(
            (a.category, a.bbox_xyxy, 0 if "iscrowd" in losses else a.iscrowd) for a in r.annotations
        )
        out[r.sha256] = (r.size_wh, r.split, boxes)
    return out


@pytest.mark.parametrize("fmt", sorted(LOSSES))
def test_round_trip(fmt: str, tricky_store: Path, tmp_path: Path) -> None:
    res = export_dataset(tricky_store, format=fmt, out=tmp_path / "out")
    assert res.images == 5 and res.annotations == 6
    target = tmp_path / "out" / "annotations.json" if fmt == "coco" else tmp_path / "out"
    import_dataset(target, store=tmp_path / "back", format="auto")
    before = snapshot(Store.open(tricky_store), LOSSES[fmt])
    after = snapshot(Store.open(tmp_path / "back"), LOSSES[fmt])
    assert {c.name for c in Store.open(tmp_path / "back").categories} == {"cat", "dog"}
    assert set(after) == set(before)
    for sha, (size, split, boxes) in before.items():
        size2, split2, boxes2 = after[sha]
        assert size2 == size
        assert split2 == split or "split" in LOSSES[fmt]
        assert [(b[0], b[2]) for b in boxes2] == [(b[0], b[2]) for b in boxes]
        for b, b2 in zip(boxes, boxes2, strict=True):
            assert b2[1] == pytest.approx(b[1], abs=TOLERANCE[fmt])
