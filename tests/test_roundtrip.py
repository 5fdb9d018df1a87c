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
    "csv": {"iscrowd"},  # no crowd column
    "labelstudio": {"iscrowd", "split"},  # Label Studio tasks carry neither
}
#: the file to import back, when it is not the export folder itself
TARGETS = {"coco": "annotations.json", "csv": "annotations.csv", "labelstudio": "tasks.json"}
#: box tolerance: normalized formats round to 6 decimals of the image size
TOLERANCE = {"coco": 1e-9, "yolo": 1e-3, "voc": 1e-9, "tfrecord": 1e-3, "csv": 1e-9, "labelstudio": 1e-6}


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
    target = tmp_path / "out" / TARGETS[fmt] if fmt in TARGETS else tmp_path / "out"
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


def test_class_folders_round_trip(coco_factory, tmp_path: Path) -> None:
    import json

    src = coco_factory(
        [(1, "a.jpg", (10, 10)), (2, "sub/b c.jpg", (12, 10)), (3, "ü.jpg", (8, 8)), (4, "none.jpg", (8, 8))],
        [],
    )
    doc = json.loads(src.read_text())
    for img, labels, split in zip(
        doc["images"], [[1], [2], [1], []], ["train", "val", "train", "val"], strict=True
    ):
        img["labels"], img["split"] = labels, split
    src.write_text(json.dumps(doc))
    import_dataset(src, store=tmp_path / "s")
    res = export_dataset(tmp_path / "s", format="folders", out=tmp_path / "out")
    assert res.images == 3 and res.dropped == {"images without a label": 1}
    import_dataset(tmp_path / "out", store=tmp_path / "back", format="auto")

    def snap(path: Path) -> dict[str, tuple[str | None, list[str]]]:
        st = Store.open(path)
        names = {c.id: c.name for c in st.categories}
        return {r.sha256: (r.split, [names[c] for c in r.labels]) for r in st if r.labels}

    assert snap(tmp_path / "back") == snap(tmp_path / "s")
    csv_out = export_dataset(tmp_path / "s", format="csv", out=tmp_path / "csv")
    assert (tmp_path / "csv" / "labels.csv").is_file() and csv_out.images == 4
    import_dataset(
        tmp_path / "csv" / "labels.csv", store=tmp_path / "back2", images=tmp_path / "csv" / "images"
    )
    assert snap(tmp_path / "back2") == snap(tmp_path / "s")
