"""`dataforge dedupe` and `dataforge leakage` on a store with planted duplicates: re-encoded,
resized, cropped and colour-shifted copies of some images, put in another split (issue 18)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from dataforge.api import dedupe, import_dataset, leakage, split_store, validate
from dataforge.errors import UsageError
from dataforge.store import Store
from dataforge.synthetic import make_shapes_dataset
from tests.conftest import run_dataforge

KINDS = ("reencode", "resize", "crop", "colour", "exact")


def variant(im: Image.Image, kind: str) -> Image.Image:
    w, h = im.size
    return {
        "reencode": lambda: im,
        "resize": lambda: im.resize((w * 3 // 4, h * 3 // 4)),
        "crop": lambda: im.crop((w // 25, h // 25, w - w // 25, h - h // 25)),  # 4% off each side
        "colour": lambda: ImageEnhance.Brightness(im).enhance(1.2),
    }[kind]()


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """80 shape images split 70/15/15, and a copy of each of the first 25 (5 of each kind) imported
    into the test split; the planted pairs by store id."""
    root = tmp_path_factory.mktemp("dedupe")
    make_shapes_dataset(root / "src", n_images=80, size_wh=(160, 120), max_objects=3, seed=9)
    import_dataset(source=root / "src" / "instances.json", store=root / "store")
    split_store(root / "store", ratios={"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    s = Store.open(root / "store")
    (root / "copies" / "images").mkdir(parents=True)
    images, origin = [], {}
    for k, img in enumerate(s.images[:25]):
        kind = KINDS[k % len(KINDS)]
        name = f"copy{k}-{kind}.jpg"
        src = s.images_dir / img["file_name"]
        if kind == "exact":
            data = src.read_bytes()
        else:
            buf = io.BytesIO()
            with Image.open(src) as im:
                variant(im.convert("RGB"), kind).save(buf, format="JPEG", quality=70)
            data = buf.getvalue()
        (root / "copies" / "images" / name).write_bytes(data)
        images.append({"id": k + 1, "file_name": name})
        origin[name] = (img["id"], kind)
    (root / "copies" / "c.json").write_text(
        json.dumps({"images": images, "annotations": [], "categories": []})
    )
    import_dataset(source=root / "copies" / "c.json", store=root / "store", split="test")
    s = Store.open(root / "store")
    pairs = {
        (origin[i["file_name"]][0], i["id"]): origin[i["file_name"]][1]
        for i in s.images
        if i["file_name"] in origin
    }
    return {"root": root, "store": root / "store", "pairs": pairs}


def test_dedupe_finds_every_planted_kind_and_nothing_else(planted: dict) -> None:
    """Recall and precision per kind of copy (target: recall >= 0.95, precision >= 0.9; measured
    here: every planted pair found, no other pair). Distances measured on this data: copies 0-9
    bits apart (a 4% crop is the farthest), unrelated images at least 16: the default threshold of
    10 sits between them."""
    res = dedupe(planted["store"])
    cluster_of = {i: n for n, c in enumerate(res.clusters) for i in c.image_ids}
    found = {
        pair: cluster_of.get(pair[0]) is not None and cluster_of.get(pair[0]) == cluster_of.get(pair[1])
        for pair in planted["pairs"]
    }
    for kind in KINDS:
        of_kind = [ok for pair, ok in found.items() if planted["pairs"][pair] == kind]
        assert sum(of_kind) / len(of_kind) >= 0.95, (kind, of_kind)
    reported = {
        (min(a, b), max(a, b)) for c in res.clusters for a in c.image_ids for b in c.image_ids if a < b
    }
    true = {(min(p), max(p)) for p in planted["pairs"]}
    assert len(reported & true) / len(reported) >= 0.9 and res.duplicates == len(true)
    assert {c.kind for c in res.clusters} == {"exact", "near"}
    again = dedupe(planted["store"])  # the hashes come from the cache
    assert again.hashed == 0 and [c.image_ids for c in again.clusters] == [c.image_ids for c in res.clusters]


def test_leakage_names_the_moves_and_applies_them(planted: dict, tmp_path: Path) -> None:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(planted["store"], store)
    assert any(f.code == "leakage" for f in validate(store).warnings)  # the exact copies
    p = run_dataforge("leakage", store)
    assert p.returncode == 1 and "duplicate clusters span splits" in p.stdout and "-> move" in p.stdout
    split_of = {i["id"]: i.get("split") for i in Store.open(store).images}
    crossing = [pair for pair in planted["pairs"] if split_of[pair[0]] != "test"]  # copies all sit in test
    res = leakage(store, apply=True)
    assert res.moved == len(crossing) and len(res.leaks) == len(crossing)
    assert sum(res.pairs.values()) == len(crossing) and set(res.pairs) <= {"train/test", "val/test"}
    assert leakage(store).leaks == [] and not any(f.code == "leakage" for f in validate(store).warnings)


def test_tag_all_but_one_of_each_cluster(planted: dict, tmp_path: Path) -> None:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(planted["store"], store)
    res = dedupe(store, tag="dup", keep="first")
    s = Store.open(store)
    tagged = sorted(i["id"] for i in s.images if "dup" in i.get("tags", []))
    assert res.tagged == len(tagged) == res.duplicates
    assert all(c.image_ids[0] not in tagged and set(c.image_ids[1:]) <= set(tagged) for c in res.clusters)


def test_a_duplicate_cluster_never_spans_splits_after_group_by_cluster(planted: dict, tmp_path: Path) -> None:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(planted["store"], store)
    res = split_store(
        store, ratios={"train": 0.7, "val": 0.15, "test": 0.15}, seed=3, stratify=True, group_by="cluster"
    )
    assert leakage(store).leaks == []
    assert sum(res.images.values()) == len(Store.open(store).images)
    print(f"largest gap per class: {res.deviation}")
    assert res.deviation and max(res.deviation.values()) <= 0.05  # measured 0.014: groups of 1-2 images


def test_frames_of_one_video_stay_together_and_classes_stay_balanced(tmp_path: Path) -> None:
    """60 images from 12 "videos" (a source.video field): each video's frames stay in one split.
    Groups of 5 images move a class's share in steps of about 1/12, so a split cannot match a ratio
    closely; measured over seeds 0-19: the largest gap of a class's share from its ratio was 0.086 to
    0.157 stratified (median 0.117), 0.133 to 0.282 grouped at random (median 0.217). The test
    asserts 0.2 for seeds 0-9 and that stratifying does better on average."""
    make_shapes_dataset(tmp_path / "src", n_images=60, size_wh=(64, 48), max_objects=2, seed=4)
    doc = json.loads((tmp_path / "src" / "instances.json").read_text())
    for img in doc["images"]:
        img["source"] = {"video": f"clip{(img['id'] - 1) // 5:02d}"}
    (tmp_path / "src" / "instances.json").write_text(json.dumps(doc))
    import_dataset(source=tmp_path / "src" / "instances.json", store=tmp_path / "s")
    ratios = {"train": 0.6, "val": 0.2, "test": 0.2}
    gaps = {True: [], False: []}
    for stratify in (True, False):
        for seed in range(10):
            res = split_store(
                tmp_path / "s", ratios=ratios, seed=seed, stratify=stratify, group_by="source.video"
            )
            gaps[stratify].append(max(res.deviation.values()))
            by_video: dict[str, set[str]] = {}
            for img in Store.open(tmp_path / "s").images:
                by_video.setdefault(img["source"]["video"], set()).add(img["split"])
            assert len(by_video) == 12 and all(len(v) == 1 for v in by_video.values())
    print(f"largest gaps, stratified: {gaps[True]}; random: {gaps[False]}")
    assert max(gaps[True]) <= 0.2 and sum(gaps[True]) < sum(gaps[False])
    first = split_store(tmp_path / "s", ratios=ratios, seed=0, stratify=True, group_by="source.video")
    again = split_store(tmp_path / "s", ratios=ratios, seed=0, stratify=True, group_by="source.video")
    assert again.images == first.images and again.deviation == first.deviation  # deterministic for a seed
    with pytest.raises(UsageError, match=r"--group-by 'source.camera': no image has that field"):
        split_store(tmp_path / "s", ratios=ratios, group_by="source.camera")
