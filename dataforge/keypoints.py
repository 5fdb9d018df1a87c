"""Keypoints as COCO stores them: ``keypoints`` ``[x0, y0, v0, x1, y1, v1, ...]`` on an annotation
(``v``: 0 not labelled, 1 labelled but hidden, 2 visible; a ``v = 0`` point is written ``0, 0, 0``),
``num_keypoints`` the count with ``v > 0``, and on its category the point ``keypoints`` names and
the ``skeleton`` (1-based index pairs), as ``person_keypoints_*.json`` has them.

Coordinates are continuous pixels, as boxes: the image spans ``[0, W] x [0, H]``.

A mirror (a flip) turns a left eye into a right eye: :func:`flip_permutation` is the index
permutation a flip applies, from the category's ``flip_idx`` (Ultralytics' name; YOLO-pose
``data.yaml`` has it) or else from names that pair ``left``/``right`` words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

BAD_KEYPOINTS = "bad keypoints"

_SIDE = re.compile(r"(?i)(?<![a-z])(left|right|l|r)(?![a-z])")
_SWAP = {"left": "right", "right": "left", "l": "r", "r": "l"}


def _mirror_name(name: str) -> str:
    def swap(m: re.Match[str]) -> str:
        word = m.group(1)
        other = _SWAP[word.lower()]
        return other.upper() if word.isupper() else other.capitalize() if word[0].isupper() else other

    return _SIDE.sub(swap, name)


def flip_permutation(names: Sequence[str], flip_idx: Sequence[int] | None = None) -> list[int]:
    """The permutation a mirror applies to ``names``' points: point ``i`` of the flipped object is
    point ``perm[i]`` of the original. ``flip_idx`` when given (checked: a permutation that undoes
    itself), else pairs by name: ``left_eye``/``right_eye``, ``l_knee``/``r_knee``, ``Left Hand``/``Right Hand``."""
    k = len(names)
    if flip_idx is not None:
        perm = list(flip_idx)
        if sorted(perm) != list(range(k)) or any(perm[perm[i]] != i for i in range(k)):
            raise ValueError(
                f"flip_idx {perm} must list each of the {k} keypoints once and pair them "
                "(flip_idx[flip_idx[i]] == i)"
            )
        return perm
    index = {n: i for i, n in enumerate(names)}
    perm = []
    for i, n in enumerate(names):
        j = index.get(_mirror_name(n), i)
        perm.append(j if index.get(_mirror_name(names[j])) == i else i)
    return perm


def flip_perms(
    categories: Sequence[Mapping[str, Any]], overrides: Mapping[str, Sequence[int]] | None = None
) -> dict[int, list[int]]:
    """Each keypoint category's flip permutation by category id: ``overrides[name]`` (a pipeline's
    ``keypoints.flip_idx``), else the category's own ``flip_idx``, else its names' left/right pairs.
    A bad ``flip_idx`` or an override for a category without keypoints is a ValueError."""
    overrides = overrides or {}
    by_name = {c["name"]: c for c in categories}
    for name in overrides:
        if name not in by_name:
            raise ValueError(f"flip_idx names category {name!r}, which is not in the store")
        if not by_name[name].get("keypoints"):
            raise ValueError(f"flip_idx names category {name!r}, which has no keypoints")
    perms = {}
    for c in categories:
        if c.get("keypoints"):
            try:
                perms[int(c["id"])] = flip_permutation(
                    c["keypoints"], overrides.get(c["name"], c.get("flip_idx"))
                )
            except ValueError as exc:
                raise ValueError(f"category {c['name']!r}: {exc}") from None
    return perms


def as_array(keypoints: Sequence[float]) -> np.ndarray:
    """COCO's flat list as a ``(K, 3)`` float64 array of ``(x, y, v)``."""
    return np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)


def to_coco(points: np.ndarray) -> tuple[list[float], int]:
    """A ``(K, 3)`` array back to COCO's flat list (``v = 0`` points as ``0, 0, 0``) and ``num_keypoints``."""
    out: list[float] = []
    n = 0
    for x, y, v in points.tolist():
        if v > 0:
            out += [round(x, 4), round(y, 4), int(v)]
            n += 1
        else:
            out += [0, 0, 0]
    return out, n


def keypoint_problem(
    keypoints: Any, num_keypoints: Any, names: Sequence[str] | None, width: int, height: int
) -> str | None:
    """What is wrong with an annotation's keypoints for its category's ``names``, or None.

    The list has 3 numbers per named point; each ``v`` is 0, 1 or 2; a labelled point (``v > 0``)
    lies inside the image (0.5 px of slack, as boxes); ``num_keypoints``, when given, counts them.
    """
    if keypoints is None:
        return None
    if names is None:
        return "the annotation has keypoints but its category names none (categories[].keypoints)"
    if not isinstance(keypoints, list) or not all(type(v) in (int, float) for v in keypoints):
        return "keypoints must be a flat list of numbers [x, y, v, ...]"
    if len(keypoints) != 3 * len(names):
        return (
            f"{len(keypoints)} keypoint numbers, but the category names {len(names)} points "
            f"({3 * len(names)} numbers: x, y, v each)"
        )
    if not all(math.isfinite(v) for v in keypoints):
        return "a keypoint coordinate is NaN or infinite"
    labelled = 0
    for i in range(len(names)):
        x, y, v = keypoints[3 * i : 3 * i + 3]
        if v not in (0, 1, 2):
            return f"keypoint {names[i]!r} has visibility {v!r}; COCO's v is 0, 1 or 2"
        if v > 0:
            labelled += 1
            if not (-0.5 <= x <= width + 0.5 and -0.5 <= y <= height + 0.5):
                return f"keypoint {names[i]!r} at ({x:g}, {y:g}) is outside the {width}x{height} image"
    if num_keypoints is not None and num_keypoints != labelled:
        return f"num_keypoints is {num_keypoints!r} but {labelled} keypoints have v > 0"
    return None
