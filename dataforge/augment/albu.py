"""A pipeline as an ``albumentations.Compose`` (for users' own loops and the benchmark baseline)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dataforge.augment.registry import ALBUMENTATIONS

if TYPE_CHECKING:
    from dataforge.augment.pipeline import Pipeline


def _albumentations_steps() -> dict[str, Callable[[Any], Any]]:
    """Pipeline step type -> its albumentations transform (the same semantics, for the baseline);
    each step module registers its own (:data:`dataforge.augment.registry.ALBUMENTATIONS`)."""
    import albumentations as A

    return {name: functools.partial(build, A) for name, build in ALBUMENTATIONS.items()}


def to_albumentations(pipeline: Pipeline) -> Any:
    import albumentations as A

    table = _albumentations_steps()
    rules = pipeline.boxes
    return A.Compose(
        [table[s.type](s) for s in pipeline.steps],
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["labels"],
            min_visibility=rules.min_visibility,
            min_area=rules.min_area,
            clip=True,
        ),
        seed=pipeline.seed,
    )
