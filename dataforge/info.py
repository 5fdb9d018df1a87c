"""``dataforge info``: what a store holds, as numbers."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from dataforge.store import Store

# COCO's area ranges (pixels²); ``small`` < 32², ``medium`` < 96².
SMALL, MEDIUM = 32**2, 96**2


_CANONICAL_SPLITS = ("train", "val", "valid", "validation", "test")


def split_order(name: str) -> tuple[int, str]:
    """train, val, test first (in that order), then other names alphabetically, "(none)" last."""
    if name in _CANONICAL_SPLITS:
        return (_CANONICAL_SPLITS.index(name), name)
    return (len(_CANONICAL_SPLITS) + (1 if name == "(none)" else 0), name)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values, dtype=np.float64)
    p = np.percentile(arr, [0, 5, 50, 95, 100])
    return {
        "min": float(p[0]),
        "p5": float(p[1]),
        "median": float(p[2]),
        "p95": float(p[3]),
        "max": float(p[4]),
        "mean": float(arr.mean()),
    }


def store_info(store: Store, *, where: str | None = None) -> dict[str, Any]:
    images = store.select(where)
    ids = {img["id"] for img in images}
    names = store.index.category_names
    split_of = {img["id"]: img.get("split") or "(none)" for img in images}

    per_split_images = Counter(split_of.values())
    per_split_boxes: Counter[str] = Counter()
    cat_images: defaultdict[str, set[int]] = defaultdict(set)
    cat_boxes: Counter[str] = Counter()
    cat_split_boxes: defaultdict[str, Counter[str]] = defaultdict(Counter)
    cat_split_images: defaultdict[str, set[tuple[str, int]]] = defaultdict(set)
    widths: list[float] = []
    heights: list[float] = []
    buckets: Counter[str] = Counter()
    crowd = 0
    shapes: Counter[str] = Counter()  # masks by kind, keypoint annotations, labelled points
    for a in store.annotations:
        iid = a["image_id"]
        if iid not in ids:
            continue
        name = names.get(a["category_id"], f"? ({a['category_id']})")
        split = split_of[iid]
        per_split_boxes[split] += 1
        cat_images[name].add(iid)
        cat_boxes[name] += 1
        cat_split_boxes[name][split] += 1
        cat_split_images[name].add((split, iid))
        w, h = a["bbox"][2], a["bbox"][3]
        widths.append(w)
        heights.append(h)
        area = w * h
        buckets["small" if area < SMALL else "medium" if area < MEDIUM else "large"] += 1
        crowd += 1 if a.get("iscrowd") else 0
        seg = a.get("segmentation")
        if seg:
            kind = "rle" if isinstance(seg, dict) else "polygons"
            shapes["semantic" if a.get("semantic") else kind] += 1
        if a.get("keypoints"):
            shapes["keypoint_annotations"] += 1
            shapes["keypoints_labelled"] += sum(1 for v in a["keypoints"][2::3] if v > 0)

    tags = Counter(t for img in images for t in img.get("tags", []))
    labelled = Counter(c for img in images for c in img.get("labels", ()))
    label_splits: defaultdict[int, Counter[str]] = defaultdict(
        Counter
    )  # category -> labelled images per split
    for img in images:
        for c in set(img.get("labels") or ()):
            label_splits[c][split_of[img["id"]]] += 1
    empty = sum(1 for img in images if not store.index.anns_by_image.get(img["id"]))
    sizes = Counter(f"{img['width']}x{img['height']}" for img in images)
    augmented = sum(
        1 for img in images if isinstance(img.get("source"), dict) and img["source"].get("pipeline")
    )
    hist = store.history()
    return {
        "store": str(store.root),
        "where": where,
        "revision": store.revision,
        "images": len(images),
        "annotations": sum(per_split_boxes.values()),
        "images_without_annotations": empty,
        "crowd_annotations": crowd,
        "masks": {k: shapes[k] for k in ("polygons", "rle", "semantic")},
        "keypoints": {
            "annotations": shapes["keypoint_annotations"],
            "labelled_points": shapes["keypoints_labelled"],
            "categories": {
                c["name"]: {"points": len(c["keypoints"]), "skeleton_edges": len(c.get("skeleton") or [])}
                for c in store.data["categories"]
                if c.get("keypoints")
            },
        },
        "splits": {
            s: {"images": per_split_images[s], "boxes": per_split_boxes[s]}
            for s in sorted(per_split_images, key=split_order)
        },
        "categories": [
            {
                "id": c["id"],
                "name": c["name"],
                "images": len(cat_images[c["name"]]),
                "boxes": cat_boxes[c["name"]],
                "labelled_images": labelled[c["id"]],
                "boxes_by_split": dict(
                    sorted(cat_split_boxes[c["name"]].items(), key=lambda kv: split_order(kv[0]))
                ),
                "images_by_split": dict(
                    sorted(
                        (
                            Counter(sp for sp, _ in cat_split_images[c["name"]]) + label_splits[c["id"]]
                        ).items(),
                        key=lambda kv: split_order(kv[0]),
                    )
                ),
            }
            for c in store.data["categories"]
        ],
        "box_sizes": {
            "width": _percentiles(widths),
            "height": _percentiles(heights),
            "coco_area_buckets": {k: buckets[k] for k in ("small", "medium", "large")},
        },
        "image_sizes": dict(sizes.most_common(10)),
        "tags": dict(tags.most_common()),
        "augmented_images": augmented,
        "augmentation": _augmentation(store),
        "last_operation": hist[-1] if hist else None,
    }


def _augmentation(store: Store) -> dict[str, Any] | None:
    """The augment job that made this store: source store, pipeline hash, copies, box counts."""
    meta = store.data.get("dataforge", {}).get("augment")
    if not isinstance(meta, dict):
        return None
    return {
        "source_store": meta.get("source_store"),
        "source_revision": meta.get("source_revision"),
        "pipeline_sha256": meta.get("pipeline_sha256"),
        "seed": meta.get("pipeline", {}).get("seed"),
        "copies": meta.get("copies"),
        "steps": [s.get("type") for s in meta.get("pipeline", {}).get("steps", [])],
        "counts": meta.get("counts", {}),
    }


def image_lineage(store: Store, image_id: int) -> dict[str, Any]:
    """One image's record with its lineage (for augmented images: source, copy, exact ops drawn)."""
    from dataforge.errors import UsageError

    for img in store.images:
        if img["id"] == image_id:
            return {**img, "annotations": len(store.index.anns_by_image.get(image_id, ()))}
    raise UsageError(f"{store.root}: no image with id {image_id}")


