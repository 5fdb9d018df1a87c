"""Label Studio JSON export (a list of tasks) — import, and export as importable tasks.

Import: each task is one image. The image is the task's ``data.image`` (else the first string
value of ``data``): ``/data/local-files/?d=<path>`` (the path, URL-decoded), ``/data/upload/<n>/<file>``
or any URL (the file name), or a plain path; it is looked up under ``--images`` (default: the
JSON's folder), by path and then by file name. The **latest non-cancelled annotation** (by
``updated_at``, then id) is imported: ``rectanglelabels`` regions become boxes (percent of the
image, converted with the image's real size; ``original_width/height`` are checked against it) and
``choices`` become image-level labels. Rotated rectangles are refused (Label Studio's own converters
get them wrong for non-square images; dataforge stores axis-aligned boxes). Other region types are
counted in a warning. Task, annotation and annotator ids are kept in ``source.labelstudio``.

Export: ``tasks.json`` (importable by Label Studio: ``data.image``, ``data.dataforge_id``, and the
store's boxes and labels as one annotation per task), ``label_config.xml`` for the project, and the
images under ``images/``. Image URLs are ``/data/local-files/?d=<url_prefix><file_name>``
(``--option url_prefix=...``, default ``images/``): serve the export folder as local files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, quote, unquote, urlparse
from xml.sax.saxutils import quoteattr

from dataforge.boxes import xywh_to_xyxy, xywh_to_xyxy_floats, xyxy_to_xywh_percent
from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ExportResult, ImportBatch
from dataforge.formats.common import copy_store_images, prepare_out_dir, problem
from dataforge.jsonio import load_json, write_json

if TYPE_CHECKING:
    from dataforge.store import Store


def image_ref(task_data: dict[str, Any]) -> str | None:
    """The image reference of a task: ``data.image`` or its first string value."""
    value = task_data.get("image")
    if not isinstance(value, str):
        value = next((v for v in task_data.values() if isinstance(v, str)), None)
    return value


def ref_to_path(ref: str) -> str:
    """``/data/local-files/?d=a/b%20c.jpg`` -> ``a/b c.jpg``; upload and http URLs -> the file name."""
    parsed = urlparse(ref)
    if parsed.path.rstrip("/").endswith("/data/local-files") or "d" in parse_qs(parsed.query):
        d = parse_qs(parsed.query).get("d")
        if d:
            return d[0]
    if parsed.scheme in ("http", "https", "s3", "gs") or ref.startswith("/data/"):
        return unquote(os.path.basename(parsed.path))
    return unquote(ref)


def latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    anns = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not anns:
        return None
    return max(anns, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


class LabelStudioJsonFormat:
    name: ClassVar[str] = "labelstudio"
    description: ClassVar[str] = (
        "Label Studio JSON tasks (latest annotation; percent boxes; choices as labels)"
    )
    can_import: ClassVar[bool] = True
    can_export: ClassVar[bool] = True

    def detect(self, path: Path) -> bool:
        if not (path.is_file() and path.suffix.lower() == ".json"):
            return False
        with open(path, "rb") as f:
            head = f.read(4096).lstrip()
        return head[:1] == b"[" and (
            b'"data"' in head and (b'"annotations"' in head or b'"predictions"' in head or b'"image"' in head)
        )

    def read(self, path: Path, *, images: Path | None = None, **options: Any) -> ImportBatch:
        if options:
            raise UsageError(f"labelstudio import: unknown options {sorted(options)}")
        tasks = load_json(path, what="Label Studio JSON export")
        if not isinstance(tasks, list):
            raise DataError(
                f"{path.name}: expected a list of tasks, found a {type(tasks).__name__}", source=str(path)
            )
        root = images or path.parent
        cats: dict[str, int] = {}
        imgs: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        other: dict[str, int] = {}
        for i, task in enumerate(tasks):
            where = f"{path.name} task {task.get('id', f'#{i}') if isinstance(task, dict) else f'#{i}'}"
            image_id = len(imgs) + 1
            record: dict[str, Any] = {"id": image_id}
            imgs.append(record)
            data = task.get("data") if isinstance(task, dict) else None
            ref = image_ref(data) if isinstance(data, dict) else None
            if ref is None:
                record["file_name"] = f"task-{i}"
                record["_problem"] = problem("no image", f"{where}: no image reference in 'data'")
                continue
            rel_path = ref_to_path(ref)
            src = (
                rel_path
                if (root / rel_path).is_file() or not (root / os.path.basename(rel_path)).is_file()
                else os.path.basename(rel_path)
            )
            record["file_name"] = src
            record["_src"] = src
            ann = latest_annotation(task)
            record["source_labelstudio"] = {
                k: v
                for k, v in {
                    "task_id": task.get("id"),
                    "annotation_id": ann.get("id") if ann else None,
                    "completed_by": ann.get("completed_by") if ann else None,
                    "updated_at": ann.get("updated_at") if ann else None,
                }.items()
                if v is not None
            }
            if ann is None:
                continue
            labels: list[int] = []
            for region in ann.get("result") or []:
                rtype = region.get("type") if isinstance(region, dict) else None
                if rtype == "rectanglelabels":
                    anns.append(
                        self._box(
                            region,
                            image_id,
                            f"{where} region {region.get('id', '?')}",
                            len(anns) + 1,
                            cats,
                            record,
                        )
                    )
                elif rtype == "choices":
                    for choice in (region.get("value") or {}).get("choices") or []:
                        labels.append(cats.setdefault(str(choice), len(cats) + 1))
                elif rtype:
                    other[rtype] = other.get(rtype, 0) + 1
            if labels:
                record["labels"] = labels
        for img in imgs:  # lineage rides in the image record; ingest puts it under 'labelstudio'
            if "source_labelstudio" in img:
                img["labelstudio"] = img.pop("source_labelstudio")
        warnings = (
            [
                f"{path.name}: not imported (dataforge imports rectangles and choices): "
                + ", ".join(f"{n} {k}" for k, n in sorted(other.items()))
            ]
            if other
            else []
        )
        return ImportBatch(
            format=self.name,
            source=str(path.resolve()),
            images_root=root,
            images=imgs,
            annotations=anns,
            categories=[{"id": c, "name": n} for n, c in cats.items()],
            warnings=warnings,
            private_keys=True,
        )

    @staticmethod
    def _box(
        region: dict[str, Any],
        image_id: int,
        where: str,
        ann_id: int,
        cats: dict[str, int],
        record: dict[str, Any],
    ) -> dict[str, Any]:
        ann: dict[str, Any] = {"id": ann_id, "image_id": image_id, "_where": where}
        value = region.get("value") or {}
        names = value.get("rectanglelabels") or []
        rotation = value.get("rotation") or 0
        if not names:
            ann["_problem"] = problem("no label", f"{where}: rectangle without a label")
            return ann
        if isinstance(rotation, (int, float)) and abs(rotation) > 1e-9:
            ann["_problem"] = problem(
                "rotated box",
                f"{where}: the box is rotated {rotation:g} degrees; dataforge "
                'stores axis-aligned boxes (set canRotate="false" in the labeling config)',
            )
            return ann
        try:
            x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        except (KeyError, TypeError, ValueError):
            ann["_problem"] = problem("bad bbox", f"{where}: x, y, width, height must be numbers")
            return ann
        ann["category_id"] = cats.setdefault(str(names[0]), len(cats) + 1)
        ann["_bbox_norm"] = ["xyxy", [v / 100 for v in xywh_to_xyxy_floats((x, y, w, h))]]  # percent
        ow, oh = region.get("original_width"), region.get("original_height")
        if isinstance(ow, int) and isinstance(oh, int) and "width" not in record:
            record["width"], record["height"] = ow, oh  # checked against the real image by the import
        if isinstance(region.get("score"), (int, float)):
            ann["score"] = region["score"]
        return ann

    def export(
        self,
        store: Store,
        out: Path,
        *,
        image_ids: list[int],
        url_prefix: str = "images/",
        link: bool = False,
        **options: Any,
    ) -> ExportResult:
        if options:
            raise UsageError(f"labelstudio export: unknown options {sorted(options)} (known: url_prefix)")
        prepare_out_dir(out)
        names = store.index.category_names
        wanted = set(image_ids)
        images = [img for img in store.images if img["id"] in wanted]
        tasks = []
        n = 0
        for img in images:
            w, h = img["width"], img["height"]
            result: list[dict[str, Any]] = []
            for a in store.index.anns_by_image.get(img["id"], []):
                result.append(rect_region(a["bbox"], names[a["category_id"]], (w, h), f"df-{a['id']}"))
                n += 1
            if img.get("labels"):
                result.append(choices_region([names[c] for c in img["labels"]], f"df-img-{img['id']}"))
            task: dict[str, Any] = {
                "data": {
                    "image": "/data/local-files/?d=" + quote(url_prefix + img["file_name"]),
                    "dataforge_id": img["id"],
                }
            }
            if result:
                task["annotations"] = [{"result": result, "was_cancelled": False}]
            tasks.append(task)
        write_json(out / "tasks.json", tasks)
        (out / "label_config.xml").write_text(
            label_config([c["name"] for c in store.data["categories"]]), encoding="utf-8"
        )
        copy_store_images(
            store, out, [(img["file_name"], f"images/{img['file_name']}") for img in images], link=link
        )
        return ExportResult(
            out=out,
            images=len(images),
            annotations=n,
            files=[out / "tasks.json", out / "label_config.xml"],
            notes=[f"image URLs: /data/local-files/?d={url_prefix}<file_name>"],
        )


def rect_region(
    bbox_xywh: list[float], label: str, size_wh: tuple[int, int], region_id: str, score: float | None = None
) -> dict[str, Any]:
    """A ``rectanglelabels`` result for an absolute-pixel COCO box (Label Studio wants percent)."""
    px, py, pw, ph = (float(v) for v in xyxy_to_xywh_percent(xywh_to_xyxy(bbox_xywh), size_wh))
    region: dict[str, Any] = {
        "id": region_id,
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": size_wh[0],
        "original_height": size_wh[1],
        "image_rotation": 0,
        "value": {"x": px, "y": py, "width": pw, "height": ph, "rotation": 0, "rectanglelabels": [label]},
    }
    if score is not None:
        region["score"] = score
    return region


def choices_region(labels: list[str], region_id: str) -> dict[str, Any]:
    """An image-level ``choices`` result (the ``class`` control of :func:`label_config`)."""
    return {
        "id": region_id,
        "from_name": "class",
        "to_name": "image",
        "type": "choices",
        "value": {"choices": labels},
    }


def label_config(categories: list[str], *, boxes: bool = True, choices: bool = True) -> str:
    """A labeling config for the store's categories: RectangleLabels and/or Choices."""
    labels = "".join(f"    <Label value={quoteattr(c)}/>\n" for c in categories)
    parts = ['<View>\n  <Image name="image" value="$image"/>\n']
    if boxes:
        parts.append(
            f'  <RectangleLabels name="label" toName="image" canRotate="false">\n{labels}'
            "  </RectangleLabels>\n"
        )
    if choices:
        opts = "".join(f"    <Choice value={quoteattr(c)}/>\n" for c in categories)
        parts.append(f'  <Choices name="class" toName="image" choice="multiple">\n{opts}  </Choices>\n')
    parts.append("</View>\n")
    return "".join(parts)
