"""TFRecord: our records read with independent implementations, shards, and damaged files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataforge.api import export_dataset, import_dataset
from dataforge.errors import DataError
from dataforge.formats.tfrecord import parse_label_map
from dataforge.formats.tfrecord.example import encode_example_py, parse_example, parse_example_py
from tests.conftest import file_bytes


def _example_class():  # type: ignore[no-untyped-def]
    """tf.train.Example on Google's protobuf runtime, which the pure-Python codec is checked against."""
    from dataforge.formats.tfrecord.example import _pb_example

    return _pb_example()


def test_the_python_codec_and_googles_protobuf_agree() -> None:
    Example = _example_class()
    features = ({"a": [b"x", b""], "e": []}, {"f": [0.25, 1e-3], "g": []}, {"i": [0, 5, -7, 2**40]})
    ours = encode_example_py(*features)
    msg = Example()
    for kind, values in zip(("bytes_list", "float_list", "int64_list"), features, strict=True):
        for k, v in values.items():
            getattr(msg.features.feature[k], kind).value.extend(v)
    assert ours == msg.SerializeToString(deterministic=True)
    theirs = Example.FromString(ours)
    assert list(theirs.features.feature["a"].bytes_list.value) == [b"x", b""]
    assert list(theirs.features.feature["i"].int64_list.value) == [0, 5, -7, 2**40]
    assert list(theirs.features.feature["f"].float_list.value) == pytest.approx([0.25, 1e-3])
    # and we read what Google's runtime writes (it may order and pack fields differently)
    msg = Example()
    msg.features.feature["x"].float_list.value.extend([0.5, 0.75])
    msg.features.feature["y"].int64_list.value.append(-1)
    msg.features.feature["z"].bytes_list.value.append("ü".encode())
    want = {"x": [0.5, 0.75], "y": [-1], "z": ["ü".encode()]}
    assert parse_example_py(msg.SerializeToString()) == want
    assert parse_example(msg.SerializeToString()) == want


def test_typed_reads_find_features_of_an_unexpected_kind() -> None:
    """``parse_example(keys={name: kind})`` looks up the expected kind first; a writer that stored a
    feature as another kind (labels as floats, an empty list) still reads right."""
    Example = _example_class()
    msg = Example()
    msg.features.feature["label"].float_list.value.extend([1.0, 2.0])
    msg.features.feature["empty"].bytes_list.value.extend([])
    msg.features.feature["w"].int64_list.value.append(64)
    msg.features.feature["ignored"].bytes_list.value.append(b"x")
    got = parse_example(
        msg.SerializeToString(), {"label": "int64", "empty": "bytes", "w": "int64", "gone": "bytes"}
    )
    assert {k: list(v) for k, v in got.items()} == {"label": [1.0, 2.0], "empty": [], "w": [64]}
    assert {k: list(v) for k, v in parse_example_py(msg.SerializeToString()).items() if k in got} == {
        k: list(v) for k, v in got.items()
    }


