"""Augmentation pipeline files: the pydantic model, loading with clear errors, and a stable hash.

A pipeline file (YAML or JSON) looks like::

    seed: 0
    copies: 4
    steps:
      - {type: hflip, p: 0.5}
      - {type: random_resized_crop, scale: [0.5, 1.0]}      # size: null = back to the input size
      - {type: color_jitter, brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.05, p: 0.8}
    boxes: {min_visibility: 0.3, min_area: 4, cut: clip}
    output: {format: jpeg, quality: 90}

``schemas/pipeline.schema.json`` is generated from :class:`Pipeline`. The same file drives both
backends (CPU: OpenCV kernels with albumentations semantics; CUDA: torchvision.transforms.v2) and, at training
time, the trainers' data loaders.
"""

from __future__ import annotations

import hashlib
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from dataforge.errors import UsageError

#: a ``[low, high]`` range that may be written as one number (expanded by a validator)
RangeOrNumber = Annotated[
    tuple[float, float],
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {
                    "type": "array",
                    "prefixItems": [{"type": "number"}, {"type": "number"}],
                    "minItems": 2,
                    "maxItems": 2,
                },
            ]
        }
    ),
]

Probability = Annotated[float, Field(ge=0.0, le=1.0, description="probability that the step runs")]


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p: Probability = 1.0


def _pair(v: Any, *, around: float | None = None, low: float | None = None) -> Any:
    """``x`` -> ``[around - x, around + x]`` (clamped at ``low``); a pair is kept as is."""
    if isinstance(v, int | float) and not isinstance(v, bool) and around is not None:
        lo = around - float(v)
        return [max(lo, low) if low is not None else lo, around + float(v)]
    return v


def _check_range(v: tuple[float, float], name: str) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"{name} range [{v[0]}, {v[1]}] is empty: the low end is above the high end")
    return v


class HFlip(_Step):
    """Mirror left-right."""

    type: Literal["hflip"]
    p: Probability = 0.5


class VFlip(_Step):
    """Mirror top-bottom."""

    type: Literal["vflip"]
    p: Probability = 0.5


class Crop(_Step):
    """A fixed crop (pixels, xyxy, end exclusive); clamped to the image."""

    type: Literal["crop"]
    x_min: int = Field(ge=0)
    y_min: int = Field(ge=0)
    x_max: int = Field(gt=0)
    y_max: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Crop:
        if self.x_max <= self.x_min or self.y_max <= self.y_min:
            raise ValueError("x_max/y_max must be greater than x_min/y_min")
        return self


class CenterCrop(_Step):
    """Crop ``width`` x ``height`` from the centre (the whole side when the image is smaller)."""

    type: Literal["center_crop"]
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class RandomCrop(_Step):
    """Crop ``width`` x ``height`` at a uniformly random position (the whole side when smaller)."""

    type: Literal["random_crop"]
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class RandomResizedCrop(_Step):
    """Crop a random area fraction ``scale`` with aspect ratio in ``ratio``, resize to ``size``.

    ``size`` is ``[width, height]``; left out, the crop is resized back to the input's size.
    """

    type: Literal["random_resized_crop"]
    size: tuple[int, int] | None = None
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    @field_validator("size")
    @classmethod
    def _positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) <= 0:
            raise ValueError("size must be two positive integers [width, height]")
        return v

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= 1 or not 0 < v[1] <= 1:
            raise ValueError("scale is an area fraction: both ends in (0, 1]")
        return _check_range(v, "scale")

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] <= 0:
            raise ValueError("ratio must be positive")
        return _check_range(v, "ratio")


class RandomScale(_Step):
    """Resize by a factor drawn uniformly from ``scale`` (both sides by the same factor)."""

    type: Literal["random_scale"]
    scale: tuple[float, float] = (0.5, 1.5)

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] <= 0:
            raise ValueError("scale factors must be positive")
        return _check_range(v, "scale")


class Resize(_Step):
    """Resize to exactly ``width`` x ``height`` (bilinear)."""

    type: Literal["resize"]
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class Rotate(_Step):
    """Rotate about the centre by an angle (degrees, counter-clockwise) drawn from ``limit``.

    The canvas keeps its size; corners are filled with ``fill``. A box becomes the box enclosing
    its rotated corners (clipped to the canvas).
    """

    type: Literal["rotate"]
    limit: RangeOrNumber = (-15.0, 15.0)
    fill: int = Field(0, ge=0, le=255)
    p: Probability = 0.5

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, v: Any) -> Any:
        return _pair(v, around=0.0)

    @field_validator("limit")
    @classmethod
    def _order(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_range(v, "limit")


class ColorJitter(_Step):
    """Brightness/contrast/saturation factors from ``[1 - x, 1 + x]`` (or a pair), hue shift from
    ``[-h, h]`` turns (h <= 0.5). torchvision's definitions; applied in that order."""

    type: Literal["color_jitter"]
    brightness: RangeOrNumber = (1.0, 1.0)
    contrast: RangeOrNumber = (1.0, 1.0)
    saturation: RangeOrNumber = (1.0, 1.0)
    hue: RangeOrNumber = (0.0, 0.0)

    @field_validator("brightness", "contrast", "saturation", mode="before")
    @classmethod
    def _factor(cls, v: Any) -> Any:
        return _pair(v, around=1.0, low=0.0)

    @field_validator("hue", mode="before")
    @classmethod
    def _hue(cls, v: Any) -> Any:
        return _pair(v, around=0.0)

    @field_validator("brightness", "contrast", "saturation")
    @classmethod
    def _factor_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] < 0:
            raise ValueError("factors must be non-negative")
        return _check_range(v, "factor")

    @field_validator("hue")
    @classmethod
    def _hue_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not -0.5 <= v[0] <= 0.5 or not -0.5 <= v[1] <= 0.5:
            raise ValueError("hue shifts are in turns: both ends within [-0.5, 0.5]")
        return _check_range(v, "hue")


