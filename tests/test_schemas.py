"""schemas/ is generated from the pydantic models, and what dataforge writes validates against it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from dataforge.api import import_dataset
from dataforge.schemas import DEFAULT_DIR, render_all


def test_schema_files_are_up_to_date() -> None:
    for name, text in render_all().items():
        path = DEFAULT_DIR / name
        assert path.is_file(), f"{path} is missing: run `python -m dataforge.schemas`"
        assert path.read_text() == text, f"{path} is stale: run `python -m dataforge.schemas`"


def test_store_and_report_validate_against_the_schemas(coco_factory, tmp_path: Path) -> None:
    src = coco_factory([(1, "a.jpg", (40, 40)), (2, "b.jpg", (40, 40))], [(1, 1, "cat", [1, 1, 10, 10])])
    (src.parent / "images" / "b.jpg").unlink()
    res = import_dataset(src, store=tmp_path / "s", on_error="skip")
    load = lambda n: json.loads((DEFAULT_DIR / n).read_text())  # noqa: E731
    doc = json.loads((tmp_path / "s" / "annotations.json").read_text())
    for img in doc["images"]:
        jsonschema.validate(img, load("store-image.schema.json"))
    jsonschema.validate(doc["dataforge"], load("store-meta.schema.json"))
    jsonschema.validate(json.loads(res.report.read_text()), load("import-report.schema.json"))


def test_prediction_files_validate_against_their_schemas() -> None:
    det = json.loads((DEFAULT_DIR / "predictions-detection.schema.json").read_text())
    cls = json.loads((DEFAULT_DIR / "predictions-classification.schema.json").read_text())
    jsonschema.validate([{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.9}], det)
    jsonschema.validate(
        [{"image_id": 1, "category_id": 2}, {"image_id": 2, "scores": {"cat": 0.7, "dog": 0.3}}], cls
    )
    import pytest

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3], "score": 0.9}], det)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "score": -1}], det)
    rle = {"size": [4, 4], "counts": "04"}
    jsonschema.validate([{"image_id": 1, "category_id": 3, "segmentation": rle, "score": 0.5}], det)
    jsonschema.validate([{"image_id": 1, "category_id": 1, "keypoints": [1, 2, 0.9], "score": 0.5}], det)
    sem = json.loads((DEFAULT_DIR / "predictions-semantic.schema.json").read_text())
    jsonschema.validate([{"image_id": 1, "category_id": 3, "segmentation": rle}], sem)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{"image_id": 1, "category_id": 3}], sem)
    reg = json.loads((DEFAULT_DIR / "predictions-regression.schema.json").read_text())
    jsonschema.validate([{"image_id": 1, "category_id": 3, "keypoints": [10.5, 20, 1]}], reg)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{"image_id": 1, "category_id": 3}], reg)
