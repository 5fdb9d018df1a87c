"""``dataforge validate``: what is wrong with a store (errors) and what looks suspicious (warnings).

Errors: out-of-bounds or degenerate boxes, malformed or out-of-image masks (polygons, RLE) and
keypoints, masks their box does not enclose, keypoint categories with bad skeletons or flip_idx,
annotations pointing to missing images or categories, duplicate ids, unsafe file names, missing,
unreadable, corrupt or changed images.
Warnings: categories without annotations, exact duplicate images (same sha256), the same image
content in two splits (leakage), stated sizes that differ from the file, stray files.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from dataforge.boxes import xywh_inside_image
from dataforge.errors import ImageError
from dataforge.imageio import probe_bytes, sha256_bytes
from dataforge.ingest.checks import category_keypoint_problem, safe_relative_name, shape_problem
from dataforge.runtime import usable_cores
from dataforge.store import Store


@dataclass
class Finding:
    severity: str  # "error" | "warning"
    code: str
    message: str
    image_id: int | None = None
    annotation_id: int | None = None


@dataclass
class ValidationReport:
    store: str
    images: int
    annotations: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "images": self.images,
            "annotations": self.annotations,
            "ok": self.ok,
            "error_count": len(self.errors),
            "warning_count": len(self.warnings),
            "counts_by_code": dict(Counter(f.code for f in self.findings)),
            "findings": [asdict(f) for f in self.findings],
        }


def validate_store(store: Store, *, check_files: bool = True, workers: int | None = None) -> ValidationReport:
    rep = ValidationReport(str(store.root), len(store.images), len(store.annotations))

    def err(code: str, msg: str, **kw: Any) -> None:
        rep.findings.append(Finding("error", code, msg, **kw))

    def warn(code: str, msg: str, **kw: Any) -> None:
        rep.findings.append(Finding("warning", code, msg, **kw))

    cat_ids = Counter(c.get("id") for c in store.data["categories"])
    for cid, n in cat_ids.items():
        if n > 1:
            err("duplicate-category-id", f"category id {cid} is used by {n} categories")
    img_ids = Counter(i.get("id") for i in store.images)
    for iid, n in img_ids.items():
        if n > 1:
            err("duplicate-image-id", f"image id {iid} is used by {n} images", image_id=iid)
    images = {i["id"]: i for i in store.images}
    cats_by_id = {c.get("id"): c for c in store.data["categories"]}
    spans: dict[str, set[str]] = {}
    for i in store.images:
        spans.setdefault(i.get("sha256", ""), set()).add(i.get("split") or "(none)")
    leaking = [sha for sha, splits in spans.items() if len(splits) > 1]
    if leaking:
        warn(
            "leakage",
            f"{len(leaking)} identical images sit in more than one split (the same file in train and "
            "test, say); `dataforge leakage` lists them, near duplicates too, with the moves that fix it",
        )
    for i in store.images:
        if i.get("exif_orientation") not in (None, 1):
            warn(
                "exif-orientation",
                f"image {i['id']} ({i['file_name']}): EXIF orientation {i['exif_orientation']}: viewers "
                "and some tools show it rotated or mirrored, while its boxes are in the stored pixels' "
                "frame (dataforge's, COCO's); a tool that applies EXIF first would misplace them",
                image_id=i["id"],
            )
    for c in store.data["categories"]:
        why = category_keypoint_problem(c)
        if why:
            err("bad-keypoint-category", why)
    ann_ids: Counter[Any] = Counter()
    used_cats: set[int] = set()
    for a in store.annotations:
        aid = a.get("id")
        ann_ids[aid] += 1
        iid = a.get("image_id")
        img = images.get(iid)
        if img is None:
            err(
                "dangling-image-id",
                f"annotation {aid} refers to image_id {iid}, which is not in the store",
                annotation_id=aid,
            )
            continue
        if a.get("category_id") not in cat_ids:
            err(
                "dangling-category-id",
                f"annotation {aid} (image {iid}) refers to category_id "
                f"{a.get('category_id')}, which is not in the store",
                image_id=iid,
                annotation_id=aid,
            )
        else:
            used_cats.add(a["category_id"])
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            err(
                "bad-bbox",
                f"annotation {aid} (image {iid}): bbox {bbox!r} is not [x, y, w, h]",
                image_id=iid,
                annotation_id=aid,
            )
            continue
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            err(
                "degenerate-box",
                f"annotation {aid} (image {iid}): box {bbox} has zero or negative size",
                image_id=iid,
                annotation_id=aid,
            )
        if not xywh_inside_image(x, y, w, h, img["width"], img["height"]):
            err(
                "box-out-of-bounds",
                f"annotation {aid} (image {iid}): box xywh {bbox} extends outside the "
                f"{img['width']}x{img['height']} image",
                image_id=iid,
                annotation_id=aid,
            )
        problem = shape_problem(a, img["width"], img["height"], cats_by_id.get(a.get("category_id")))
        if problem:
            err(problem[0].replace(" ", "-"), problem[1], image_id=iid, annotation_id=aid)
    for aid, n in ann_ids.items():
        if n > 1:
            err(
                "duplicate-annotation-id",
                f"annotation id {aid} is used by {n} annotations",
                annotation_id=aid,
            )
        if aid == 0:
            warn("annotation-id-zero", "an annotation has id 0, which COCOeval reads as 'no match'")
    for c in store.data["categories"]:
        if c.get("id") not in used_cats:
            warn("unused-category", f"category {c.get('name')!r} (id {c.get('id')}) has no annotations")

    by_hash: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for img in store.images:
        if safe_relative_name(img.get("file_name")) != img.get("file_name"):
            err(
                "unsafe-file-name",
                f"image {img['id']}: file_name {img.get('file_name')!r} is not a clean "
                "relative path inside images/",
                image_id=img["id"],
            )
        if img.get("sha256"):
            by_hash[img["sha256"]].append(img)
    for group in by_hash.values():
        if len(group) < 2:
            continue
        ids = [g["id"] for g in group]
        splits = sorted({g.get("split") or "(none)" for g in group})
        if len(splits) > 1:
            warn(
                "split-leakage",
                f"images {ids} are the same file (sha256) but sit in different splits ({', '.join(splits)})",
                image_id=ids[0],
            )
        else:
            warn("duplicate-image", f"images {ids} are exact duplicates (same sha256)", image_id=ids[0])

    if check_files:
        _check_files(store, err, warn, workers)
    return rep


def _check_files(store: Store, err: Any, warn: Any, workers: int | None) -> None:
    def check(img: dict[str, Any]) -> list[tuple[str, str, str]]:
        name = img.get("file_name")
        if not isinstance(name, str) or safe_relative_name(name) != name:
            return []
        path = store.images_dir / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return [("error", "missing-image", f"image {img['id']}: file images/{name} is missing")]
        except OSError as exc:
            return [
                (
                    "error",
                    "unreadable-image",
                    f"image {img['id']}: cannot read images/{name} ({exc.strerror})",
                )
            ]
        out = []
        try:
            info = probe_bytes(data, where=f"image {img['id']} (images/{name})")
        except ImageError as exc:
            return [("error", "corrupt-image", exc.message)]
        if (info.width, info.height) != (img.get("width"), img.get("height")):
            out.append(
                (
                    "error",
                    "size-mismatch",
                    f"image {img['id']}: the store says {img.get('width')}x"
                    f"{img.get('height')}, the file is {info.width}x{info.height}",
                )
            )
        if img.get("sha256") and sha256_bytes(data) != img["sha256"]:
            out.append(
                (
                    "error",
                    "image-changed",
                    f"image {img['id']}: images/{name} changed since import "
                    "(sha256 differs); store images are meant to be immutable",
                )
            )
        return out

    n = workers or min(8, 2 * usable_cores())
    with ThreadPoolExecutor(max_workers=n) as pool:
        for img, results in zip(store.images, pool.map(check, store.images), strict=True):
            for severity, code, msg in results:
                (err if severity == "error" else warn)(code, msg, image_id=img["id"])
    known = {img.get("file_name") for img in store.images}
    for dirpath, _dirs, files in os.walk(store.images_dir):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), store.images_dir).replace(os.sep, "/")
            if rel not in known:
                kind = (
                    "stale temp file of an interrupted import" if ".tmp-" in f else "not in annotations.json"
                )
                warn("stray-file", f"images/{rel} is {kind}")
