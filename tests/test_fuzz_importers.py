"""Fuzzing: random and mutated files thrown at every importer.

Only ``DataforgeError`` may come out, never another exception, and the store is never half-written:
after each attempt it either does not exist (a failed first import) or opens and validates.
The examples are derandomized so CI is reproducible; set FUZZ_EXAMPLES=500 to search harder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataforge.api import export_dataset, import_dataset, validate
from dataforge.errors import DataforgeError
from dataforge.store import Store

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
EXPORTS = {
    "coco": "annotations.json",
    "yolo": "data.yaml",
    "voc": "",
    "tfrecord": "",
    "csv": "annotations.csv",
    "labelstudio": "tasks.json",
    "folders": "",
    "openimages": "",
}
CVAT = """<annotations><version>1.1</version><meta><task><labels><label><name>cat</name></label></labels></task></meta>
<image id="0" name="a.jpg" width="40" height="20"><box label="cat" xtl="1" ytl="1" xbr="5" ybr="6" occluded="0">
<attribute name="x">1</attribute></box><tag label="cat"/></image></annotations>"""


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    from tests.conftest import jpeg_bytes, make_coco

    root = tmp_path_factory.mktemp("fuzz")
    src = make_coco(
        root / "src",
        [(1, "a.jpg", (40, 20)), (2, "sub/b.jpg", (30, 30))],
        [(1, 1, "cat", [1, 1, 4, 5]), (2, 2, "dog", [2, 3, 10, 10])],
    )
    import json

    doc = json.loads(src.read_text())
    doc["images"][0]["labels"] = [1]
    src.write_text(json.dumps(doc))
    import_dataset(src, store=root / "store")
    out: dict[str, tuple[Path, str]] = {}
    for fmt, entry in EXPORTS.items():
        export_dataset(root / "store", format=fmt, out=root / fmt)
        out[fmt] = (root / fmt, entry)
    (root / "cvat" / "images").mkdir(parents=True)
    (root / "cvat" / "images" / "a.jpg").write_bytes(jpeg_bytes((40, 20)))
    (root / "cvat" / "ann.xml").write_text(CVAT)
    out["cvat"] = (root / "cvat", "ann.xml")
    return out


def _files(folder: Path) -> list[Path]:
    """Every file of a sample: annotation files, and images (corrupt images must be handled too)."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("replace"), st.just(0), st.binary(max_size=300)),
)


def mutate(data: bytes, m: tuple) -> bytes:
    kind, pos, arg = m
    pos = pos % (len(data) + 1)
    if kind == "flip":
        if not data:  # an empty file (a YOLO label file of an image without objects)
            return bytes([arg])
        pos = min(pos, len(data) - 1)
        return data[:pos] + bytes([data[pos] ^ arg]) + data[pos + 1 :]
    if kind == "truncate":
        return data[:pos]
    if kind == "insert":
        return data[:pos] + arg + data[pos:]
    return arg


def fuzz(folder: Path, entry: str, fmt: str, options: dict[str, str]) -> None:
    """Import mutated copies of the sample in ``folder``: only DataforgeErrors, never a half store."""
    files = _files(folder)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(which=st.integers(0, len(files) - 1), m=mutation, skip=st.booleans())
    def run(which: int, m: tuple, skip: bool) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "sample"
            shutil.copytree(folder, work)
            target = work / files[which].relative_to(folder)
            target.write_bytes(mutate(target.read_bytes(), m))
            store = Path(tmp) / "store"
            with contextlib.suppress(DataforgeError):
                import_dataset(
                    work / entry if entry else work,
                    store=store,
                    format=fmt,
                    on_error="skip" if skip else "fail",
                    **options,
                )
            if store.exists():
                Store.open(store)  # never half-written: a store that exists opens
                assert validate(store).ok, [f.message for f in validate(store).errors]

    run()


