"""Typed, read-only views of the store's COCO records.

The store keeps plain COCO dicts (that is what lets 1,000,000 annotations load in seconds);
these dataclasses are what the Python API hands out. Boxes are absolute-pixel xyxy floats;
masks decode on request (:meth:`ImageRecord.masks`, pycocotools); keypoints are ``(K, 3)`` arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataforge.boxes import FloatArray, xywh_to_xyxy_floats
from dataforge.keypoints import as_array

#: COCO keys that the typed records expose as attributes; everything else lands in ``extra``.
IMAGE_KEYS = frozenset({"id", "file_name", "width", "height", "split", "tags", "sha256", "source", "labels"})
ANNOTATION_KEYS = frozenset(
    {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation", "keypoints", "num_keypoints"}
)


@dataclass(frozen=True, slots=True)
class Category:
    id: int
    name: str
    supercategory: str | None = None
    #: the names of a keypoint category's points, in order (COCO ``categories[].keypoints``)
    keypoints: tuple[str, ...] = ()
    #: 1-based point index pairs to draw as lines (COCO ``categories[].skeleton``)
    skeleton: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Annotation:
    """One object. ``bbox_xyxy`` is ``(x_min, y_min, x_max, y_max)`` in absolute pixels."""

    id: int
    image_id: int
    category_id: int
    category: str
    bbox_xyxy: tuple[float, float, float, float]
    area: float
    iscrowd: int = 0
    segmentation: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: ``(K, 3)`` float64 ``(x, y, v)`` of a keypoint annotation (v: 0 unlabelled, 1 hidden, 2 visible)
    keypoints: FloatArray | None = None

    @property
    def semantic(self) -> bool:
        """A semantic-segmentation region (every pixel of its category in the image), not an object."""
        return bool(self.extra.get("semantic"))


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image with its annotations. ``path`` is the file inside the store."""

    id: int
    file_name: str
    path: Path
    width: int
    height: int
    split: str | None
    tags: tuple[str, ...]
    sha256: str | None
    source: Mapping[str, Any]
    annotations: tuple[Annotation, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: image-level labels (classification): category ids
    labels: tuple[int, ...] = ()

    @property
    def size_wh(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def boxes_xyxy(self) -> FloatArray:
        """All boxes as an ``(N, 4)`` float64 array, absolute-pixel xyxy."""
        if not self.annotations:
            return np.zeros((0, 4), dtype=np.float64)
        return np.array([a.bbox_xyxy for a in self.annotations], dtype=np.float64)

    @property
    def category_ids(self) -> np.ndarray:
        """Category id of each box, shape ``(N,)``, int64."""
        return np.array([a.category_id for a in self.annotations], dtype=np.int64)

    def masks(self) -> np.ndarray:
        """Every annotation's mask as ``(N, H, W)`` bool (decoded now, by pycocotools; an annotation
        without a segmentation has an empty mask)."""
        from dataforge.masks import decode_all

        return decode_all([a.segmentation for a in self.annotations], self.height, self.width)

    @property
    def keypoints(self) -> FloatArray:
        """Every annotation's keypoints as ``(N, K, 3)`` float64; ``K`` is the image's one keypoint
        layout (a store mixing layouts in one image: use each annotation's ``keypoints``)."""
        arrays = [a.keypoints for a in self.annotations if a.keypoints is not None]
        if not arrays:
            return np.zeros((0, 0, 3), dtype=np.float64)
        if len(arrays) != len(self.annotations) or len({len(k) for k in arrays}) != 1:
            raise ValueError(
                f"image {self.id}: its annotations do not share one keypoint layout; "
                "read each annotation's .keypoints"
            )
        return np.stack(arrays)


def annotation_from_coco(ann: Mapping[str, Any], category_name: str) -> Annotation:
    x0, y0, x1, y1 = xywh_to_xyxy_floats(ann["bbox"])
    return Annotation(
        id=int(ann["id"]),
        image_id=int(ann["image_id"]),
        category_id=int(ann["category_id"]),
        category=category_name,
        bbox_xyxy=(x0, y0, x1, y1),
        area=float(ann.get("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))),
        iscrowd=int(ann.get("iscrowd", 0) or 0),
        segmentation=ann.get("segmentation"),
        extra={k: v for k, v in ann.items() if k not in ANNOTATION_KEYS},
        keypoints=as_array(ann["keypoints"]) if ann.get("keypoints") else None,
    )


def image_from_coco(
    img: Mapping[str, Any], images_dir: Path, annotations: tuple[Annotation, ...]
) -> ImageRecord:
    return ImageRecord(
        id=int(img["id"]),
        file_name=img["file_name"],
        path=images_dir / img["file_name"],
        width=int(img["width"]),
        height=int(img["height"]),
        split=img.get("split"),
        tags=tuple(img.get("tags", ())),
        sha256=img.get("sha256"),
        source=img.get("source", {}),
        annotations=annotations,
        extra={k: v for k, v in img.items() if k not in IMAGE_KEYS},
        labels=tuple(img.get("labels", ())),
    )
