"""What every pipeline step class shares: ``p``, no unknown keys, and the range helpers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

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


class StepBase(BaseModel):
    """A pipeline step: a ``type`` literal (its name), ``p``, and its own fields."""

    model_config = ConfigDict(extra="forbid")

    p: Probability = 1.0
    #: the step's name: each class narrows it to its ``Literal``
    type: str


def pair(v: Any, *, around: float | None = None, low: float | None = None) -> Any:
    """``x`` -> ``[around - x, around + x]`` (clamped at ``low``); a pair is kept as is."""
    if isinstance(v, int | float) and not isinstance(v, bool) and around is not None:
        lo = around - float(v)
        return [max(lo, low) if low is not None else lo, around + float(v)]
    return v


def check_range(v: tuple[float, float], name: str) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"{name} range [{v[0]}, {v[1]}] is empty: the low end is above the high end")
    return v
