"""The --where language."""

from __future__ import annotations

from collections import Counter

import pytest

from dataforge.errors import UsageError
from dataforge.query import compile_query


def ctx(**kw):
    base = {
        "id": 1,
        "file": "train/a.jpg",
        "width": 64,
        "height": 48,
        "split": "train",
        "tags": ["x"],
        "boxes": 0,
        "counts": Counter(),
    }
    base.update(kw)
    base["boxes"] = sum(base["counts"].values())
    return base


CAT4 = ctx(counts=Counter(cat=4))
DOG1 = ctx(id=2, file="val/b.png", split="val", tags=[], counts=Counter(dog=1))
EMPTY = ctx(id=3, split=None, tags=["x", "y"])


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("category == 'cat' and boxes > 3", [True, False, False]),
        ("category != 'cat'", [False, True, True]),
        ("category in ['dog', 'bird']", [False, True, False]),
        ("'dog' in category", [False, True, False]),
        ("count('cat') >= 4 or count('dog') == 1", [True, True, False]),
        ("tag == 'x'", [True, False, True]),
        ("tag not in ['y']", [True, True, False]),
        ("split == 'val'", [False, True, False]),
        ("split == none", [False, False, True]),
        ("glob('train/*')", [True, False, True]),
        ("not glob('*.png')", [True, False, True]),
        ("id in [1, 3]", [True, False, True]),
        ("1 < id <= 3", [False, True, True]),
        ("boxes == 0", [False, False, True]),
        ("width >= 64 and (height < 10 or split == 'train')", [True, False, False]),
        ("file == 'val/b.png'", [False, True, False]),
    ],
)
def test_expressions(expr: str, expected: list[bool]) -> None:
    pred = compile_query(expr)
    assert [pred(c) for c in (CAT4, DOG1, EMPTY)] == expected


@pytest.mark.parametrize(
    "expr, message",
    [
        ("category ==", r"syntax error at column"),
        ("colour == 'red'", r"at column 1: unknown field 'colour'"),
        ("len(category) > 2", r"unknown function 'len'"),
        ("count(1) > 2", r"count\(\) takes one category name"),
        ("boxes", r"expected a comparison"),
        ("category > 'cat'", r"category and tag support ==, !=, in and not in"),
        ("id in 3", r"`in` needs a list"),
        ("__import__('os').system('x')", r"expected a comparison"),
        ("__import__('os') == 1", r"unknown function '__import__'"),
        ("boxes > open", r"unknown field 'open'"),
    ],
)
def test_errors_name_the_problem(expr: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        compile_query(expr)
