"""Label Studio JSON import: which annotation wins, URL forms, percent boxes, choices, rotated boxes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataforge.api import import_dataset
from dataforge.errors import DataError
from dataforge.formats.labelstudio_json import label_config, ref_to_path
from dataforge.store import Store
from tests.conftest import jpeg_bytes


def rect(label: str, x: float, y: float, w: float, h: float, rotation: float = 0, size=(640, 480)) -> dict:
    return {
        "id": f"r-{label}-{x}",
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": size[0],
        "original_height": size[1],
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]},
    }


def write_tasks(root: Path, tasks: list[dict]) -> Path:
    (root / "ds1").mkdir(parents=True)
    (root / "ds1" / "a.png").write_bytes(jpeg_bytes((640, 480)))
    (root / "ds1" / "b b.jpg").write_bytes(jpeg_bytes((333, 217), (9, 9, 9)))
    (root / "export.json").write_text(json.dumps(tasks))
    return root / "export.json"


def test_latest_non_cancelled_annotation_wins_and_urls_resolve(tmp_path: Path) -> None:
    tasks = [
        {
            "id": 1,
            "data": {"image": "/data/local-files/?d=ds1/a.png"},
            "annotations": [
                {
                    "id": 10,
                    "updated_at": "2026-01-02T00:00:00Z",
                    "was_cancelled": False,
                    "completed_by": 3,
                    "result": [rect("cat", 1.953125, 4.375, 7.34375, 10.270833333333334)],
                },
                {
                    "id": 11,
                    "updated_at": "2026-01-03T00:00:00Z",
                    "was_cancelled": True,
                    "result": [rect("dog", 0, 0, 50, 50)],
                },
                {
                    "id": 9,
                    "updated_at": "2026-01-01T00:00:00Z",
                    "was_cancelled": False,
                    "result": [rect("dog", 0, 0, 5, 5)],
                },
            ],
        },
        {
            "id": 2,
            "data": {"image": "/data/local-files/?d=ds1/b%20b.jpg"},
            "annotations": [
                {
                    "id": 12,
                    "updated_at": "2026-01-01T00:00:00Z",
                    "result": [
                        {
                            "type": "choices",
                            "from_name": "scene",
                            "to_name": "image",
                            "value": {"choices": ["outdoor"]},
                        },
                        {"type": "ellipselabels", "value": {"x": 1, "y": 1, "radiusX": 1, "radiusY": 1}},
                    ],
                }
            ],
        },
    ]
    res = import_dataset(write_tasks(tmp_path, tasks), store=tmp_path / "s", format="auto")
    assert any("1 ellipselabels" in w for w in res.warnings)
    store = Store.open(tmp_path / "s")
    a, b = list(store)
    assert a.file_name == "ds1/a.png" and a.source["labelstudio"] == {
        "task_id": 1,
        "annotation_id": 10,
        "completed_by": 3,
        "updated_at": "2026-01-02T00:00:00Z",
    }
    (box,) = a.annotations
    assert box.category == "cat"
    assert box.bbox_xyxy == pytest.approx((12.5, 21.0, 12.5 + 47.0, 21.0 + 49.3), abs=1e-9)
    names = {c.id: c.name for c in store.categories}
    assert (
        b.file_name == "ds1/b b.jpg" and [names[c] for c in b.labels] == ["outdoor"] and b.annotations == ()
    )


def test_rotated_boxes_are_refused(tmp_path: Path) -> None:
    tasks = [
        {
            "id": 7,
            "data": {"image": "ds1/a.png"},
            "annotations": [{"id": 1, "result": [rect("cat", 10, 10, 20, 20, rotation=30)]}],
        }
    ]
    src = write_tasks(tmp_path, tasks)
    with pytest.raises(DataError, match=r"export.json task 7 region r-cat-10: the box is rotated 30 degrees"):
        import_dataset(src, store=tmp_path / "s", format="labelstudio")
    res = import_dataset(src, store=tmp_path / "s2", format="labelstudio", on_error="skip")
    assert res.skipped_by_reason == {"annotation: rotated box": 1}


def test_original_size_is_checked_against_the_image(tmp_path: Path) -> None:
    tasks = [
        {
            "id": 1,
            "data": {"image": "ds1/b b.jpg"},
            "annotations": [{"id": 1, "result": [rect("cat", 0, 0, 100, 100, size=(640, 480))]}],
        }
    ]
    res = import_dataset(write_tasks(tmp_path, tasks), store=tmp_path / "s", format="labelstudio")
    assert any("the file says 640x480, the image is 333x217" in w for w in res.warnings)
    # percent coordinates use the real size: the full-image box stays the full image
    assert Store.open(tmp_path / "s").get(1).annotations[0].bbox_xyxy == pytest.approx((0, 0, 333, 217))


@pytest.mark.parametrize(
    "ref, path",
    [
        ("/data/local-files/?d=ds1/b%20b.jpg", "ds1/b b.jpg"),
        ("/data/upload/3/c77152fe-img_3.png", "c77152fe-img_3.png"),
        ("http://host:8080/media/x/y.jpg?token=1", "y.jpg"),
        ("plain/rel.jpg", "plain/rel.jpg"),
    ],
)
def test_image_references(ref: str, path: str) -> None:
    assert ref_to_path(ref) == path


def test_not_a_task_list(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"images": []}')
    with pytest.raises(DataError, match=r"x\.json: expected a list of tasks, found a dict"):
        import_dataset(tmp_path / "x.json", store=tmp_path / "s", format="labelstudio")


def test_label_config_lists_every_category() -> None:
    import xml.etree.ElementTree as ET

    view = ET.fromstring(label_config(["cat", 'say "hi" & <b>']))
    assert [e.get("value") for e in view.iter("Label")] == ["cat", 'say "hi" & <b>']
    assert [e.get("value") for e in view.iter("Choice")] == ["cat", 'say "hi" & <b>']
    assert view.find("RectangleLabels").get("canRotate") == "false"
