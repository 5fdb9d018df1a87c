"""The ``masks`` format (images/ + masks/ label-map PNGs + a class table): the layouts ADE20K,
CamVid and Kaggle sets use import as semantic RLE regions that decode back to the label map
exactly; export writes them back byte-for-byte in value; every bad mask is a one-line error naming
its file, the store unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dataforge.api import export_dataset, import_dataset
from dataforge.errors import DataError
from dataforge.masks import decode, paint_label_map, read_label_map, write_label_map
from dataforge.store import Store
from tests.conftest import shapes_store

W, H = 48, 32


def random_label_map(rng: np.random.Generator, values: list[int], void: int | None = 255) -> np.ndarray:
    """Blocks of random classes (so every class forms regions of several shapes), a void border."""
    small = rng.choice(values, size=(H // 4, W // 4))
    lm = np.kron(small, np.ones((4, 4), dtype=np.int64))
    if void is not None:
        lm[0, :] = void
    return lm


def label_map_set(
    root: Path,
    table: tuple[str, str],
    values: list[int],
    *,
    n: int = 3,
    images: str = "images",
    masks: str = "masks",
    split: str = "",
    suffix: str = "",
    void: int | None = 255,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A label-map dataset; returns each image's label map by image name."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        name = f"{split + '/' if split else ''}im{i}"
        (root / images / name).parent.mkdir(parents=True, exist_ok=True)
        (root / masks / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / images / f"{name}.jpg"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        lm = random_label_map(rng, values, void)
        write_label_map(root / masks / f"{name}{suffix}.png", lm)
        out[f"{name}.jpg"] = lm
    (root / table[0]).write_text(table[1])
    return out


def decoded_label_map(store: Store, file_name: str, fill: int = 255) -> np.ndarray:
    """The label map a store's semantic regions paint for one image (value = category label_value)."""
    img = next(i for i in store.images if i["file_name"] == file_name)
    value = {c["id"]: c["label_value"] for c in store.data["categories"]}
    regions = [(a["segmentation"], value[a["category_id"]]) for a in store.index.anns_by_image[img["id"]]]
    assert all(a["semantic"] for a in store.index.anns_by_image[img["id"]])
    return paint_label_map(regions, img["height"], img["width"], fill)[0]


def test_label_maps_import_exactly_and_round_trip(tmp_path: Path) -> None:
    maps = label_map_set(tmp_path / "src", ("classes.txt", "background\nroad\ncar\nperson\n"), [0, 1, 2, 3])
    res = import_dataset(tmp_path / "src", store=tmp_path / "s")  # detected
    assert res.format == "masks" and res.images == 3
    store = Store.open(tmp_path / "s")
    assert [(c["name"], c["label_value"]) for c in store.data["categories"]] == [
        ("background", 0),
        ("road", 1),
        ("car", 2),
        ("person", 3),
    ]
    for name, lm in maps.items():
        assert np.array_equal(decoded_label_map(store, name), lm)  # void stays unlabelled
        for a in store.index.anns_by_image[next(i["id"] for i in store.images if i["file_name"] == name)]:
            x, y, w, h = a["bbox"]  # the box is the region's extent
            m = decode(a["segmentation"], H, W)
            ys, xs = np.nonzero(m)
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert a["area"] == int(m.sum())
    out = export_dataset(tmp_path / "s", format="masks", out=tmp_path / "out")
    assert out.dropped == {} and out.approximated == {} and out.annotations == len(store.annotations)
    for name, lm in maps.items():
        assert np.array_equal(read_label_map(tmp_path / "out" / "masks" / name.replace(".jpg", ".png")), lm)
    import_dataset(tmp_path / "out", store=tmp_path / "s2")
    a, b = Store.open(tmp_path / "s").annotations, Store.open(tmp_path / "s2").annotations
    assert [(x["segmentation"], x["category_id"]) for x in a] == [
        (y["segmentation"], y["category_id"]) for y in b
    ]


def test_ade20k_layout_with_its_object_table_and_splits(tmp_path: Path) -> None:
    """ADE20K: images/training + annotations/training, objectInfo150.csv naming classes 1..N; 0 is
    'not labelled' (no class 0), which the import says."""
    table = "Idx,Ratio,Train,Val,Name\n1,0.15,1,1,wall\n2,0.10,1,1,building;edifice\n3,0.09,1,1,sky\n"
    maps = label_map_set(
        tmp_path / "ade",
        ("objectInfo150.csv", table),
        [0, 1, 2, 3],
        masks="annotations",
        split="training",
        void=None,
    )
    res = import_dataset(tmp_path / "ade", store=tmp_path / "s")
    assert any("no class 0" in w for w in res.warnings), res.warnings
    store = Store.open(tmp_path / "s")
    assert {i["split"] for i in store.images} == {"train"}
    assert [c["name"] for c in store.data["categories"]] == ["wall", "building;edifice", "sky"]
    for name, lm in maps.items():
        assert np.array_equal(decoded_label_map(store, name, fill=0), lm)


