"""torch datasets over a store: the right category mapping, the pipeline's CPU backend on the fly.

Samples are plain tuples ``(image, target)``: ``image`` is a float32 ``(3, H, W)`` RGB tensor in
[0, 1]; ``target`` holds ``image_id`` and, for classification, ``label`` (model index), for
detection ``boxes`` (``(N, 4)`` float32 absolute xyxy) and ``labels`` (model index + 1; 0 is
torchvision's background), for (semantic) segmentation ``mask``: an ``(H, W)`` int64 map of model
indices, :data:`IGNORE` where no semantic region is (void), for (point) regression ``points``: the
``(K, 2)`` float32 ``(x, y)`` of the image's one keypoint instance as fractions of the image's
width and height (after augmentation, so they follow the pixels), and ``visible`` ``(K,)`` bool:
which points are labelled (``v > 0``) and still in the image. Everything is picklable, so
DataLoader workers (fork or spawn) work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataforge.boxes import xywh_to_xyxy_floats
from dataforge.errors import DataError, UsageError
from dataforge.masks import has_mask
from dataforge.runtime import usable_cores

#: the target value of pixels no semantic region covers (void): cross-entropy ignores it
IGNORE = 255


@dataclass(frozen=True, slots=True)
class Sample:
    image_id: int
    path: str
    file_name: str
    width: int
    height: int
    boxes_xyxy: tuple[tuple[float, float, float, float], ...]
    labels: tuple[int, ...]  # model indices (0-based) of the boxes, or the image's class
    #: segmentation: the image's semantic regions, (COCO segmentation, model index)
    regions: tuple[tuple[Any, int], ...] = ()
    #: regression: the image's one keypoint instance, COCO's flat ``[x, y, v] * K``; detection
    #: with keypoints: each box's K points, one after the other
    keypoints: tuple[float, ...] = ()
    #: regression: the permutation a mirror applies to the points (left and right swap)
    flip_perm: tuple[int, ...] = ()
    #: detection with masks: each box's COCO segmentation (parallel to ``boxes_xyxy``)
    masks: tuple[Any, ...] = ()


def category_table(store: Any) -> list[dict[str, Any]]:
    """The store's categories in model index order (by id), with their point names (and skeleton)
    where they have keypoints: a keypoint model's outputs follow them."""
    out = []
    for c in sorted(store.data["categories"], key=lambda c: c["id"]):
        entry: dict[str, Any] = {"id": int(c["id"]), "name": c["name"]}
        if c.get("keypoints"):
            entry["keypoints"] = list(c["keypoints"])
            entry["skeleton"] = [list(e) for e in c.get("skeleton") or []]
        out.append(entry)
    return out


