"""Generate ``schemas/*.schema.json`` from the pydantic models: ``python -m dataforge.schemas [DIR]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "schemas"


def render_all() -> dict[str, str]:
    """Schema file name -> file text."""
    from dataforge.file_schemas import SCHEMAS

    out: dict[str, str] = {}
    for name, model in {**SCHEMAS, **trainer_schemas()}.items():
        schema: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://dataforge.invalid/schemas/{name}",
            **model.model_json_schema(),
        }
        out[name] = json.dumps(schema, indent=2, sort_keys=False) + "\n"
    return out


#: first-party trainer plugins whose config schemas ship in schemas/ (plugins/ in this repository)
FIRST_PARTY_TRAINERS = (
    "torchvision-classifier",
    "torchvision-detector",
    "torchvision-segmenter",
    "torchvision-regressor",
)


def trainer_schemas() -> dict[str, Any]:
    """``trainer-config`` (the options every trainer has) and one schema per first-party trainer."""
    from dataforge.training.config import TrainerConfig
    from dataforge.training.contract import get_trainer

    out: dict[str, Any] = {"trainer-config.schema.json": TrainerConfig}
    for name in FIRST_PARTY_TRAINERS:
        out[f"trainer-{name}.schema.json"] = get_trainer(name).config
    return out


def write_all(directory: Path = DEFAULT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR):
        print(p)