def test_export_writes_what_googles_protobuf_writes() -> None:
    """The exporter's Example writer (cached prefixes, one struct call for the boxes) gives the same
    bytes as filling a protobuf message and serializing it deterministically."""
    import hashlib
    import random

    from dataforge.formats.tfrecord.example import encode_example
    from dataforge.formats.tfrecord.writer import ExampleWriter

    rng = random.Random(3)
    names = {3: b"cat", 7: "größe über".encode(), 9: b"x" * 200}
    tf_id = {3: 1, 7: 2, 9: 300}
    writer = ExampleWriter(tf_id, names)
    for i in range(300):
        w, h = rng.choice([(64, 48), (1, 1), (20000, 30000)])
        data = rng.randbytes(rng.choice([0, 10, 127, 128, 16383, 16384, 70000]))
        anns = []
        for _ in range(rng.choice([0, 1, 2, 5, 130])):
            bw = rng.choice([0.0, -1.0, rng.uniform(0.5, w)])
            anns.append(
                {
                    "bbox": [rng.uniform(0, w / 2), rng.uniform(0, h / 2), bw, rng.uniform(0.5, h)],
                    "category_id": rng.choice(list(names)),
                }
            )
        img = {
            "id": rng.choice([0, i, 2**40]),
            "file_name": rng.choice(["a.jpg", "sub dir/Ünïcode.PNG", "x.jpeg", "noext"]),
            "width": w,
            "height": h,
        }
        if i % 2:
            img["sha256"] = hashlib.sha256(data).hexdigest()
        got, kept, lost = writer.example(img, data, anns)
        boxes = [(a["bbox"], a["category_id"]) for a in anns if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        ext = img["file_name"].rsplit(".", 1)[-1].lower() if "." in img["file_name"] else ""
        want = encode_example(
            {
                "image/encoded": [data],
                "image/format": [("jpeg" if ext in ("jpg", "jpeg") else ext).encode()],
                "image/filename": [img["file_name"].encode()],
                "image/source_id": [str(img["id"]).encode()],
                "image/key/sha256": [hashlib.sha256(data).hexdigest().encode()],
                "image/object/class/text": [names[c] for _, c in boxes],
            },
            {
                "image/object/bbox/xmin": [b[0] / w for b, _ in boxes],
                "image/object/bbox/ymin": [b[1] / h for b, _ in boxes],
                "image/object/bbox/xmax": [(b[0] + b[2]) / w for b, _ in boxes],
                "image/object/bbox/ymax": [(b[1] + b[3]) / h for b, _ in boxes],
            },
            {
                "image/width": [w],
                "image/height": [h],
                "image/object/class/label": [tf_id[c] for _, c in boxes],
            },
        )
        assert got == want, img
        assert (kept, lost) == (len(boxes), len(anns) - len(boxes))


def test_exported_shards_read_with_tensorboards_record_reader(coco_factory, tmp_path: Path) -> None:
    from tensorboard.compat.tensorflow_stub import errors
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New

    src = coco_factory(
        [(i, f"{i}.jpg", (32, 16)) for i in range(1, 6)], [(i, i, "cat", [1, 2, 10, 5]) for i in range(1, 6)]
    )
    import_dataset(src, store=tmp_path / "s")
    res = export_dataset(tmp_path / "s", format="tfrecord", out=tmp_path / "tf", shards="2")
    shards = sorted(p.name for p in (tmp_path / "tf").glob("*.tfrecord*"))
    assert shards == ["default.tfrecord-00000-of-00002", "default.tfrecord-00001-of-00002"]
    Example = _example_class()
    seen = []
    for name in shards:
        reader = PyRecordReader_New(str(tmp_path / "tf" / name))
        while True:
            try:
                reader.GetNext()
            except errors.OutOfRangeError:
                break
            ex = Example.FromString(reader.record())
            f = ex.features.feature
            seen.append(f["image/filename"].bytes_list.value[0].decode())
            assert f["image/object/class/label"].int64_list.value[0] == 1
            assert f["image/object/bbox/xmax"].float_list.value[0] == pytest.approx(11 / 32)
    assert sorted(seen) == [f"{i}.jpg" for i in range(1, 6)] and res.images == 5
    assert parse_label_map((tmp_path / "tf" / "label_map.pbtxt").read_text()) == {1: "cat", 2: "dog"}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-10], r"a.tfrecord: record 1: truncated"),
        (lambda b: b[:-3] + bytes([b[-3] ^ 0xFF]) + b[-2:], r"a.tfrecord: record 1: data CRC mismatch"),
        (lambda b: b + b"\x01\x02", r"a.tfrecord: record 2: truncated header"),
    ],
)
def test_damaged_records(damage, message: str, coco_factory, tmp_path: Path, simple_coco: Path) -> None:
    src = coco_factory([(1, "1.jpg", (32, 16)), (2, "2.jpg", (32, 16))], [(1, 1, "cat", [1, 2, 10, 5])])
    import_dataset(src, store=tmp_path / "s0")
    export_dataset(tmp_path / "s0", format="tfrecord", out=tmp_path / "tf")
    rec = tmp_path / "tf" / "default.tfrecord"
    bad = tmp_path / "tf" / "a.tfrecord"
    bad.write_bytes(damage(rec.read_bytes()))
    rec.unlink()
    import_dataset(simple_coco, store=tmp_path / "s")
    before = file_bytes(tmp_path / "s")
    with pytest.raises(DataError, match=message):
        import_dataset(tmp_path / "tf", store=tmp_path / "s")
    assert file_bytes(tmp_path / "s") == before


def test_label_map_variants() -> None:
    text = "item {\n name: 'b'\n id: 2\n display_name: 'Bee'\n}\nitem { id: 1 name: \"a\" }\n"
    assert parse_label_map(text) == {2: "b", 1: "a"}