def samples(
    store: Any,
    task: str,
    split: str | None,
    categories: list[dict[str, Any]],
    *,
    flip_idx: dict[str, list[int]] | None = None,
    with_masks: bool = False,
    with_keypoints: bool = False,
) -> list[Sample]:
    """Store images of ``split`` as samples; classification images need exactly one image-level label
    (images with none are left out, with a count in the error when nothing is left). Regression
    trains on the categories with keypoints among ``categories``: each image needs exactly one
    instance with keypoints (none: left out and counted; two or more: an error naming the image);
    ``flip_idx`` (a pipeline's ``keypoints.flip_idx``) overrides how a flip reorders its points.
    Detection: ``with_masks`` carries every object's mask (an object without one is an error: an
    instance-mask model needs them all), ``with_keypoints`` every object's points (objects of
    categories without keypoints get K unlabelled ones; every keypoint category needs the same K)."""
    if task == "regression":
        return _regression_samples(store, split, categories, flip_idx)
    perms: dict[int, list[int]] = {}
    k_points = 0
    if with_keypoints:
        k_points, perms = _keypoint_layout(store, categories, flip_idx)
    bare: list[dict[str, Any]] = []
    by_name = {c["name"]: i for i, c in enumerate(categories)}
    # store category id -> model index, matched by name (a checkpoint's table may number them otherwise)
    model_index = {c.id: by_name[c.name] for c in store.categories if c.name in by_name}
    out: list[Sample] = []
    unlabeled = 0
    regions: tuple[tuple[Any, int], ...] = ()
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    for img in store.select(None, split=split):
        iid = int(img["id"])
        segs: list[Any] = []
        points: list[float] = []
        perm: list[int] = []
        if task == "segmentation":
            anns = store.index.anns_by_image.get(iid, ())
            regions = tuple(
                (a["segmentation"], model_index[a["category_id"]])
                for a in anns
                if a.get("semantic") and a["category_id"] in model_index
            )
            if not regions:
                unlabeled += 1
                continue
            labels = [k for _, k in regions]
        elif task == "classification":
            labels = [model_index.get(c, -1) for c in img.get("labels", ())]
            if len(labels) != 1 or labels[0] < 0:
                unlabeled += 1
                continue
        else:
            anns = store.index.anns_by_image.get(iid, ())
            labels, bl = [], []
            for a in anns:
                k = model_index.get(a["category_id"], -1)
                if k < 0 or a.get("iscrowd") or a.get("semantic"):  # semantic regions are not objects
                    continue
                bl.append(xywh_to_xyxy_floats(a["bbox"]))
                labels.append(k)
                if with_masks:
                    if not has_mask(a.get("segmentation")):
                        bare.append({**a, "_file": img["file_name"]})
                    segs.append(a.get("segmentation"))
                if with_keypoints:
                    start = len(points) // 3
                    cat_perm = perms.get(int(a["category_id"]))
                    points += (
                        a["keypoints"]
                        if cat_perm is not None and a.get("keypoints")
                        else [0.0] * (3 * k_points)
                    )
                    perm += [start + j for j in (cat_perm or range(k_points))]
            boxes = tuple(bl)
        out.append(
            Sample(
                iid,
                str(store.images_dir / img["file_name"]),
                img["file_name"],
                int(img["width"]),
                int(img["height"]),
                boxes,
                tuple(labels),
                regions,
                keypoints=tuple(float(v) for v in points) if with_keypoints else (),
                flip_perm=tuple(perm) if with_keypoints else (),
                masks=tuple(segs),
            )
        )
    if bare:
        a = bare[0]
        raise DataError(
            f"{store.root}: {len(bare)} objects have no mask (first: annotation {a.get('id')} of "
            f"{a['_file']}); an instance-mask model learns every object's mask",
            item=a["_file"],
            reason="no mask",
            hint="give those objects masks (or leave them out: `dataforge export --where`), or train "
            "a box model",
        )
    if not out:
        what = "semantic regions" if task == "segmentation" else "single image-level label"
        why = f" ({unlabeled} images have no {what})" if unlabeled else ""
        raise UsageError(
            f"{store.root}: no {task} training images in split {split!r}{why}",
            hint="assign splits with `dataforge split`, or choose the split with --set train_split=NAME",
        )
    return out


def keypoint_count(categories: list[dict[str, Any]]) -> int:
    """K of the keypoint categories of a run's table (:func:`category_table`), 0 with none."""
    return next((len(c["keypoints"]) for c in categories if c.get("keypoints")), 0)


def _keypoint_categories(
    store: Any, categories: list[dict[str, Any]], flip_idx: dict[str, list[int]] | None
) -> tuple[list[dict[str, Any]], dict[int, list[int]]]:
    """The store's categories with keypoints among ``categories``, and each one's flip permutation
    by id (``flip_idx``: a pipeline's overrides)."""
    from dataforge.keypoints import flip_perms

    names = {c["name"] for c in categories}
    chosen = [c for c in store.data["categories"] if c["name"] in names and c.get("keypoints")]
    try:
        return chosen, flip_perms(chosen, flip_idx)
    except ValueError as exc:
        raise UsageError(f"the pipeline's keypoints.flip_idx: {exc}") from None


def _keypoint_layout(
    store: Any, categories: list[dict[str, Any]], flip_idx: dict[str, list[int]] | None
) -> tuple[int, dict[int, list[int]]]:
    """K, and each keypoint category's flip permutation by store id, for a keypoint detector: one
    K for every keypoint category among ``categories`` (the model has one keypoint head)."""
    chosen, perms = _keypoint_categories(store, categories, flip_idx)
    counts = {len(c["keypoints"]) for c in chosen}
    if len(counts) != 1:
        found = ", ".join(f"{c['name']!r} ({len(c['keypoints'])})" for c in chosen) or "none"
        raise UsageError(
            f"{store.root}: a keypoint model needs keypoint categories with one point count, found {found}",
            hint="train one keypoint category at a time (export it with --where)",
        )
    return counts.pop(), perms