@pytest.mark.parametrize("fmt", sorted([*EXPORTS, "cvat"]))
def test_importers_survive_mutated_input(fmt: str, samples: dict[str, tuple[Path, str]]) -> None:
    folder, entry = samples[fmt]
    fuzz(folder, entry, fmt, {})


#: masks and keypoints: format -> (entry file, import options) for a shapes store exported to it
SHAPE_EXPORTS: dict[str, tuple[str, dict[str, str]]] = {
    "coco": ("annotations.json", {}),
    "voc": ("", {"masks": "true"}),
    "masks": ("", {}),
    "labelstudio": ("tasks.json", {}),
    "yolo": ("data.yaml", {}),
}
CVAT_SHAPES = """<annotations><version>1.1</version><meta><task><labels><label><name>cat</name></label>
<label><name>person</name><type>skeleton</type><svg>&lt;line data-node-from="1" data-node-to="2"&gt;&lt;/line&gt;
&lt;circle data-node-id="1" data-label-name="a"&gt;&lt;/circle&gt;&lt;circle data-node-id="2" data-label-name="b"&gt;&lt;/circle&gt;</svg></label>
<label><name>a</name><parent>person</parent></label><label><name>b</name><parent>person</parent></label></labels></task></meta>
<image id="0" name="a.jpg" width="40" height="20"><polygon label="cat" points="1,1;9,1;9,8"/>
<mask label="cat" rle="3, 4, 5" left="2" top="2" width="4" height="3"/><points label="cat" points="3,3;5,5"/>
<polyline label="cat" points="1,1;2,2;3,1"/><skeleton label="person"><points label="a" points="4,4" outside="0"/>
<points label="b" points="6,6" outside="1"/></skeleton></image></annotations>"""


@pytest.fixture(scope="module")
def shape_samples(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, str, str, dict[str, str]]]:
    """Sample name -> (folder, entry file, format, import options)."""
    from tests.conftest import INTEROP, jpeg_bytes, shapes_store

    root = tmp_path_factory.mktemp("fuzz-shapes")
    store = shapes_store(root, n=2, seed=5, size_wh=(40, 30))
    out: dict[str, tuple[Path, str, str, dict[str, str]]] = {}
    for fmt, (entry, options) in SHAPE_EXPORTS.items():
        export_dataset(store, format=fmt, out=root / fmt)
        out[fmt] = (root / fmt, entry, fmt, options)
    (root / "cvat" / "images").mkdir(parents=True)
    (root / "cvat" / "images" / "a.jpg").write_bytes(jpeg_bytes((40, 20)))
    (root / "cvat" / "ann.xml").write_text(CVAT_SHAPES)
    out["cvat"] = (root / "cvat", "ann.xml", "cvat", {})
    panoptic = root / "panoptic"  # Datumaro's val subset: segment PNGs with RGB-encoded ids
    shutil.copytree(INTEROP / "coco" / "datumaro-coco_panoptic", panoptic)
    (panoptic / "annotations" / "panoptic_train.json").unlink()  # its PNG is not its image's size
    out["coco-panoptic"] = (panoptic, "annotations/panoptic_val.json", "coco", {})
    return out


@pytest.mark.parametrize("sample", sorted([*SHAPE_EXPORTS, "cvat", "coco-panoptic"]))
def test_mask_and_keypoint_parsers_survive_mutated_input(
    sample: str, shape_samples: dict[str, tuple[Path, str, str, dict[str, str]]]
) -> None:
    """The same, for files that carry masks and keypoints: label-map and VOC PNGs, Label Studio
    brush RLE, CVAT masks and skeletons, YOLO -seg/-pose lines, COCO RLE and panoptic PNGs."""
    folder, entry, fmt, options = shape_samples[sample]
    # the clean sample imports: the fuzzing starts from a file the parser accepts
    with tempfile.TemporaryDirectory() as tmp:
        import_dataset(folder / entry if entry else folder, store=Path(tmp) / "s", format=fmt, **options)
    fuzz(folder, entry, fmt, options)
