"""What an export kept, approximated and dropped, per label type, and the category table beside it.

A format says what it holds: ``carries`` (``masks``, ``keypoints``, ``semantic``) beyond boxes,
``boxes = False`` when it holds none (class folders, label maps), ``image_labels = True`` when it
holds image-level labels (COCO, class folders, CSV, Label Studio). Everything the selection has
of a type the format does not hold is counted as dropped with the reason; what it holds is
counted as kept (less what the exporter itself reports approximated or dropped). ``--strict``
turns any loss into an error: a drop before anything is written, an approximation after (the
output is then removed).
"""

from __future__ import annotations

from typing import Any

from dataforge.formats.base import ExportResult

#: label types in the order reports list them
TYPES = ("boxes", "masks", "keypoints", "semantic regions", "image labels")


def held(fmt: Any) -> frozenset[str]:
    """The label types ``fmt`` writes."""
    carries = set(getattr(fmt, "carries", ()))
    out = {
        t
        for t, key in (("masks", "masks"), ("keypoints", "keypoints"), ("semantic regions", "semantic"))
        if key in carries
    }
    if getattr(fmt, "boxes", True):
        out.add("boxes")
    if getattr(fmt, "image_labels", False):
        out.add("image labels")
    return frozenset(out)


def present(store: Any, ids: list[int]) -> dict[str, int]:
    """How many of each label type the selected images hold."""
    wanted = set(ids)
    return present_in(
        [img for img in store.images if img["id"] in wanted],
        [a for a in store.annotations if a["image_id"] in wanted],
    )


def present_in(images: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> dict[str, int]:
    """How many of each label type these store records hold (an import's kept counts)."""
    from dataforge.masks import has_mask

    counts = dict.fromkeys(TYPES, 0)
    for a in annotations:
        if a.get("semantic"):
            counts["semantic regions"] += 1
            continue
        counts["boxes"] += 1
        counts["masks"] += has_mask(a.get("segmentation"))
        counts["keypoints"] += bool(a.get("keypoints"))
    counts["image labels"] = sum(len(img.get("labels") or ()) for img in images)
    return {t: n for t, n in counts.items() if n}


def losses(fmt: Any, counts: dict[str, int]) -> dict[str, int]:
    """What ``fmt`` cannot hold of ``counts``, as ``dropped`` entries (``what (why)`` -> count)."""
    has = held(fmt)
    out: dict[str, int] = {}
    for t, n in counts.items():
        if t in has:
            continue
        if t == "boxes" and "masks" in has:  # a label-map format: objects without a mask are lost
            n -= counts.get("masks", 0)
            t, why = "boxes without a mask", f"the {fmt.name} format holds pixels, not boxes"
        elif t == "semantic regions" and "masks" in has:
            continue  # written as instance masks: counted by approximations()
        else:
            why = f"the {fmt.name} format holds no {t}"
        if n > 0:
            out[f"{t} ({why})"] = n
    return out


def approximations(fmt: Any, counts: dict[str, int]) -> dict[str, int]:
    """What ``fmt`` holds only approximately of ``counts`` by type (semantic regions in a format of
    instance masks alone), as ``approximated`` entries; an exporter adds its own (traced polygons)."""
    has = held(fmt)
    n = counts.get("semantic regions", 0)
    if n and "masks" in has and "semantic regions" not in has:
        return {f"semantic regions (the {fmt.name} format writes them as instance masks)": n}
    return {}


def account(fmt: Any, counts: dict[str, int], result: ExportResult) -> None:
    """Fill ``result.kept`` and add the format's type losses and approximations to ``result``."""
    for what, n in losses(fmt, counts).items():
        result.dropped.setdefault(what, n)
    for what, n in approximations(fmt, counts).items():
        result.approximated.setdefault(what, n)
    has = held(fmt)
    for t in TYPES:
        if t in has and counts.get(t):
            result.kept[t] = counts[t]


def summary(fmt_name: str, result: Any) -> str:
    """One line of an export's or an import's ``kept``, ``approximated`` and ``dropped``, with counts."""
    parts = ["kept " + (", ".join(f"{n} {t}" for t, n in result.kept.items()) or "no labels")]
    if result.approximated:
        parts.append("approximated " + ", ".join(f"{n} {w}" for w, n in result.approximated.items()))
    if result.dropped:
        parts.append("dropped " + ", ".join(f"{n} {w}" for w, n in result.dropped.items()))
    return f"{fmt_name}: " + "; ".join(parts)


def category_table(store: Any, fmt_name: str, result: ExportResult) -> dict[str, Any]:
    """``categories.json``: each category's name, store id and the format's id (or its name, where
    the format names categories), so that an import back (``--categories``) keeps the ids."""
    return {
        "dataforge_categories": 1,
        "format": fmt_name,
        "categories": [
            {"name": c["name"], "store_id": c["id"], "format_id": result.category_ids.get(c["id"], c["name"])}
            for c in sorted(store.data["categories"], key=lambda c: c["id"])
        ],
    }
