"""Train/val/test splits: random, or stratified by category (iterative stratification).

Both are pure functions of (image ids, labels, ratios, seed): the same inputs give the same
split on any machine (numpy's PCG64 generator is platform independent, and images are ordered
by id before any draw).

Stratification follows Sechidis, Tsoumakas & Vlahavas (2011), "On the stratification of
multi-label data": repeatedly take the label with the fewest images still unassigned, and give
each of its images to the split that still wants that label most. Images without boxes carry a
pseudo-label so that they, too, are spread by the ratios.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from dataforge.errors import UsageError

EMPTY_LABEL = -(2**62)  # pseudo-label of images without annotations


def parse_ratios(text: str) -> dict[str, float]:
    """``"train=0.8,val=0.1,test=0.1"`` to a dict whose values sum to 1 (they are normalized)."""
    ratios: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(
                f"--ratios {text!r}: expected NAME=FRACTION pairs, e.g. train=0.8,val=0.1,test=0.1"
            )
        if name in ratios:
            raise UsageError(f"--ratios {text!r}: split {name!r} is named twice")
        try:
            ratios[name] = float(value)
        except ValueError:
            raise UsageError(f"--ratios {text!r}: {value!r} is not a number") from None
    return normalize_ratios(ratios, where=f"--ratios {text!r}")


def normalize_ratios(ratios: Mapping[str, float], *, where: str = "ratios") -> dict[str, float]:
    """Check split ratios (named, >= 0, not all 0) and scale them to sum to 1."""
    if not ratios:
        raise UsageError(f"{where}: no splits given, e.g. train=0.8,val=0.1,test=0.1")
    for name, r in ratios.items():
        if not isinstance(name, str) or not name:
            raise UsageError(f"{where}: split names must be non-empty strings (found {name!r})")
        if not r >= 0:
            raise UsageError(f"{where}: ratio of {name!r} must be >= 0 (found {r})")
    total = sum(ratios.values())
    if total <= 0:
        raise UsageError(f"{where}: ratios sum to 0")
    return {k: v / total for k, v in ratios.items()}


def _quotas(n: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Split n items by ratio with the largest-remainder method (sums to exactly n)."""
    raw = {k: n * r for k, r in ratios.items()}
    base = {k: int(np.floor(v)) for k, v in raw.items()}
    left = n - sum(base.values())
    order = sorted(raw, key=lambda k: (-(raw[k] - base[k]), list(ratios).index(k)))
    for k in order[:left]:
        base[k] += 1
    return base


