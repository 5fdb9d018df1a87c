"""Every COCO sample under ../shared/interop/coco/ (written by another tool) imports exactly.

Checked against ../shared/interop/facts.json, which an independent reader derived from the files:
images, real sizes, categories with ids, and every box as absolute xyxy (±0.01 px).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dataforge.api import import_dataset
from dataforge.store import Store
from tests.conftest import INTEROP, interop_facts

FACTS = interop_facts()
CASES = [
    (key, subset)
    for key, facts in FACTS.items()
    if key.startswith("coco/")
    for subset in ([None] if "kind" in facts else sorted(facts))
]


def annotation_file(sample: Path, subset: str | None) -> Path:
    files = sorted(sample.rglob("*.json"))
    if subset is None:
        assert len(files) == 1, files
        return files[0]
    hits = [f for f in files if f.stem.endswith(f"_{subset}") or f.parent.name == subset]
    assert len(hits) == 1, (subset, hits)
    return hits[0]


def test_every_coco_sample_has_a_case() -> None:
    samples = {p.name for p in (INTEROP / "coco").iterdir() if p.is_dir()}
    assert {key.split("/")[1] for key, _ in CASES} == samples


@pytest.mark.parametrize("key, subset", CASES, ids=[f"{k.split('/')[1]}-{s or 'all'}" for k, s in CASES])
def test_coco_sample_matches_facts(key: str, subset: str | None, tmp_path: Path) -> None:
    facts = FACTS[key] if subset is None else FACTS[key][subset]
    src = annotation_file(INTEROP / key, subset)
    # panoptic segment maps are checked by the test below (train's PNG is not its image's size)
    options = {"masks": "false"} if "panoptic" in key else {}
    res = import_dataset(src, store=tmp_path / "s", format="auto", **options)
    assert res.skipped == []
    store = Store.open(tmp_path / "s")
    assert [[c.id, c.name] for c in store.categories] == facts["categories"]
    assert len(store) == facts["n_images"]
    records = {r.id: r for r in store}
    for img in facts["images"]:
        rec = records[img["id"]]
        assert rec.file_name == img["file_name"]
        assert list(rec.size_wh) == img["actual_size"]
        got = sorted(
            (a.category, a.category_id, a.iscrowd, *(round(v, 2) for v in a.bbox_xyxy))
            for a in rec.annotations
        )
        want = sorted(
            (b["label"], b["cat_id"], int(b["iscrowd"]), *(round(v, 2) for v in b["xyxy"]))
            for b in img["boxes"]
        )
        assert len(got) == img["n_boxes"]
        for g, w in zip(got, want, strict=True):
            assert g[:3] == w[:3]
            assert g[3:] == pytest.approx(w[3:], abs=0.01)


def test_panoptic_segment_maps_import_as_masks(tmp_path: Path) -> None:
    """Each segment's pixels (id = R + 256 G + 256^2 B) become its RLE mask; ``isthing: 0`` makes it
    a semantic region. train's a.png is 5x5 for a 10x5 image: refused, naming the PNG."""
    import numpy as np
    from PIL import Image

    from dataforge.errors import DataError
    from dataforge.masks import decode

    sample = INTEROP / "coco" / "datumaro-coco_panoptic" / "annotations"
    import_dataset(sample / "panoptic_val.json", store=tmp_path / "s")
    store = Store.open(tmp_path / "s")
    rgb = np.asarray(Image.open(sample / "panoptic_val" / "b.png").convert("RGB")).astype(int)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    for a in store.annotations:
        m = decode(a["segmentation"], 10, 5)
        assert np.array_equal(m, ids == a["attributes"]["panoptic_segment_id"]) and m.sum() == a["area"]
        assert a["semantic"] is True  # both categories are stuff
    with pytest.raises(DataError, match=r"panoptic_train/a.png: the segment map is 5x5 but image 5 is 10x5"):
        import_dataset(sample / "panoptic_train.json", store=tmp_path / "t")
    res = import_dataset(sample / "panoptic_train.json", store=tmp_path / "u", on_error="skip")
    assert res.images == 0 and res.skipped_by_reason["image: mask size differs from image"] == 1