class GaussianBlur(_Step):
    """Gaussian blur with sigma drawn from ``sigma`` (pixels); kernel size = 2*ceil(3*sigma)+1."""

    type: Literal["gaussian_blur"]
    sigma: RangeOrNumber = (0.1, 2.0)
    p: Probability = 0.5

    @field_validator("sigma", mode="before")
    @classmethod
    def _sigma(cls, v: Any) -> Any:
        return [v, v] if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("sigma")
    @classmethod
    def _positive(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] <= 0:
            raise ValueError("sigma must be positive")
        return _check_range(v, "sigma")


class Normalize(_Step):
    """Subtract ``mean`` and divide by ``std`` (per channel, 0-1 scale). Training time only:
    ``dataforge augment`` writes image files and refuses it."""

    type: Literal["normalize"]
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


Step = Annotated[
    HFlip
    | VFlip
    | Crop
    | CenterCrop
    | RandomCrop
    | RandomResizedCrop
    | RandomScale
    | Resize
    | Rotate
    | ColorJitter
    | GaussianBlur
    | Normalize,
    Field(discriminator="type"),
]


class BoxRules(BaseModel):
    """What happens to a box that a crop or rotation cuts.

    ``visibility`` is the fraction of the box's area that is still inside the image. A box is
    dropped when it is below ``min_visibility`` or ``min_area`` (output pixels); with
    ``cut: drop`` any box that lost part of its area is dropped; with ``cut: clip`` (default) the
    rest is kept, clipped to the image.
    """

    model_config = ConfigDict(extra="forbid")

    min_visibility: float = Field(0.0, ge=0.0, le=1.0)
    min_area: float = Field(1.0, ge=0.0, description="square pixels, after the transform")
    cut: Literal["clip", "drop"] = "clip"


class Output(BaseModel):
    """How augmented images are encoded."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["jpeg", "png"] = "jpeg"
    quality: int = Field(90, ge=1, le=100, description="JPEG quality")
    png_compression: int = Field(1, ge=0, le=9, description="PNG zlib level; 1 is fast")

    @property
    def extension(self) -> str:
        return ".jpg" if self.format == "jpeg" else ".png"


class Pipeline(BaseModel):
    """An augmentation pipeline: ordered steps, box rules, output encoding, seed and copies."""

    model_config = ConfigDict(extra="forbid")

    steps: list[Step] = Field(min_length=1)
    seed: int = 0
    copies: int = Field(1, ge=1, le=10_000, description="augmented copies per source image")
    boxes: BoxRules = Field(default_factory=BoxRules)
    output: Output = Field(default_factory=Output)

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON of everything that shapes the pixels (copies excluded)."""
        doc = self.canonical()
        doc.pop("copies")
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def to_albumentations(self) -> Any:
        """The equivalent ``albumentations.Compose`` (pascal_voc boxes, labels in ``labels``).

        Draws its own random numbers, so its output differs from dataforge's for the same seed;
        used as the baseline in ``benchmarks/augment.py`` and by users who want albumentations
        objects.
        """
        from dataforge.augment.albu import to_albumentations

        return to_albumentations(self)


def _loc(loc: tuple[int | str, ...], doc: Any) -> str:
    parts: list[str] = []
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        kind = "?"
        steps = doc.get("steps") if isinstance(doc, dict) else None
        if isinstance(steps, list) and loc[1] < len(steps) and isinstance(steps[loc[1]], dict):
            kind = str(steps[loc[1]].get("type", "?"))
        parts.append(f"step {loc[1] + 1} ({kind})")
        rest = [str(x) for x in loc[2:] if str(x) != kind]
    else:
        rest = [str(x) for x in loc]
    if rest:
        parts.append("field " + ".".join(rest))
    return ", ".join(parts) or "top level"


def parse_pipeline(doc: Any, *, source: str = "pipeline") -> Pipeline:
    """Validate a pipeline document; errors name ``source``, the step and the field."""
    try:
        return Pipeline.model_validate(doc)
    except ValidationError as exc:
        lines = []
        for err in exc.errors()[:5]:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "union_tag_invalid":
                names = ", ".join(sorted(STEP_TYPES))
                given = err.get("ctx", {}).get("tag", err.get("input"))
                msg = f"unknown step type {given!r} (known: {names})"
            elif err["type"] == "union_tag_not_found":
                msg = "each step needs a 'type'"
            lines.append(f"{_loc(err['loc'], doc)}: {msg}")
        more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise UsageError(
            f"{source}: invalid pipeline: " + "; ".join(lines) + more,
            hint="see schemas/pipeline.schema.json and examples/pipelines/",
        ) from None


def load_pipeline(path: str | Path) -> Pipeline:
    """Read a YAML or JSON pipeline file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{p}: no such pipeline file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: cannot read the pipeline file: {exc}") from None
    if p.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{p}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
    else:
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise UsageError(f"{p}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{p}: a pipeline file is a mapping with 'steps' (found {type(doc).__name__})")
    return parse_pipeline(doc, source=str(p))


#: every step type, read off the ``Step`` union (a new step class is one entry there)
STEP_TYPES = frozenset(
    typing.get_args(model.model_fields["type"].annotation)[0]
    for model in typing.get_args(typing.get_args(Step)[0])
)
