"""Pydantic models of the files dataforge writes for others to read.

``schemas/*.schema.json`` are generated from these (``python -m dataforge.schemas``); a test fails
when a schema file is stale.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from dataforge.augment.pipeline import Pipeline


class Lineage(BaseModel):
    """``images[].source``: where an image came from. Importers add format-specific keys."""

    model_config = ConfigDict(extra="allow")

    format: str | None = Field(None, description="format plugin that imported the image")
    file: str | None = Field(None, description="annotation file or dataset directory it came from")
    image_id: int | None = Field(None, description="the image's id in that source")
    file_name: str | None = Field(None, description="the image's file name in that source")
    imported: str | None = Field(None, description="UTC time of the import (ISO 8601)")
    stated_size: list[int] | None = Field(
        None, description="width, height the source stated, when they differ from the real image size"
    )


class StoreImage(BaseModel):
    """One entry of ``annotations.json``'s ``images``: COCO's fields plus dataforge's."""

    model_config = ConfigDict(extra="allow")

    id: int
    file_name: str = Field(description="path relative to the store's images/ folder")
    width: int = Field(gt=0, description="read from the image file")
    height: int = Field(gt=0, description="read from the image file")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hash of the image file's bytes")
    tags: list[str] = Field(default_factory=list)
    split: str | None = None
    source: Lineage = Field(default_factory=Lineage)


class StoreMeta(BaseModel):
    """``annotations.json``'s top-level ``dataforge`` block."""

    model_config = ConfigDict(extra="allow")

    schema_version: int
    revision: int = Field(description="bumped by every write")
    category_id_policy: str = "keep"
    dataforge_version: str | None = None


class SkippedItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["image", "annotation", "category"]
    id: int | str
    reason: str
    message: str


class ImportCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: int
    annotations: int


class ImportReport(BaseModel):
    """``reports/import-*.json``: what one import brought in, and every item it skipped and why."""

    model_config = ConfigDict(extra="forbid")

    source: str
    format: str
    on_error: Literal["fail", "skip"]
    time: str
    imported: ImportCounts
    skipped_count: int
    skipped_by_reason: dict[str, int]
    skipped: list[SkippedItem]
    warnings: list[str]
    #: per label type (boxes, masks, keypoints, semantic regions, image labels): what was imported
    kept: dict[str, int] = Field(default_factory=dict)
    #: what the source held that dataforge stored only approximately, by kind
    approximated: dict[str, int] = Field(default_factory=dict)
    #: what the source held that dataforge does not store (shapes it has no type for), by kind
    dropped: dict[str, int] = Field(default_factory=dict)


class DetectionPrediction(BaseModel):
    """One detection: the COCO results format (absolute-pixel xywh box; with a mask or keypoints
    the box may be left out)."""

    model_config = ConfigDict(extra="allow")

    image_id: int
    category_id: int
    bbox: list[float] | None = Field(
        None, min_length=4, max_length=4, description="[x, y, width, height], absolute pixels"
    )
    segmentation: dict[str, Any] | list[list[float]] | None = Field(
        None, description="instance mask: an RLE {size: [h, w], counts} of the image's size, or polygons"
    )
    keypoints: list[float] | None = Field(
        None, description="[x, y, score] per point of the category, in its order"
    )
    score: float = Field(ge=0)


class SemanticPrediction(BaseModel):
    """One class's region on one image (COCO-Stuff results): no score."""

    model_config = ConfigDict(extra="allow")

    image_id: int
    category_id: int
    segmentation: dict[str, Any] = Field(description="an RLE {size: [h, w], counts} of the image's size")


class RegressionPrediction(BaseModel):
    """One image's points (point regression: COCO keypoint results without a score)."""

    model_config = ConfigDict(extra="allow")

    image_id: int
    category_id: int
    keypoints: list[float] = Field(
        description="[x, y, v] per point of the category, in its order; absolute pixels (v is not used)"
    )


class ClassificationPrediction(BaseModel):
    """One image's class: either ``category_id`` (+ optional ``score``) or ``scores`` for every class."""

    model_config = ConfigDict(extra="allow")

    image_id: int
    category_id: int | None = None
    score: float | None = Field(None, ge=0)
    scores: dict[str, float] | None = Field(
        None, description="category name (or id) -> score; the top one wins"
    )


class DetectionPredictions(RootModel[list[DetectionPrediction]]):
    """A predictions file for detection: a JSON list (COCO results)."""


class ClassificationPredictions(RootModel[list[ClassificationPrediction]]):
    """A predictions file for classification: a JSON list."""


class SemanticPredictions(RootModel[list[SemanticPrediction]]):
    """A predictions file for semantic segmentation: a JSON list, one region per class and image."""


class RegressionPredictions(RootModel[list[RegressionPrediction]]):
    """A predictions file for point regression: a JSON list, one entry per image and category."""


#: schema file name -> model
SCHEMAS: dict[str, type[BaseModel]] = {
    "store-image.schema.json": StoreImage,
    "store-meta.schema.json": StoreMeta,
    "import-report.schema.json": ImportReport,
    "predictions-detection.schema.json": DetectionPredictions,
    "predictions-classification.schema.json": ClassificationPredictions,
    "predictions-semantic.schema.json": SemanticPredictions,
    "predictions-regression.schema.json": RegressionPredictions,
    "pipeline.schema.json": Pipeline,
}
