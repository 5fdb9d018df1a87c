"""The ``--where`` filter language used by ``tag``, ``export``, ``info`` and the Python API.

It is a small, safe subset of Python expression syntax, evaluated per image (never ``eval``)::

    category == 'cat' and boxes > 3
    count('dog') >= 2 or tag == 'needs-review'
    split == 'val' and not glob('night/*.jpg')
    id in [1, 2, 3] or width < 64
    split == none                               # images without a split

Fields (per image):

==============  ==============================================================================
``id``          image id (int)
``file``        file name inside the store's ``images/`` (str); ``glob('*.png')`` matches it
``width``       ``height``: pixels (int)
``split``       the split name, or ``none`` when unassigned
``boxes``       number of annotations on the image
``category``    the set of category names on the image: ``category == 'cat'`` is true when at
                least one box is a cat, ``category != 'cat'`` when none is, ``category in
                ['cat', 'dog']`` when any is, and ``'cat' in category`` reads the same
``tag``         the set of tags, with the same set semantics as ``category``
``label``       the set of image-level labels (classification), same semantics
==============  ==============================================================================

Functions: ``count(name)`` (boxes of one category), ``glob(pattern)`` (fnmatch on ``file``).
Operators: ``== != < <= > >= in not in``, ``and or not``, parentheses. Literals: strings,
numbers, lists, ``none``/``None``, ``true``/``false``.
"""

from __future__ import annotations

import ast
import fnmatch
import operator
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from dataforge.errors import UsageError

Context = dict[str, Any]
Predicate = Callable[[Context], bool]

SCALAR_FIELDS = {
    "id": "id",
    "file": "file",
    "width": "width",
    "height": "height",
    "split": "split",
    "boxes": "boxes",
}
SET_FIELDS = {
    "category": "categories",
    "categories": "categories",
    "tag": "tags",
    "tags": "tags",
    "label": "labels",
    "labels": "labels",
}
CONSTANTS = {"none": None, "None": None, "true": True, "True": True, "false": False, "False": False}
_ORDER_OPS: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


class _QueryError(Exception):
    def __init__(self, node: ast.AST | None, message: str) -> None:
        super().__init__(message)
        self.col = getattr(node, "col_offset", None)


