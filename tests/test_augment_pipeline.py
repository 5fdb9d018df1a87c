"""Pipeline files: validation with errors that name the file, step and field; hashing; pickling."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from dataforge.augment import load_pipeline, parse_pipeline
from dataforge.augment.worker import ChunkSpec, SourceItem
from dataforge.errors import UsageError
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "examples" / "pipelines").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_pipelines_load_and_validate_against_the_schema(path: Path) -> None:
    import jsonschema
    import yaml

    p = load_pipeline(path)
    assert p.steps
    schema = json.loads((REPO / "schemas" / "pipeline.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_shorthand_ranges_expand_like_torchvision() -> None:
    p = parse_pipeline(
        {"steps": [{"type": "color_jitter", "brightness": 0.2, "hue": 0.05}, {"type": "rotate", "limit": 10}]}
    )
    jitter, rot = p.steps
    assert jitter.brightness == (0.8, 1.2)  # type: ignore[union-attr]
    assert jitter.contrast == (1.0, 1.0)  # type: ignore[union-attr]
    assert jitter.hue == (-0.05, 0.05)  # type: ignore[union-attr]
    assert rot.limit == (-10.0, 10.0)  # type: ignore[union-attr]
    assert parse_pipeline({"steps": [{"type": "color_jitter", "brightness": 1.5}]}).steps[0].brightness == (
        0.0,
        2.5,
    )  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "steps:\n  - {type: hflip, p: 0.5}\n  - {type: hflip, prob: 1}\n",
            r"p\.yaml: invalid pipeline: step 2 \(hflip\), field prob: unknown key",
        ),
        (
            "steps:\n  - {type: hflip, p: 1.5}\n",
            r"step 1 \(hflip\), field p: Input should be less than or equal to 1",
        ),
        (
            "steps:\n  - {type: sharpen}\n",
            r"step 1 \(sharpen\): unknown step type 'sharpen' \(known: center_crop, color_jitter, crop,",
        ),
        ("steps:\n  - {p: 0.5}\n", r"step 1 \(\?\): each step needs a 'type'"),
        ("steps: []\n", r"field steps: List should have at least 1 item"),
        ("steps:\n  - {type: hflip}\nextra: 1\n", r"field extra: unknown key"),
        ("steps:\n  - {type: hflip}\nboxes: {min_visibility: 2}\n", r"field boxes\.min_visibility"),
        (
            "steps:\n  - {type: hflip}\noutput: {format: webp}\n",
            r"field output\.format: Input should be 'jpeg' or 'png'",
        ),
        (
            "steps:\n  - {type: random_resized_crop, scale: [0.9, 0.5]}\n",
            r"step 1 \(random_resized_crop\), field scale: scale range \[0\.9, 0\.5\] is empty",
        ),
        ("steps:\n  - {type: color_jitter, hue: 0.7}\n", r"field hue: hue shifts are in turns"),
        (
            "steps:\n  - {type: crop, x_min: 10, y_min: 0, x_max: 5, y_max: 9}\n",
            r"step 1 \(crop\): x_max/y_max must be greater",
        ),
        ("steps:\n  - {type: hflip\n", r"p\.yaml: malformed YAML at line 3"),
        ("- just a list\n", r"a pipeline file is a mapping with 'steps' \(found list\)"),
    ],
)
def test_bad_pipeline_files_name_the_file_step_and_field(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        load_pipeline(write(tmp_path, text))


def test_json_pipelines_and_their_errors(tmp_path: Path) -> None:
    ok = write(tmp_path, json.dumps({"steps": [{"type": "vflip"}]}), "p.json")
    assert load_pipeline(ok).steps[0].type == "vflip"
    bad = write(tmp_path, '{"steps": [', "bad.json")
    with pytest.raises(UsageError, match=r"bad\.json: malformed JSON at line 1, column 12"):
        load_pipeline(bad)
    with pytest.raises(UsageError, match=r"nope\.yaml: no such pipeline file"):
        load_pipeline(tmp_path / "nope.yaml")


def test_digest_is_stable_and_ignores_copies_and_key_order() -> None:
    a = parse_pipeline({"seed": 3, "copies": 2, "steps": [{"type": "hflip", "p": 0.5}]})
    b = parse_pipeline({"steps": [{"p": 0.5, "type": "hflip"}], "copies": 9, "seed": 3})
    c = parse_pipeline({"seed": 4, "steps": [{"type": "hflip", "p": 0.5}]})
    assert a.digest == b.digest != c.digest
    assert len(a.digest) == 64


def test_everything_sent_to_workers_pickles() -> None:
    p = load_pipeline(EXAMPLES[0])
    spec = ChunkSpec(
        "/src",
        "/out",
        p.canonical(),
        "opencv",
        "auto",
        "fail",
        [
            SourceItem(
                1, "a.jpg", 4, 3, [[0, 0, 1, 1]], [{"category_id": 1}], [0, 1], ["a_aug0.jpg", "a_aug1.jpg"]
            )
        ],
    )
    back = pickle.loads(pickle.dumps(spec))
    assert back == spec and back.units == 2
    assert pickle.loads(pickle.dumps(p)) == p


def test_to_albumentations_builds_a_compose_for_every_step() -> None:
    import albumentations as A

    steps = [
        {"type": "hflip"},
        {"type": "vflip"},
        {"type": "crop", "x_min": 0, "y_min": 0, "x_max": 8, "y_max": 8},
        {"type": "center_crop", "width": 8, "height": 8},
        {"type": "random_crop", "width": 6, "height": 6},
        {"type": "random_resized_crop", "size": [6, 6]},
        {"type": "random_scale"},
        {"type": "resize", "width": 6, "height": 6},
        {"type": "rotate"},
        {"type": "color_jitter", "brightness": 0.2},
        {"type": "gaussian_blur"},
        {"type": "normalize"},
    ]
    compose = parse_pipeline({"steps": steps}).to_albumentations()
    assert isinstance(compose, A.Compose) and len(compose.transforms) == len(steps)
    with pytest.raises(ValueError, match="needs a fixed size"):
        parse_pipeline({"steps": [{"type": "random_resized_crop"}]}).to_albumentations()