def random_split(image_ids: Sequence[int], ratios: Mapping[str, float], seed: int) -> dict[int, str]:
    """Shuffle the ids with ``seed`` and cut them by ratio."""
    ids = sorted(image_ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    quotas = _quotas(len(ids), ratios)
    out: dict[int, str] = {}
    pos = 0
    for name, q in quotas.items():
        for i in order[pos : pos + q]:
            out[ids[int(i)]] = name
        pos += q
    return out


def stratified_split(
    labels_by_image: Mapping[int, set[int]], ratios: Mapping[str, float], seed: int
) -> dict[int, str]:
    """Iterative stratification over multi-label images. ``labels_by_image``: id to category ids."""
    rng = np.random.default_rng(seed)
    names = list(ratios)
    r = np.array([ratios[n] for n in names], dtype=np.float64)
    ids = sorted(labels_by_image)
    labels = {i: (labels_by_image[i] or {EMPTY_LABEL}) for i in ids}

    images_of: dict[int, list[int]] = {}
    for i in ids:
        for lab in sorted(labels[i]):
            images_of.setdefault(lab, []).append(i)
    # How many images of each label each split still wants, and how many images in all.
    want_label = {lab: r * len(imgs) for lab, imgs in images_of.items()}
    want_total = r * len(ids)
    remaining = {lab: set(imgs) for lab, imgs in images_of.items()}
    out: dict[int, str] = {}

    while remaining:
        # The rarest label first: it has the least room for error.
        lab = min(remaining, key=lambda k: (len(remaining[k]), k))
        pending = sorted(remaining.pop(lab))
        for idx in rng.permutation(len(pending)):
            img = pending[int(idx)]
            if img in out:
                continue
            wl = want_label[lab]
            best = np.flatnonzero(wl == wl.max())
            if len(best) > 1:
                wt = want_total[best]
                best = best[wt == wt.max()]
            choice = int(best[0] if len(best) == 1 else best[rng.integers(len(best))])
            out[img] = names[choice]
            want_total[choice] -= 1
            for other in labels[img]:
                want_label[other][choice] -= 1
                if other != lab and other in remaining:
                    remaining[other].discard(img)
                    if not remaining[other]:
                        del remaining[other]
    return out


def grouped_split(
    groups: Mapping[int, object],
    labels_by_image: Mapping[int, set[int]],
    ratios: Mapping[str, float],
    seed: int,
    *,
    stratify: bool = True,
) -> dict[int, str]:
    """Split so that the images of a group (``groups``: image id -> group key; frames of one video,
    copies of one picture) never span splits. Greedy: the largest groups first, each to the split
    whose remaining wants it meets best: with ``stratify``, the wants of each label the group holds
    (weighted by its images of it) and of images in all; without, of images alone. Ties are broken
    by ``seed``."""
    rng = np.random.default_rng(seed)
    names = list(ratios)
    r = np.array([ratios[n] for n in names], dtype=np.float64)
    members: dict[object, list[int]] = {}
    for i in sorted(labels_by_image):
        members.setdefault(groups.get(i, ("image", i)), []).append(i)
    keys = sorted(members, key=lambda k: min(members[k]))
    counts = {  # group -> label -> images of it in the group
        k: _label_counts([labels_by_image[i] or {EMPTY_LABEL} for i in members[k]]) for k in keys
    }
    totals: dict[int, int] = {}
    for c in counts.values():
        for lab, n in c.items():
            totals[lab] = totals.get(lab, 0) + n
    want_label = {lab: r * n for lab, n in totals.items()}
    want_total = r * sum(len(m) for m in members.values())
    out: dict[int, str] = {}
    n_images = float(want_total.sum())
    # largest groups first (they have the least room), ties in seeded random order
    order = [keys[int(j)] for j in rng.permutation(len(keys))]
    order.sort(key=lambda k: -len(members[k]))
    for k in order:
        if stratify:
            # the split whose wants this group meets best: for each of its labels, the share of that
            # label the split still wants, weighted by the group's images of it, plus the share of
            # all images the split still wants
            score = want_total / n_images
            for lab, n in counts[k].items():
                score = score + n * want_label[lab] / max(1, totals[lab])
        else:
            score = want_total.copy()
        best = np.flatnonzero(score == score.max())
        choice = int(best[0] if len(best) == 1 else best[rng.integers(len(best))])
        _assign(k, choice, members, counts, want_label, want_total, names, out)
    return out


def _label_counts(label_sets: list[set[int]]) -> dict[int, int]:
    return dict(Counter(lab for labels in label_sets for lab in labels))


def _assign(
    k: object,
    choice: int,
    members: Mapping[object, list[int]],
    counts: Mapping[object, Mapping[int, int]],
    want_label: dict[int, np.ndarray],
    want_total: np.ndarray,
    names: list[str],
    out: dict[int, str],
) -> None:
    for i in members[k]:
        out[i] = names[choice]
    want_total[choice] -= len(members[k])
    for lab, n in counts[k].items():
        want_label[lab][choice] -= n


def split_deviation(
    assignment: Mapping[int, str], labels_by_image: Mapping[int, set[int]], ratios: Mapping[str, float]
) -> dict[int, float]:
    """Per label: the largest difference between a split's share of the label's images and its ratio."""
    per: dict[int, Counter[str]] = {}
    for i, sp in assignment.items():
        for lab in labels_by_image.get(i) or ():
            per.setdefault(lab, Counter())[sp] += 1
    out = {}
    for lab, by in per.items():
        n = sum(by.values())
        out[lab] = max(abs(by.get(sp, 0) / n - r) for sp, r in ratios.items())
    return out
