"""`dataforge dedupe` and `dataforge leakage` on a store with planted duplicates: re-encoded,
resized, cropped and colour-shifted copies of some images, put in another split (issue 18)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
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
    split_store(tmp_path / "s", ratios=ratios, seed=0)  # at random: videos span splits
    p = run_dataforge("leakage", tmp_path / "s", "--group-by", "source.video")
    assert p.returncode == 1 and "groups of images sharing source.video span splits" in p.stdout
    leaks = leakage(tmp_path / "s", group_by="source.video")
    assert leaks.leaks and all(len(leak.splits) > 1 and len(leak.image_ids) == 5 for leak in leaks.leaks)
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
    assert leakage(tmp_path / "s", group_by="source.video").leaks == []
    with pytest.raises(UsageError, match=r"--group-by 'source.camera': no image has that field"):
        split_store(tmp_path / "s", ratios=ratios, group_by="source.camera")


@pytest.mark.slow
def test_duplicate_clusters_as_a_fiftyone_dataset_with_views(planted: dict, tmp_path: Path) -> None:
    """`dedupe --fiftyone NAME`: the clusters' images in a real FiftyOne (its own MongoDB), read
    back with FiftyOne in a fresh process; a dataset dedupe did not write is refused."""
    import os
    import subprocess
    import sys

    env = {"FIFTYONE_DATABASE_DIR": str(tmp_path / "fo-db"), "FIFTYONE_DO_NOT_TRACK": "true"}
    expected = dedupe(planted["store"])
    p = run_dataforge("dedupe", planted["store"], "--fiftyone", "pets-dups", env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    members = sum(len(c.image_ids) for c in expected.clusters)
    assert f"FiftyOne dataset 'pets-dups': {members} images of {len(expected.clusters)} clusters" in p.stdout
    code = (
        "import json, fiftyone as fo\n"
        "from dataforge.api import dedupe\n"
        "from dataforge.errors import UsageError\n"
        f"dedupe({str(planted['store'])!r}, fiftyone='pets-dups')  # replaces its own dataset\n"
        "fo.Dataset('other').persistent = True\n"
        "try:\n"
        f"    dedupe({str(planted['store'])!r}, fiftyone='other')\n"
        "    refused = ''\n"
        "except UsageError as e:\n"
        "    refused = str(e)\n"
        "ds = fo.load_dataset('pets-dups')\n"
        "v = ds.load_saved_view('duplicates')\n"
        "leaks = ds.load_saved_view('leaks')\n"
        "print(json.dumps({'n': len(ds), 'views': sorted(ds.list_saved_views()), 'refused': refused,\n"
        "  'order': v.values('dup_cluster'), 'ids': v.values('dataforge_id'), 'keep': v.values('dup_keep'),\n"
        "  'kinds': sorted(set(v.values('dup_kind'))), 'leaks': len(leaks),\n"
        "  'spans': sorted(set(leaks.values('dup_spans_splits')))}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["n"] == members and info["views"] == ["duplicates", "leaks"]
    assert info["order"] == sorted(info["order"]) and info["kinds"] == ["exact", "near"]
    for rank, c in enumerate(expected.clusters):
        got = [i for i, r in zip(info["ids"], info["order"], strict=True) if r == rank]
        assert sorted(got) == c.image_ids
    assert sum(info["keep"]) == len(expected.clusters)
    assert info["leaks"] > 0 and info["spans"] == [True]  # the copies sit in test, their originals not all
    assert "not written by dataforge dedupe" in info["refused"]


SEMANTIC = ("mirror", "reframe", "shift")


def classified_shapes(root: Path, seed: int, n: int = 200, epochs: int = 3) -> dict:
    """Shape scenes labelled by their largest object's class (class folders, split 80/20), a
    resnet18 trained on them for ``epochs``, and 10 copies of each kind the hashes cannot see
    (mirrored; re-framed: 12% cut off top and left, 4% bottom and right, resized back; shifted 10
    px with wrap-around) imported into the test split. Returns the store, the run and the pairs."""
    import shutil

    from PIL import ImageOps

    from dataforge.api import train

    coco = make_shapes_dataset(root / "src", n_images=n, size_wh=(96, 72), max_objects=6, seed=seed)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    largest: dict[int, tuple[float, int]] = {}
    for a in coco["annotations"]:
        if a["area"] > largest.get(a["image_id"], (0.0, 0))[0]:
            largest[a["image_id"]] = (a["area"], a["category_id"])
    for img in coco["images"]:
        if img["id"] in largest:
            folder = root / "folders" / names[largest[img["id"]][1]]
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / "src" / "images" / img["file_name"], folder / Path(img["file_name"]).name)
    store = root / "store"
    import_dataset(source=root / "folders", store=store, format="folders")
    split_store(store, ratios={"train": 0.8, "val": 0.2}, seed=seed)
    sets = ["model=resnet18", "image_size=64", f"epochs={epochs}", "batch_size=32", "base_batch_size=32"]
    train(store, trainer="torchvision-classifier", out=root / "run", sets=[*sets, "lr=0.05", f"seed={seed}"])
    s = Store.open(store)
    (root / "copies" / "images").mkdir(parents=True)
    images, origin = [], {}
    for k, img in enumerate(s.images[:30]):
        kind = SEMANTIC[k % 3]
        with Image.open(s.images_dir / img["file_name"]) as im:
            im = im.convert("RGB")
            w, h = im.size
            if kind == "mirror":
                copy = ImageOps.mirror(im)
            elif kind == "reframe":
                copy = im.crop((w * 12 // 100, h * 12 // 100, w - w // 25, h - h // 25)).resize((w, h))
            else:
                copy = Image.fromarray(np.roll(np.asarray(im), 10, axis=1))
        name = f"copy{k}-{kind}.jpg"
        copy.save(root / "copies" / "images" / name, quality=85)
        images.append({"id": k + 1, "file_name": name})
        origin[name] = (img["id"], kind)
    (root / "copies" / "c.json").write_text(
        json.dumps({"images": images, "annotations": [], "categories": []})
    )
    import_dataset(source=root / "copies" / "c.json", store=store, split="test")
    pairs = {
        (origin[i["file_name"]][0], i["id"]): origin[i["file_name"]][1]
        for i in Store.open(store).images
        if i["file_name"] in origin
    }
    return {"store": store, "run": root / "run", "pairs": pairs}


def semantic_scores(res: object, pairs: dict) -> dict[str, float]:
    """Per kind the share of planted pairs in one cluster, and the precision of all reported pairs."""
    cluster_of = {i: n for n, c in enumerate(res.clusters) for i in c.image_ids}  # type: ignore[attr-defined]
    out = {}
    for kind in SEMANTIC:
        found = [
            cluster_of.get(a) is not None and cluster_of.get(a) == cluster_of.get(b)
            for (a, b), k in pairs.items()
            if k == kind
        ]
        out[kind] = sum(found) / len(found)
    reported = {
        (a, b)
        for c in res.clusters
        for a in c.image_ids
        for b in c.image_ids
        if a < b  # type: ignore[attr-defined]
    }
    true = {(min(p), max(p)) for p in pairs}
    out["precision"] = len(reported & true) / max(1, len(reported))
    return out


def test_a_classifiers_embeddings_find_the_copies_hashes_cannot(tmp_path: Path) -> None:
    """`dedupe --embeddings RUN`: mirrored, re-framed and shifted copies, which the perceptual
    hashes miss entirely. Measured (benchmarks/quality_margins.py --case semantic, seeds 0-2 x
    1 and 2 torch threads, resnet18 trained 3 epochs on 200 scenes): mirrored 1.0 found,
    re-framed 0.6-0.8, shifted 0.5-0.7; precision 0.57-0.64 (scenes of one background colour
    and class sit as close as a copy). A review aid on such data, not a filter."""
    p = classified_shapes(tmp_path, 0)
    hashes_only = semantic_scores(dedupe(p["store"]), p["pairs"])
    assert hashes_only["mirror"] == hashes_only["reframe"] == hashes_only["shift"] == 0.0
    res = dedupe(p["store"], embeddings=p["run"])
    got = semantic_scores(res, p["pairs"])
    assert got["mirror"] >= 0.9 and got["reframe"] >= 0.5 and got["precision"] >= 0.5, got
    semantic = [c for c in res.clusters if c.kind == "semantic"]
    assert semantic and all(c.similarity is not None and c.similarity >= 0.95 for c in semantic)
    assert max(len(c.image_ids) for c in res.clusters) <= 3  # mutual neighbours: no chains of a class


def test_embeddings_need_a_classifier_run(planted: dict, tmp_path: Path) -> None:
    from dataforge.training.checkpoint import save_checkpoint

    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "best.pt", {"task": "detection", "trainer": "torchvision-detector"})
    with pytest.raises(UsageError, match="a detection run; embeddings come from a classifier"):
        dedupe(planted["store"], embeddings=tmp_path / "run")
    r = run_dataforge("dedupe", planted["store"], "--exact-only", "--embeddings", tmp_path / "run")
    assert r.returncode != 0 and "--exact-only" in r.stderr