def test_camvid_colour_masks_with_a_suffix(tmp_path: Path) -> None:
    """CamVid-style: RGB masks named <stem>_L.png, class_dict.csv with name,r,g,b."""
    root = tmp_path / "camvid"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    colours = {(128, 128, 128): 0, (128, 0, 0): 1, (64, 0, 128): 2}
    (root / "class_dict.csv").write_text("name,r,g,b\nSky,128,128,128\nBuilding,128,0,0\nCar,64,0,128\n")
    rng = np.random.default_rng(3)
    lm = random_label_map(rng, [0, 1, 2], void=None)
    rgb = np.zeros((H, W, 3), np.uint8)
    for c, v in colours.items():
        rgb[lm == v] = c
    cv2.imwrite(str(root / "images" / "f001.png"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    Image.fromarray(rgb).save(root / "labels" / "f001_L.png")
    import_dataset(root, store=tmp_path / "s", format="masks", mask_suffix="_L")
    assert np.array_equal(decoded_label_map(Store.open(tmp_path / "s"), "f001.png"), lm)
    rgb[0, 0] = (1, 2, 3)  # a colour the table does not have
    Image.fromarray(rgb).save(root / "labels" / "f001_L.png")
    with pytest.raises(DataError, match=r"labels/f001_L.png: pixel values an RGB colour not in the table"):
        import_dataset(root, store=tmp_path / "t", format="masks", mask_suffix="_L")


def test_more_than_255_classes_travel_as_16_bit(tmp_path: Path) -> None:
    values = [0, 7, 300, 1000]
    table = json.dumps({str(v): f"class{v}" for v in values})
    maps = label_map_set(tmp_path / "src", ("classes.json", table), values, void=None)
    import_dataset(tmp_path / "src", store=tmp_path / "s")
    export_dataset(tmp_path / "s", format="masks", out=tmp_path / "out")
    for name, lm in maps.items():
        written = tmp_path / "out" / "masks" / name.replace(".jpg", ".png")
        assert Image.open(written).mode.startswith("I")
        assert np.array_equal(read_label_map(written), lm)


@pytest.mark.parametrize(
    "case, match",
    [
        ("wrong size", r"masks/im1.png: the mask is 40x32 but its image im1.jpg is 48x32"),
        ("value outside the table", r"masks/im1.png: pixel values 9 are not in the class table classes.txt"),
        ("missing mask", r"im1.jpg: no mask masks/im1.png"),
        ("not a png", r"masks/im1.png: cannot read the label map"),
    ],
)
def test_a_bad_mask_is_a_one_line_error_naming_its_file(case: str, match: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    label_map_set(src, ("classes.txt", "background\na\nb\n"), [0, 1, 2])
    bad = src / "masks" / "im1.png"
    if case == "wrong size":
        write_label_map(bad, np.zeros((H, W - 8), np.int64))
    elif case == "value outside the table":
        lm = read_label_map(bad)
        lm[5, 5] = 9
        write_label_map(bad, lm)
    elif case == "missing mask":
        bad.unlink()
    else:
        bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=match) as info:
        import_dataset(src, store=tmp_path / "s")
    assert "\n" not in info.value.message
    assert not (tmp_path / "s" / "annotations.json").exists()
    res = import_dataset(src, store=tmp_path / "t", on_error="skip")
    assert res.images == 2  # the image whose labels are unknown is skipped, not imported unlabelled
    assert [s["reason"] for s in json.loads(res.report.read_text())["skipped"] if s["kind"] == "image"]


def test_instance_masks_export_as_class_maps_and_say_what_was_merged(tmp_path: Path) -> None:
    store = Store.open(shapes_store(tmp_path, n=4, seed=1))
    n_masks = sum(1 for a in store.annotations if a.get("segmentation"))
    res = export_dataset(store.root, format="masks", out=tmp_path / "out")
    assert res.approximated == {"instance masks (merged into their class's pixels)": n_masks}
    n_points = sum(1 for a in store.annotations if a.get("keypoints"))
    assert n_points and res.dropped == {"keypoints (the masks format holds no keypoints)": n_points}
    value_of_name = {
        row.split(",")[1]: int(row.split(",")[0])
        for row in (tmp_path / "out" / "classes.csv").read_text().splitlines()[1:]
    }
    assert value_of_name["background"] == 0
    names = store.index.category_names
    for img in store.images:
        # each pixel takes the class of the smallest object covering it (larger ones painted first)
        want = np.zeros((img["height"], img["width"]), np.int64)
        for a in sorted(store.index.anns_by_image.get(img["id"], []), key=lambda a: -a["area"]):
            want[decode(a["segmentation"], img["height"], img["width"])] = value_of_name[
                names[a["category_id"]]
            ]
        png = tmp_path / "out" / "masks" / img["file_name"].rsplit(".", 1)[0]
        assert np.array_equal(read_label_map(png.with_suffix(".png")), want)
    res = import_dataset(tmp_path / "out", store=tmp_path / "s2")
    assert res.annotations == sum(
        len(np.unique(read_label_map(p))) for p in sorted((tmp_path / "out" / "masks").rglob("*.png"))
    )


def test_formats_without_semantic_regions_say_they_wrote_them_as_instances(tmp_path: Path) -> None:
    label_map_set(tmp_path / "src", ("classes.txt", "background\na\nb\n"), [0, 1, 2])
    import_dataset(tmp_path / "src", store=tmp_path / "s")
    n = len(Store.open(tmp_path / "s").annotations)
    for fmt in ("yolo", "labelstudio"):
        res = export_dataset(tmp_path / "s", format=fmt, out=tmp_path / fmt)
        assert res.approximated[f"semantic regions (the {fmt} format writes them as instance masks)"] == n
    assert export_dataset(tmp_path / "s", format="coco", out=tmp_path / "coco").approximated == {}
