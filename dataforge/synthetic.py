"""Synthetic detection datasets: coloured shapes on textured backgrounds, with exact boxes
(and, on request, exact instance masks and the triangles' corner keypoints).

Used by the shipped example (``examples/pets-mini``), the tests, the benchmarks and the demo.
Nothing is downloaded. The output is a plain COCO dataset: ``<out>/instances.json`` and
``<out>/images/``. Same arguments, same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dataforge.jsonio import write_json
from dataforge.masks import bbox_xyxy, encode

# name -> (shape, RGB colour)
DEFAULT_CLASSES: dict[str, tuple[str, tuple[int, int, int]]] = {
    "cat": ("ellipse", (230, 140, 40)),
    "dog": ("rectangle", (120, 70, 30)),
    "bird": ("triangle", (40, 110, 220)),
}


def _draw(
    rng: np.random.Generator,
    size_wh: tuple[int, int],
    classes: Sequence[str],
    max_objects: int,
    palette: dict[str, tuple[str, tuple[int, int, int]]],
) -> tuple[Any, list[tuple[str, list[float], Any, list[tuple[float, float]]]]]:
    """The image and its objects: (class, xywh box, its drawn pixels as an "L" image, corner points)."""
    from PIL import Image, ImageDraw

    w, h = size_wh
    base = rng.integers(60, 200, size=3)
    noise = rng.integers(-25, 25, size=(h // 4 + 1, w // 4 + 1, 1))
    bg = np.clip(base[None, None, :] + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(bg).resize((w, h), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(img)
    objects = []
    for _ in range(int(rng.integers(0, max_objects + 1))):
        name = classes[int(rng.integers(len(classes)))]
        shape, colour = palette[name]
        bw = int(rng.integers(max(4, w // 10), max(5, w // 2)))
        bh = int(rng.integers(max(4, h // 10), max(5, h // 2)))
        x0 = int(rng.integers(0, w - bw))
        y0 = int(rng.integers(0, h - bh))
        x1, y1 = x0 + bw, y0 + bh
        jitter = tuple(int(c) for c in np.clip(np.array(colour) + rng.integers(-20, 20, 3), 0, 255))
        own = Image.new("L", (w, h), 0)
        corners: list[tuple[float, float]] = []
        for d, fill in ((draw, jitter), (ImageDraw.Draw(own), 1)):
            if shape == "ellipse":
                d.ellipse([x0, y0, x1 - 1, y1 - 1], fill=fill)
            elif shape == "rectangle":
                d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill)
            else:
                tri = [((x0 + x1) // 2, y0), (x0, y1 - 1), (x1 - 1, y1 - 1)]
                d.polygon(tri, fill=fill)
                corners = [(px + 0.5, py + 0.5) for px, py in tri]  # the corner pixels' centres
        objects.append((name, [float(x0), float(y0), float(bw), float(bh)], own, corners))
    return img, objects


#: the keypoints the triangles ("bird") carry with ``keypoints=True``: their corners
TRIANGLE_KEYPOINTS = ["apex", "left_base", "right_base"]


def make_shapes_dataset(
    out: Path,
    *,
    n_images: int = 40,
    size_wh: tuple[int, int] = (160, 120),
    classes: Sequence[str] = ("cat", "dog", "bird"),
    max_objects: int = 4,
    seed: int = 0,
    image_format: str = "jpeg",
    subdir: str = "",
    masks: bool = False,
    keypoints: bool = False,
) -> dict[str, Any]:
    """Write ``n_images`` images and ``instances.json`` under ``out``; return the COCO dict.

    ``masks``: each object's ``segmentation`` is an RLE of exactly its visible pixels (a later
    shape occludes an earlier one, which can cut it in parts or leave a hole). ``keypoints``: the
    triangle class gets :data:`TRIANGLE_KEYPOINTS` (v=2 where its corner pixel is visible, else 1)
    and a skeleton."""
    palette = dict(DEFAULT_CLASSES)
    for i, name in enumerate(classes):
        if name not in palette:
            palette[name] = (
                ("ellipse", "rectangle", "triangle")[i % 3],
                ((i * 67) % 256, (i * 131) % 256, (i * 29) % 256),
            )
    rng = np.random.default_rng(seed)
    out = Path(out)
    img_dir = out / "images" / subdir if subdir else out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    cats: list[dict[str, Any]] = [
        {"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(classes)
    ]
    if keypoints:
        for c in cats:
            if palette[c["name"]][0] == "triangle":
                c["keypoints"] = list(TRIANGLE_KEYPOINTS)
                c["skeleton"] = [[1, 2], [2, 3], [3, 1]]
    cat_id = {c["name"]: c["id"] for c in cats}
    ext = "jpg" if image_format == "jpeg" else image_format
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i in range(n_images):
        img, objects = _draw(rng, size_wh, classes, max_objects, palette)
        name = f"{subdir + '/' if subdir else ''}{i:06d}.{ext}"
        buf = io.BytesIO()
        img.save(buf, format=image_format.upper(), **({"quality": 90} if image_format == "jpeg" else {}))
        (out / "images" / name).write_bytes(buf.getvalue())
        images.append({"id": i + 1, "file_name": name, "width": size_wh[0], "height": size_wh[1]})
        visible = [np.asarray(own, dtype=bool) for _, _, own, _ in objects]
        for k in range(len(visible) - 2, -1, -1):  # what later shapes cover is not this one's
            visible[k] &= ~np.logical_or.reduce(visible[k + 1 :])
        for (cname, bbox, _own, corners), mask in zip(objects, visible, strict=True):
            ann: dict[str, Any] = {
                "id": len(anns) + 1,
                "image_id": i + 1,
                "category_id": cat_id[cname],
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
                "segmentation": [],
            }
            if masks:
                tight = bbox_xyxy(mask)
                if tight is None:  # wholly covered by later shapes: nothing of it is in the image
                    continue
                ann["segmentation"] = encode(mask)
                ann["area"] = int(mask.sum())
                ann["bbox"] = [tight[0], tight[1], tight[2] - tight[0], tight[3] - tight[1]]
            if keypoints and corners:
                flat: list[float] = []
                for x, y in corners:
                    flat += [x, y, 2 if mask[int(y), int(x)] else 1]
                ann["keypoints"], ann["num_keypoints"] = flat, len(corners)
            anns.append(ann)
    coco = {
        "info": {"description": f"dataforge synthetic shapes, seed {seed}"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": cats,
    }
    write_json(out / "instances.json", coco)
    return coco


def make_digits_folders(
    out: Path, *, seed: int = 0, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
) -> dict[str, int]:
    """scikit-learn's digits (1,797 real 8x8 scans shipped with scikit-learn; nothing downloaded)
    as class folders ``out/<split>/<digit>/<n>.png``. Returns images per split."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.images))
    n_train = round(ratios[0] * len(order))
    n_val = round(ratios[1] * len(order))
    counts: dict[str, int] = {}
    for rank, i in enumerate(order):
        split = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        folder = Path(out) / split / str(int(digits.target[i]))
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png")
        counts[split] = counts.get(split, 0) + 1
    return counts


