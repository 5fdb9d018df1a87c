"""torchvision detectors as a dataforge trainer: ``dataforge train STORE --trainer torchvision-detector``.

Labels are the store's categories in id order, 1..K (0 is the background). Boxes are absolute
xyxy pixels; the model resizes images itself (``min_size``/``max_size``). Validation computes COCO
AP@0.5 on the val split. No weights are downloaded (``weights=None, weights_backbone=None``):
start from scratch or from ``--weights local.pth``.

Mask R-CNN models (``maskrcnn_*``) also learn every object's instance mask (an object without one
is an error), Keypoint R-CNN models (``keypointrcnn_*``) the points of the keypoint categories
(one point count for all of them; objects of other categories have none labelled). The augment
pipeline moves masks and points with the pixels (a flip swaps left and right points), and an
object's box is then its moved mask's. Validation adds mask and keypoint AP@0.5; predictions add
``segmentation`` (an RLE of the mask at 0.5) and ``keypoints``. The ``*_mobilenet_v3_large_fpn``
variants put the heads on the MobileNetV3 FPN backbone of ``fasterrcnn_mobilenet_v3_large_320_fpn``
(dataforge's composition of torchvision's parts): trainable from scratch on a CPU.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from dataforge.training.config import TrainerConfig
from dataforge.training.loop import TorchTrainer

MODELS = (
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn_v2",
    "ssdlite320_mobilenet_v3_large",
    "fcos_resnet50_fpn",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "maskrcnn_mobilenet_v3_large_fpn",
    "keypointrcnn_resnet50_fpn",
    "keypointrcnn_mobilenet_v3_large_fpn",
)


class DetectorConfig(TrainerConfig):
    model: Literal[
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "fasterrcnn_resnet50_fpn_v2",
        "retinanet_resnet50_fpn_v2",
        "ssdlite320_mobilenet_v3_large",
        "fcos_resnet50_fpn",
        "maskrcnn_resnet50_fpn",
        "maskrcnn_resnet50_fpn_v2",
        "maskrcnn_mobilenet_v3_large_fpn",
        "keypointrcnn_resnet50_fpn",
        "keypointrcnn_mobilenet_v3_large_fpn",
    ] = "fasterrcnn_mobilenet_v3_large_320_fpn"
    min_size: int | None = Field(
        None, ge=32, description="shorter side the model resizes to (default: the model's)"
    )
    max_size: int | None = Field(None, ge=32, description="longer side limit (default: the model's)")
    score_threshold: float = Field(0.05, ge=0, le=1, description="predictions below this score are dropped")
    detections_per_image: int = Field(100, ge=1)
    trainable_backbone_layers: int | None = Field(None, ge=0, le=6)
    rois_per_image: int = Field(
        128,
        ge=16,
        description="Faster R-CNN: proposals sampled per image for the box head (torchvision's default 512 costs 4x the CPU time)",
    )
    mask_threshold: float = Field(
        0.5, gt=0, lt=1, description="Mask R-CNN: a predicted mask is its pixels of probability >= this"
    )


def _rcnn(model: str) -> bool:
    return model.startswith(("fasterrcnn", "maskrcnn", "keypointrcnn"))


def _mobilenet_rcnn(name: str, num_classes: int, num_keypoints: int, kwargs: dict[str, Any]) -> Any:
    """Mask or Keypoint R-CNN on the MobileNetV3-Large FPN backbone, anchors and sizes of
    torchvision's ``fasterrcnn_mobilenet_v3_large_320_fpn``, every layer trainable (BatchNorm, not
    frozen: nothing is pretrained). The heads are slimmer than the ResNet-50 models' (mask: 2
    convolutions of 128 channels, not 4 of 256; keypoints: 4 of 128, not 8 of 512): those heads
    cost 10x to 100x the rest of a CPU training step."""
    from torch import nn
    from torchvision.models.detection import KeypointRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import mobilenet_backbone
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    backbone = mobilenet_backbone(
        backbone_name="mobilenet_v3_large",
        weights=None,
        fpn=True,
        norm_layer=nn.BatchNorm2d,
        trainable_layers=6,
    )
    sizes = ((32, 64, 128, 256, 512),) * 3
    defaults = {
        "min_size": 320,
        "max_size": 640,
        "rpn_pre_nms_top_n_test": 150,
        "rpn_post_nms_top_n_test": 150,
        "rpn_score_thresh": 0.05,
        "rpn_anchor_generator": AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes)),
    }
    channels = backbone.out_channels
    # a head given means num_classes=None and the box predictor given too (torchvision's rule)
    boxes = FastRCNNPredictor(1024, num_classes)  # 1024: the box head's TwoMLPHead width
    if name.startswith("keypointrcnn"):
        return KeypointRCNN(
            backbone,
            None,
            box_predictor=boxes,
            keypoint_head=KeypointRCNNHeads(channels, (128,) * 4),
            keypoint_predictor=KeypointRCNNPredictor(128, num_keypoints),
            **{**defaults, **kwargs},
        )
    return MaskRCNN(
        backbone,
        None,
        box_predictor=boxes,
        mask_head=MaskRCNNHeads(channels, (128, 128), 1),
        mask_predictor=MaskRCNNPredictor(128, 128, num_classes),
        **{**defaults, **kwargs},
    )


class TorchvisionDetector(TorchTrainer):
    name = "torchvision-detector"
    task = "detection"
    config = DetectorConfig
    models = MODELS
    metric = "map50"

    def instance_targets(self, config: TrainerConfig) -> frozenset[str]:
        if config.model.startswith("maskrcnn"):
            return frozenset({"masks"})
        if config.model.startswith("keypointrcnn"):
            return frozenset({"keypoints"})
        return frozenset()

    def build_model(self, config: TrainerConfig, num_classes: int) -> Any:
        import torchvision

        from dataforge.errors import UsageError
        from dataforge.training.data import keypoint_count

        assert isinstance(config, DetectorConfig)
        kwargs: dict[str, Any] = {}
        if config.min_size is not None:
            kwargs["min_size"] = config.min_size
        if config.max_size is not None:
            kwargs["max_size"] = config.max_size
        rcnn = _rcnn(config.model)
        if rcnn:
            kwargs["box_batch_size_per_image"] = config.rois_per_image
        if rcnn or config.model.startswith(("retinanet", "fcos")):
            kwargs["box_score_thresh" if rcnn else "score_thresh"] = config.score_threshold
            kwargs["box_detections_per_img" if rcnn else "detections_per_img"] = config.detections_per_image
        else:  # ssdlite
            kwargs["score_thresh"] = config.score_threshold
            kwargs["detections_per_img"] = config.detections_per_image
        k = 0
        if config.model.startswith("keypointrcnn"):
            k = keypoint_count(self.categories)
            if not k:
                raise UsageError(
                    f"{config.model} learns keypoints, but no category of the store names any",
                    hint="train a box or mask model, or import keypoints (categories[].keypoints)",
                )
        if config.model.endswith("_mobilenet_v3_large_fpn"):
            return _mobilenet_rcnn(config.model, num_classes + 1, k, kwargs)
        if config.trainable_backbone_layers is not None:
            kwargs["trainable_backbone_layers"] = config.trainable_backbone_layers
        if k:
            kwargs["num_keypoints"] = k
        return torchvision.models.get_model(
            config.model, weights=None, weights_backbone=None, num_classes=num_classes + 1, **kwargs
        )

    def loss(
        self, model: Any, images: Any, targets: Any, class_weights: Any | None
    ) -> tuple[Any, dict[str, float]]:
        keys = ("boxes", "labels", "masks", "keypoints")
        losses = model(images, [{k: t[k] for k in keys if k in t} for t in targets])
        total = sum(losses.values())
        return total, {k: float(v.detach()) for k, v in losses.items()}

    def infer(self, model: Any, images: Any) -> list[dict[str, Any]]:
        return list(model(list(images)))

    def validate(
        self, model: Any, loader: Any, device: str, categories: list[dict[str, Any]]
    ) -> dict[str, float]:
        """COCO AP@0.5 and AP of the boxes (``map50``, ``map``); of the masks (``mask_map50``) and
        the keypoints (``keypoint_map50``, OKS) for the models that learn them."""
        from dataforge.evaluation.detection import run_cocoeval

        images: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        preds: list[dict[str, Any]] = []
        for batch, targets in loader:
            outs = self.infer(model, [im.to(device) for im in batch])
            for im, t, o in zip(batch, targets, outs, strict=True):
                size = (int(im.shape[-1]), int(im.shape[-2]))
                iid = int(t["image_id"])
                images.append({"id": iid, "width": size[0], "height": size[1]})
                for a in _coco_objects(t, size, threshold=0.5):
                    anns.append({**a, "id": len(anns) + 1, "image_id": iid, "iscrowd": 0})
                preds += [{**p, "image_id": iid} for p in _coco_objects(o, size, self._mask_threshold())]
        if not anns:
            return {"map50": 0.0, "map": 0.0}
        gt = {
            "images": images,
            "annotations": anns,
            "categories": [{**c, "id": i + 1} for i, c in enumerate(categories)],
        }
        ev = run_cocoeval(
            gt, [{k: v for k, v in p.items() if k not in ("segmentation", "keypoints")} for p in preds]
        )
        out = {"map": float(max(ev.stats[0], 0.0)), "map50": float(max(ev.stats[1], 0.0))}
        if "segmentation" in anns[0]:
            segm = run_cocoeval(gt, [p for p in preds if "segmentation" in p], "segm")
            out["mask_map50"] = float(max(segm.stats[1], 0.0))
        if "keypoints" in anns[0]:
            from dataforge.evaluation.instances import evaluate_keypoints

            kp_cats = {c["id"] for c in gt["categories"] if c.get("keypoints")}
            stats = evaluate_keypoints(gt, [p for p in preds if p["category_id"] in kp_cats])["coco_stats"]
            out["keypoint_map50"] = float(max(stats[1], 0.0))
        return out

    def _mask_threshold(self) -> float:
        return float(getattr(self.run_config, "mask_threshold", 0.5))

    def predict(
        self, checkpoint: dict[str, Any], images: list[Any], *, device: str = "auto", batch_size: int = 8
    ) -> list[dict[str, Any]]:
        """COCO results: ``bbox`` xywh and ``score``; Mask R-CNN adds ``segmentation`` (an RLE of
        the image's size), Keypoint R-CNN ``keypoints`` ``[x, y, 1] * K`` for the keypoint
        categories' objects."""
        import torch

        model, dev, items, ds = self.prediction_inputs(checkpoint, images, device)
        categories = checkpoint["categories"]
        out: list[dict[str, Any]] = []
        with torch.no_grad():
            for start in range(0, len(ds), batch_size):
                idx = range(start, min(len(ds), start + batch_size))
                results = self.infer(model, [ds[i][0].to(dev) for i in idx])
                for i, res in zip(idx, results, strict=True):
                    s = items[i]
                    for p in _coco_objects(res, (s.width, s.height), self._mask_threshold()):
                        c = categories[p["category_id"] - 1]
                        if "keypoints" in p and not c.get("keypoints"):
                            del p["keypoints"]  # a category without points: its box alone
                        out.append({"image_id": s.image_id, **p, "category_id": int(c["id"])})
        return out


def _coco_objects(
    objects: dict[str, Any], size_wh: tuple[int, int], threshold: float
) -> list[dict[str, Any]]:
    """A target's or an output's objects as COCO dicts (``category_id`` the model's label 1..K):
    ``bbox`` xywh and ``area``, ``score`` for outputs, ``segmentation`` RLE (an output's mask at
    ``threshold``; a target's is 0/1) and ``area`` of the mask, ``keypoints`` flat with
    ``num_keypoints`` for targets."""
    import numpy as np

    from dataforge.boxes import box_area, xyxy_to_xywh
    from dataforge.masks import encode_all

    boxes = objects["boxes"].detach().cpu().numpy().reshape(-1, 4)
    out: list[dict[str, Any]] = [
        {"category_id": int(lab), "bbox": b, "area": float(a)}
        for b, a, lab in zip(
            xyxy_to_xywh(boxes).tolist(), box_area(boxes).tolist(), objects["labels"].tolist(), strict=True
        )
    ]
    if "scores" in objects:
        for o, sc in zip(out, objects["scores"].tolist(), strict=True):
            o["score"] = float(sc)
    if "masks" in objects:
        m = objects["masks"].detach().cpu()
        m = (m[:, 0] >= threshold) if m.ndim == 4 else m.bool()  # outputs: (N, 1, H, W) probabilities
        rles, areas = encode_all(m.numpy().reshape(-1, size_wh[1], size_wh[0]))
        for o, rle, area in zip(out, rles, areas, strict=True):
            o["segmentation"] = rle
            if "score" not in o:
                o["area"] = float(area)
    if "keypoints" in objects:
        kps = objects["keypoints"].detach().cpu().numpy()
        for o, pts in zip(out, kps, strict=True):
            if "score" in o:  # an output: every point, its third number 1
                o["keypoints"] = [v for x, y, _ in pts.tolist() for v in (round(x, 3), round(y, 3), 1)]
            else:
                o["keypoints"] = [v for x, y, vis in pts.tolist() for v in (x, y, int(vis))]
                o["num_keypoints"] = int(np.count_nonzero(pts[:, 2] > 0))
    return out