def _regression_samples(
    store: Any, split: str | None, categories: list[dict[str, Any]], flip_idx: dict[str, list[int]] | None
) -> list[Sample]:
    chosen, perms = _keypoint_categories(store, categories, flip_idx)
    if len(chosen) != 1:
        listed = ", ".join(repr(c["name"]) for c in chosen) or "none"
        raise UsageError(
            f"{store.root}: point regression needs exactly one category with keypoints, found {listed}",
            hint="train on a store whose one keypoint category holds the points to predict, or train "
            "a keypoint detector for several",
        )
    ids = {int(c["id"]) for c in chosen}
    out: list[Sample] = []
    unlabeled = 0
    for img in store.select(None, split=split):
        iid = int(img["id"])
        found: list[dict[str, Any]] = [
            ann
            for ann in store.index.anns_by_image.get(iid, ())
            if ann["category_id"] in ids and any(v > 0 for v in ann.get("keypoints", [])[2::3])
        ]
        if not found:
            unlabeled += 1
            continue
        if len(found) > 1:
            raise DataError(
                f"{store.root}: image {iid} ({img['file_name']}) has {len(found)} instances with "
                "keypoints; point regression predicts the points of one instance per image",
                item=img["file_name"],
                reason="several instances",
                hint="train a keypoint detector (--trainer torchvision-detector --set "
                "model=keypointrcnn_resnet50_fpn) for several per image, or tag those images out",
            )
        one = found[0]
        out.append(
            Sample(
                iid,
                str(store.images_dir / img["file_name"]),
                img["file_name"],
                int(img["width"]),
                int(img["height"]),
                (),
                (0,),
                keypoints=tuple(float(v) for v in one["keypoints"]),
                flip_perm=tuple(perms[int(one["category_id"])]),
            )
        )
    if not out:
        why = f" ({unlabeled} images have no labelled keypoints)" if unlabeled else ""
        raise UsageError(
            f"{store.root}: no regression training images in split {split!r}{why}",
            hint="point regression trains on images with one keypoint instance (a category with "
            "`keypoints` names); assign splits with `dataforge split`",
        )
    return out


