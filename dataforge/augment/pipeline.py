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
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from dataforge.augment import steps as _steps  # noqa: F401 - each step module registers itself
from dataforge.augment.registry import STEPS
from dataforge.augment.steps.base import StepBase
from dataforge.errors import UsageError


def _validate_step(value: Any) -> Any:
    """A step's dict to the class registered for its ``type`` (its errors keep their field names)."""
    if isinstance(value, StepBase):
        return value
    kind = value.get("type") if isinstance(value, dict) else None
    if kind is None:
        raise ValueError("each step needs a 'type'")
    cls = STEPS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown step type {kind!r} (known: {', '.join(sorted(STEPS))})")
    return cls.model_validate(value)


class _AnyStep:
    """A pipeline step of any registered type: validated by its ``type``, serialized as its class
    does, and in the JSON schema as one of the registered classes' schemas (read when the schema is
    made, so a step registered later is in it)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_step,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda step, info: step.model_dump(mode=info.mode), info_arg=True
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"oneOf": [handler(model.__pydantic_core_schema__) for model in STEPS.values()]}


Step = Annotated[StepBase, _AnyStep]


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


class KeypointRules(BaseModel):
    """How flips reorder keypoints. A flip mirrors the image, so a left eye becomes a right eye:
    by default the points swap by the category's ``flip_idx`` (YOLO-pose ``data.yaml`` imports
    it), else by their names (``left_*``/``right_*``, ``l_*``/``r_*``). ``flip_idx`` here sets it
    per category name, e.g. ``{person: [0, 2, 1, 4, 3]}``."""

    model_config = ConfigDict(extra="forbid")

    flip_idx: dict[str, list[int]] = Field(default_factory=dict)


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
    keypoints: KeypointRules = Field(default_factory=KeypointRules)
    output: Output = Field(default_factory=Output)

    def canonical(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        if not doc["keypoints"]["flip_idx"]:
            del doc["keypoints"]  # the default: pipelines from before keypoints keep their digest
        return doc

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


#: every registered step type (a live view: a step module registered later is in it)
STEP_TYPES = STEPS.keys()