def balance(info: dict[str, Any]) -> dict[str, Any]:
    """Class balance from :func:`store_info`: per category its instances (boxes, or image-level
    labels for classification) and images, in all and per split, its share, and the imbalance ratio
    (the commonest category's instances over the rarest's, among those present)."""
    rows = []
    for c in info["categories"]:
        instances = c["boxes"] or c["labelled_images"]
        images = c["images"] or c["labelled_images"]
        rows.append(
            {
                "name": c["name"],
                "instances": instances,
                "images": images,
                "images_by_split": c["images_by_split"],
            }
        )
    total = sum(r["instances"] for r in rows)
    for r in rows:
        r["share"] = r["instances"] / total if total else 0.0
    present = [r["instances"] for r in rows if r["instances"]]
    return {
        "categories": sorted(rows, key=lambda r: -r["instances"]),
        "imbalance_ratio": (max(present) / min(present)) if present else None,
        "absent": [r["name"] for r in rows if not r["instances"]],
        "splits": list(info["splits"]),
    }


def balance_plot(bal: dict[str, Any], path: Any) -> None:
    """Instances per category, stacked by split, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = bal["categories"][::-1][-40:]
    fig, ax = plt.subplots(figsize=(7, 0.3 * max(len(rows), 3) + 1.2))
    left = np.zeros(len(rows))
    for split in bal["splits"]:
        values = np.array([r["images_by_split"].get(split, 0) for r in rows], dtype=float)
        ax.barh([r["name"] for r in rows], values, left=left, label=split)
        left += values
    ratio = bal["imbalance_ratio"]
    ax.set_xlabel("images")
    ax.set_title("class balance" + (f" (imbalance ratio {ratio:.1f})" if ratio else ""))
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