def test_objects_that_need_care(tmp_path: Path) -> None:
    """Records outside the one-pass path: categories by class/text alone (numbered in order of
    appearance), bbox lists of different lengths, and boxes stored as int64 (read as numbers)."""
    from dataforge.formats.tfrecord.example import encode_example
    from dataforge.formats.tfrecord.framing import write_record
    from tests.conftest import jpeg_bytes

    img = jpeg_bytes((40, 20))

    def record(
        name: str, floats: dict[str, list[float]], ints: dict[str, list[int]], texts: list[bytes]
    ) -> bytes:
        return encode_example(
            {"image/encoded": [img], "image/filename": [name.encode()], "image/object/class/text": texts},
            floats,
            {"image/width": [40], "image/height": [20], **ints},
        )

    box = {"image/object/bbox/xmin": [0.5], "image/object/bbox/ymin": [0.25], "image/object/bbox/xmax": [1.0]}
    src = tmp_path / "train.tfrecord"
    with src.open("wb") as f:
        write_record(f, record("a.jpg", {**box, "image/object/bbox/ymax": [0.75]}, {}, [b"dog"]))
        write_record(f, record("b.jpg", {**box, "image/object/bbox/ymax": [0.75, 1.0]}, {}, [b"cat", b"dog"]))
        write_record(
            f,
            record(
                "c.jpg",
                {},
                {
                    "image/object/bbox/xmin": [0],
                    "image/object/bbox/ymin": [0],
                    "image/object/bbox/xmax": [1],
                    "image/object/bbox/ymax": [1],
                },
                [b"cat"],
            ),
        )
    res = import_dataset(src, store=tmp_path / "s", on_error="skip")
    assert [(s.kind, s.reason) for s in res.skipped] == [("annotation", "bad bbox")] * 2
    for k, skipped in enumerate(res.skipped):
        assert f"train.tfrecord record 1 object {k}: bbox lists have different lengths" in skipped.message
    from dataforge.store import Store

    store = Store.open(tmp_path / "s")
    assert [(c.id, c.name) for c in store.categories] == [(1, "dog"), (2, "cat")]
    got = {
        r.file_name: [
            (store.index.category_names[a["category_id"]], a["bbox"]) for a in store.index.anns_by_image[r.id]
        ]
        for r in store
    }
    assert got == {
        "train/a.jpg": [("dog", [20.0, 5.0, 20.0, 10.0])],
        "train/b.jpg": [],
        "train/c.jpg": [("cat", [0.0, 0.0, 40.0, 20.0])],
    }


def test_export_of_a_box_beyond_float32_is_a_clear_error(coco_factory, tmp_path: Path) -> None:
    """A hand-edited store with a box no float32 can hold: one error naming the image, no crash."""
    import json

    src = coco_factory([(1, "a.jpg", (32, 16))], [(1, 1, "cat", [1, 2, 10, 5])])
    import_dataset(src, store=tmp_path / "s")
    path = tmp_path / "s" / "annotations.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["bbox"] = [1e300, 2, 10, 5]
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"image 1 \(a\.jpg\): a box lies beyond what float32"):
        export_dataset(tmp_path / "s", format="tfrecord", out=tmp_path / "tf")


def test_records_that_name_their_images_read_them_from_images(tmp_path: Path) -> None:
    """Some exporters write image/filename and an empty image/encoded. Without --images that is a
    one-line error per image saying to pass it; with --images each image is read by its name, as
    written or by its base name (the exporter's folders are not this machine's), its real size
    probed and its boxes made absolute with it."""
    from dataforge.formats.tfrecord.example import encode_example
    from dataforge.formats.tfrecord.framing import write_record
    from dataforge.store import Store
    from tests.conftest import jpeg_bytes

    def record(name: str) -> bytes:
        return encode_example(
            {"image/encoded": [b""], "image/filename": [name.encode()], "image/object/class/text": [b"cat"]},
            {
                "image/object/bbox/xmin": [0.25],
                "image/object/bbox/ymin": [0.5],
                "image/object/bbox/xmax": [0.75],
                "image/object/bbox/ymax": [1.0],
            },
            {"image/width": [40], "image/height": [20], "image/object/class/label": [1]},
        )

    src = tmp_path / "records" / "data.tfrecord"
    src.parent.mkdir()
    with src.open("wb") as f:
        write_record(f, record("a.jpg"))
        write_record(f, record("C:\\Users\\me\\export\\b.jpg"))
    (src.parent / "label_map.pbtxt").write_text("item { id: 1 name: 'cat' }\n")
    with pytest.raises(
        DataError, match=r"data.tfrecord record 0: image/encoded is empty.*pass --images FOLDER"
    ):
        import_dataset(src, store=tmp_path / "none")
    pics = tmp_path / "pictures"
    pics.mkdir()
    (pics / "a.jpg").write_bytes(jpeg_bytes((40, 20)))
    (pics / "b.jpg").write_bytes(jpeg_bytes((40, 20)))
    res = import_dataset(src, store=tmp_path / "s", images=pics)
    assert res.images == 2 and not res.skipped
    store = Store.open(tmp_path / "s")
    assert sorted(a["bbox"] for a in store.annotations) == [[10.0, 10.0, 20.0, 10.0]] * 2
    assert sorted(r.file_name for r in store) == ["data/a.jpg", "data/b.jpg"]  # not data/C:/Users/...