@lru_cache(maxsize=64)
def compile_query(expression: str) -> Predicate:
    """Compile a ``--where`` expression into a predicate over an image context."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise UsageError(
            f"--where {expression!r}: syntax error at column {exc.offset}: {exc.msg}",
            hint="example: --where \"category == 'cat' and boxes > 3\"",
        ) from None
    try:
        return _bool(tree.body)
    except _QueryError as exc:
        at = f" at column {exc.col + 1}" if exc.col is not None else ""
        raise UsageError(
            f"--where {expression!r}{at}: {exc}",
            hint="fields: id, file, width, height, split, boxes, category, tag, label; functions: count(name), glob(pattern)",
        ) from None


def _bool(node: ast.expr) -> Predicate:
    if isinstance(node, ast.BoolOp):
        parts = [_bool(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda c: all(p(c) for p in parts)
        return lambda c: any(p(c) for p in parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _bool(node.operand)
        return lambda c: not inner(c)
    if isinstance(node, ast.Compare):
        pairs = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            pairs.append(_compare(left, op, right))
            left = right
        if len(pairs) == 1:
            return pairs[0]
        return lambda c: all(p(c) for p in pairs)
    if isinstance(node, ast.Call) and _call_name(node) == "glob":
        pattern = _glob_pattern(node)
        return lambda c: fnmatch.fnmatchcase(c["file"], pattern)
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        value = node.value
        return lambda c: value
    if isinstance(node, ast.Name) and node.id in CONSTANTS and isinstance(CONSTANTS[node.id], bool):
        value = bool(CONSTANTS[node.id])
        return lambda c: value
    raise _QueryError(node, f"expected a comparison such as boxes > 3, found {ast.unparse(node)!r}")


def _call_name(node: ast.Call) -> str | None:
    return node.func.id if isinstance(node.func, ast.Name) else None


def _glob_pattern(node: ast.Call) -> str:
    if (
        len(node.args) != 1
        or node.keywords
        or not isinstance(node.args[0], ast.Constant)
        or not isinstance(node.args[0].value, str)
    ):
        raise _QueryError(node, "glob() takes one string pattern, e.g. glob('train/*.jpg')")
    return node.args[0].value


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (str, int, float))):
        return node.value
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_literal(e) for e in node.elts]
    raise _QueryError(node, f"expected a value (string, number, list or none), found {ast.unparse(node)!r}")


def _operand(node: ast.expr) -> tuple[str, Any]:
    """('scalar', key) | ('set', key) | ('count', name) | ('value', literal)."""
    if isinstance(node, ast.Name):
        if node.id in SCALAR_FIELDS:
            return "scalar", SCALAR_FIELDS[node.id]
        if node.id in SET_FIELDS:
            return "set", SET_FIELDS[node.id]
        if node.id not in CONSTANTS:
            known = ", ".join([*SCALAR_FIELDS, "category", "tag", "label"])
            raise _QueryError(node, f"unknown field {node.id!r} (known fields: {known})")
    if isinstance(node, ast.Call):
        if _call_name(node) == "count":
            if (
                len(node.args) != 1
                or not isinstance(node.args[0], ast.Constant)
                or not isinstance(node.args[0].value, str)
            ):
                raise _QueryError(node, "count() takes one category name, e.g. count('cat')")
            return "count", node.args[0].value
        raise _QueryError(node, f"unknown function {ast.unparse(node.func)!r} (known: count, glob)")
    return "value", _literal(node)


def _getter(kind: str, key: Any) -> Callable[[Context], Any]:
    if kind == "scalar":
        return lambda c: c[key]
    if kind == "count":
        return lambda c: c["counts"].get(key, 0)
    if kind == "value":
        return lambda c: key
    raise AssertionError(kind)


def _as_set(value: Any) -> set[Any]:
    return set(value) if isinstance(value, list) else {value}


def _compare(left: ast.expr, op: ast.cmpop, right: ast.expr) -> Predicate:
    lkind, lkey = _operand(left)
    rkind, rkey = _operand(right)
    # Set fields: membership semantics, written either way round.
    if lkind == "set" or rkind == "set":
        if lkind == "set" and rkind == "set":
            raise _QueryError(left, "cannot compare two set fields with each other")
        set_key, value = (lkey, rkey) if lkind == "set" else (rkey, lkey)
        if (rkind if lkind == "set" else lkind) != "value":
            raise _QueryError(right, "compare category/tag with a name or a list of names")
        wanted = _as_set(value)
        field_key = {"categories": "counts", "tags": "tags", "labels": "labels"}[set_key]

        def members(c: Context) -> Any:
            return c[field_key]

        if isinstance(op, (ast.Eq, ast.In)):
            return lambda c: any(w in members(c) for w in wanted)
        if isinstance(op, (ast.NotEq, ast.NotIn)):
            return lambda c: not any(w in members(c) for w in wanted)
        raise _QueryError(left, "category and tag support ==, !=, in and not in")
    get_l, get_r = _getter(lkind, lkey), _getter(rkind, rkey)
    if isinstance(op, ast.Eq):
        return lambda c: bool(get_l(c) == get_r(c))
    if isinstance(op, ast.NotEq):
        return lambda c: bool(get_l(c) != get_r(c))
    if isinstance(op, (ast.In, ast.NotIn)):
        if rkind != "value" or not isinstance(rkey, list):
            raise _QueryError(right, "`in` needs a list on its right, e.g. id in [1, 2, 3]")
        negate = isinstance(op, ast.NotIn)
        return lambda c: (get_l(c) in rkey) != negate
    fn = _ORDER_OPS.get(type(op))
    if fn is None:
        raise _QueryError(left, f"unsupported operator {type(op).__name__}")

    def ordered(c: Context) -> bool:
        a, b = get_l(c), get_r(c)
        if a is None or b is None:
            return False
        try:
            return bool(fn(a, b))
        except TypeError:
            raise UsageError(f"--where: cannot order {a!r} and {b!r}") from None

    return ordered