class StoreDataset:
    """A map-style torch dataset. ``pipeline`` (a Pipeline's canonical dict) augments on the fly with
    the CPU backend; draws depend on (pipeline seed, file, epoch), so runs are repeatable."""

    def __init__(
        self,
        items: list[Sample],
        task: str,
        *,
        pipeline: dict[str, Any] | None = None,
        resize_to: int | None = None,
        with_masks: bool = False,
        keypoint_count: int = 0,
    ) -> None:
        self.items = items
        self.task = task
        #: detection targets: ``masks`` (N, H, W) uint8 and ``keypoints`` (N, K, 3), empty for an
        #: image without objects (torchvision's mask and keypoint heads want the keys on every target)
        self.with_masks = with_masks
        self.keypoint_count = keypoint_count
        self.pipeline = pipeline
        self.resize_to = resize_to
        self.epoch = 0
        self._pipeline_obj: Any = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Any, dict[str, Any]]:
        import cv2
        import torch

        from dataforge.augment import cpu

        s = self.items[i]
        with open(s.path, "rb") as f:
            img = cpu.decode(f.read(), where=s.file_name)
        boxes: np.ndarray = np.asarray(s.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(s.labels, dtype=np.int64)
        label_kwargs: dict[str, Any] = {}
        masks = None
        points: Any = None  # (K, 3): x, y, v
        size_wh = (s.width, s.height)
        if self.task == "regression":
            points = np.asarray(s.keypoints, dtype=np.float64).reshape(-1, 3)
            label_kwargs = {"keypoints": points, "flip_perm": np.asarray(s.flip_perm, dtype=np.int64)}
        elif self.task == "segmentation":
            from dataforge.masks import decode_all_boxed

            masks, mask_boxes = decode_all_boxed([seg for seg, _ in s.regions], s.height, s.width)
            boxes = mask_boxes.astype(np.float64)
            label_kwargs = {"masks": masks, "mask_boxes": mask_boxes, "semantic": np.ones(len(masks), bool)}
        else:  # detection: instance masks and keypoints when the model learns them
            if s.masks:
                from dataforge.masks import decode_all_boxed

                masks, mask_boxes = decode_all_boxed(list(s.masks), s.height, s.width)
                label_kwargs.update(masks=masks, mask_boxes=mask_boxes)
            if s.keypoints:
                points = np.asarray(s.keypoints, dtype=np.float64).reshape(-1, 3)
                label_kwargs.update(keypoints=points, flip_perm=np.asarray(s.flip_perm, dtype=np.int64))
        if self.pipeline is not None:
            from dataforge.augment.pipeline import Pipeline
            from dataforge.augment.sample import augment_sample

            if self._pipeline_obj is None:
                self._pipeline_obj = Pipeline.model_validate(self.pipeline)
            aug = augment_sample(
                self._pipeline_obj,
                img,
                boxes,
                (s.width, s.height),
                key=s.file_name,
                copy=self.epoch,
                files_only=True,  # the dataset scales pixels itself
                **label_kwargs,
            )
            img = aug.image
            masks = aug.masks  # the regions moved with the pixels (None without regions)
            points, size_wh = aug.keypoints, aug.size_wh  # points off the canvas come back v = 0
            if self.task == "detection":  # the objects the box rules keep (boxes of masks: the masks')
                boxes, labels = aug.kept_boxes, labels[aug.keep]
                masks = None if masks is None else masks[aug.keep]
                if points is not None:
                    points = points.reshape(len(aug.keep), -1, 3)[aug.keep].reshape(-1, 3)
        target_map = None
        if masks is not None and self.task == "segmentation":
            # one class per pixel: regions painted in order, void elsewhere (masks: nearest neighbour)
            target_map = np.full(img.shape[:2], IGNORE, dtype=np.uint8)
            for m, k in zip(masks, labels.tolist(), strict=True):
                target_map[m] = k
            if self.resize_to is not None:
                target_map = cv2.resize(
                    target_map, (self.resize_to, self.resize_to), interpolation=cv2.INTER_NEAREST_EXACT
                )
        if self.resize_to is not None and (img.shape[0], img.shape[1]) != (self.resize_to, self.resize_to):
            img = cv2.resize(img, (self.resize_to, self.resize_to), interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(img[..., ::-1])
        tensor = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
        target: dict[str, Any] = {"image_id": s.image_id}
        if self.task == "classification":
            target["label"] = int(labels[0])
        elif points is not None and self.task == "regression":
            scale = np.asarray(size_wh, dtype=np.float64)
            target["points"] = torch.as_tensor(points[:, :2] / scale, dtype=torch.float32)
            target["visible"] = torch.as_tensor(points[:, 2] > 0)
            target["size_wh"] = torch.as_tensor(scale, dtype=torch.float32)
        elif target_map is not None:
            target["mask"] = torch.from_numpy(target_map.astype(np.int64))
        else:
            target["boxes"] = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            target["labels"] = torch.as_tensor(labels + 1, dtype=torch.int64)
            if self.with_masks:
                h, w = img.shape[:2]
                m = np.zeros((0, h, w), bool) if masks is None else masks
                target["masks"] = torch.from_numpy(np.ascontiguousarray(m, dtype=np.uint8))
            if self.keypoint_count:
                pts = np.zeros((0, 3)) if points is None else points
                target["keypoints"] = torch.as_tensor(pts, dtype=torch.float32).reshape(
                    -1, self.keypoint_count, 3
                )
        return tensor, target


def collate_segmentation(batch: list[tuple[Any, dict[str, Any]]]) -> tuple[Any, dict[str, Any]]:
    """Images and masks of one size (the trainer resizes them) stacked."""
    import torch

    return torch.stack([b[0] for b in batch]), {
        "mask": torch.stack([b[1]["mask"] for b in batch]),
        "image_id": [b[1]["image_id"] for b in batch],
    }


def collate_regression(batch: list[tuple[Any, dict[str, Any]]]) -> tuple[Any, dict[str, Any]]:
    """Images of one size (the trainer resizes them) and their points stacked."""
    import torch

    return torch.stack([b[0] for b in batch]), {
        "points": torch.stack([b[1]["points"] for b in batch]),
        "visible": torch.stack([b[1]["visible"] for b in batch]),
        "size_wh": torch.stack([b[1]["size_wh"] for b in batch]),
        "image_id": [b[1]["image_id"] for b in batch],
    }


def collate_classification(batch: list[tuple[Any, dict[str, Any]]]) -> tuple[Any, dict[str, Any]]:
    import torch

    images = torch.stack([b[0] for b in batch])
    return images, {
        "label": torch.as_tensor([b[1]["label"] for b in batch], dtype=torch.int64),
        "image_id": [b[1]["image_id"] for b in batch],
    }


def collate_detection(batch: list[tuple[Any, dict[str, Any]]]) -> tuple[list[Any], list[dict[str, Any]]]:
    return [b[0] for b in batch], [b[1] for b in batch]


def worker_count(requested: int) -> int:
    return max(0, min(requested, usable_cores()))


def load_pipeline_dict(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    from dataforge.augment import load_pipeline

    return load_pipeline(Path(path)).canonical()


class TFRecordDataset:
    """A map-style torch dataset over TFRecord shards (TF Object Detection API schema), for training
    straight from shards that ``dataforge export --format tfrecord`` (or another tool) wrote.

    Records are found and parsed by the TFRecord importer's reader (:mod:`dataforge.formats.tfrecord.reader`),
    so they pass the same checks: both CRCs, a complete image, boxes of the right kind and length,
    labels in the label map (``label_map.pbtxt`` beside a shard; without one, ``class/text``).
    Class ids are the categories' names matched to ``categories`` (the store's or a checkpoint's
    table); boxes are made absolute with the image's real size. Same sample layout as
    :class:`StoreDataset`. A record the importer would refuse raises ``DataError`` naming it.
    """

    def __init__(
        self,
        shards: list[str | Path],
        task: str,
        categories: list[dict[str, Any]],
        *,
        resize_to: int | None = None,
    ) -> None:
        from dataforge.formats.tfrecord.reader import scan

        self.task = task
        self.resize_to = resize_to
        self.by_name = {c["name"]: i for i, c in enumerate(categories)}
        self.scans = [scan(Path(shard)) for shard in shards]
        for shard_scan in self.scans:
            if shard_scan.damaged:
                raise UsageError(shard_scan.damaged[0]["_problem"][1])
        self.index = [(s, k) for s, shard_scan in enumerate(self.scans) for k in range(shard_scan.n)]

    def __len__(self) -> int:
        return len(self.index)

    def _record(self, i: int) -> tuple[bytes, str, str, np.ndarray, np.ndarray]:
        """(encoded image, its place, source id, boxes xyxy absolute, category indexes) of sample ``i``."""
        s, k = self.index[i]
        shard_scan = self.scans[s]
        img, anns, encoded = shard_scan.example(k)
        if "_problem" in img:
            raise DataError(img["_problem"][1], item=shard_scan.where(k), reason=img["_problem"][0])
        boxes = np.zeros((len(anns), 4))
        labels = np.zeros((len(anns),), np.int64)
        for j, a in enumerate(anns):
            where = f"{shard_scan.where(k)} object {j}"
            if "_problem" in a or "bbox" not in a or "_where" in a:
                reason, message = a.get("_problem", ("bad bbox", f"{where}: the box is empty or not finite"))
                raise DataError(message, item=where, reason=reason)
            name = a["_text"] if "_text" in a else shard_scan.label_map[a["category_id"]]
            if name not in self.by_name:
                raise DataError(
                    f"{where}: category {name!r} is not one of the {len(self.by_name)} categories trained on",
                    item=where,
                    reason="unknown category",
                )
            boxes[j] = xywh_to_xyxy_floats(a["bbox"])
            labels[j] = self.by_name[name]
        return encoded, shard_scan.where(k), img.get("tf_source_id", ""), boxes, labels

    def __getitem__(self, i: int) -> tuple[Any, dict[str, Any]]:
        import cv2
        import torch

        from dataforge.augment import cpu

        encoded, where, source_id, boxes, labels = self._record(i)
        img = cpu.decode(encoded, where=where)
        if self.resize_to is not None:
            img = cv2.resize(img, (self.resize_to, self.resize_to), interpolation=cv2.INTER_AREA)
        tensor = torch.from_numpy(np.ascontiguousarray(img[..., ::-1])).permute(2, 0, 1).float().div_(255.0)
        target: dict[str, Any] = {"image_id": i, "source_id": source_id}
        if self.task == "classification":
            target["label"] = int(labels[0]) if len(labels) else -1
        else:
            target["boxes"] = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            target["labels"] = torch.as_tensor(labels + 1, dtype=torch.int64)
        return tensor, target