#: the points of the faces :func:`make_faces_dataset` draws (COCO's names: the subject's left eye
#: is on the image's right), and the skeleton joining them (1-based, as COCO)
FACE_KEYPOINTS = ["left_eye", "right_eye", "nose"]
FACE_SKELETON = [[1, 2], [1, 3], [2, 3]]


def make_faces_dataset(
    out: Path,
    *,
    n_images: int = 120,
    size_wh: tuple[int, int] = (96, 96),
    seed: int = 0,
) -> dict[str, Any]:
    """ "Where's my nose": one face-like drawing per image (a skin-toned oval, two eyes, a nose, a
    mouth) on a textured background, with its :data:`FACE_KEYPOINTS` as a COCO keypoint annotation
    of category ``face`` (every point visible, ``v = 2``). Faces vary in place, size, skin tone and
    where the nose sits (a turned head moves it sideways), so no fixed guess is right.
    Writes ``<out>/instances.json`` and ``<out>/images/``; same arguments, same bytes."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    w, h = size_wh
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i in range(n_images):
        base = rng.integers(40, 220, size=3)
        noise = rng.integers(-30, 30, size=(h // 4 + 1, w // 4 + 1, 1))
        bg = np.clip(base[None, None, :] + noise, 0, 255).astype(np.uint8)
        img = Image.fromarray(bg).resize((w, h), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(img)
        rx = float(rng.uniform(0.16, 0.3) * w)
        ry = rx * float(rng.uniform(1.15, 1.35))
        cx = float(rng.uniform(rx + 1, w - rx - 1))
        cy = float(rng.uniform(ry + 1, h - ry - 1))
        turn = float(rng.uniform(-0.3, 0.3))  # the head turned: features shift sideways
        skin = rng.integers(150, 240) * np.array([1.0, 0.78, 0.62]) + rng.integers(-15, 15, 3)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=tuple(int(c) for c in np.clip(skin, 0, 255)))
        eye_y = cy - 0.28 * ry
        eye_r = max(1.5, 0.13 * rx)
        left = (cx + (0.42 + 0.1 * turn) * rx + turn * rx * 0.3, eye_y)  # the subject's left: image right
        right = (cx - (0.42 - 0.1 * turn) * rx + turn * rx * 0.3, eye_y)
        for ex, ey in (left, right):
            draw.ellipse([ex - eye_r, ey - eye_r, ex + eye_r, ey + eye_r], fill=(30, 30, 40))
        nose = (cx + turn * rx * 0.6, cy + 0.08 * ry)
        nw, nh = 0.14 * rx, 0.3 * ry
        draw.polygon(
            [(nose[0], nose[1] - nh), (nose[0] - nw, nose[1]), (nose[0] + nw, nose[1])],
            fill=tuple(int(c) for c in np.clip(skin * 0.7, 0, 255)),
        )
        mouth_y = cy + 0.5 * ry
        draw.line(
            [(nose[0] - 0.35 * rx, mouth_y), (nose[0] + 0.35 * rx, mouth_y)],
            fill=(150, 40, 50),
            width=max(1, round(0.08 * rx)),
        )
        name = f"{i:06d}.jpg"
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        (out / "images" / name).write_bytes(buf.getvalue())
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        points = [left, right, nose]
        x0, y0 = max(0.0, cx - rx), max(0.0, cy - ry)
        box = [x0, y0, min(float(w), cx + rx) - x0, min(float(h), cy + ry) - y0]
        anns.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "bbox": [round(v, 3) for v in box],
                "area": round(float(np.pi * rx * ry), 3),
                "iscrowd": 0,
                "segmentation": [],
                "keypoints": [v for x, y in points for v in (round(x, 3), round(y, 3), 2)],
                "num_keypoints": len(points),
            }
        )
    coco = {
        "info": {"description": f"dataforge synthetic faces, seed {seed}"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [
            {
                "id": 1,
                "name": "face",
                "supercategory": "face",
                "keypoints": list(FACE_KEYPOINTS),
                "skeleton": [list(e) for e in FACE_SKELETON],
            }
        ],
    }
    write_json(out / "instances.json", coco)
    return coco
