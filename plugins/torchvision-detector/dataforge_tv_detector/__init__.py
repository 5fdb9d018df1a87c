"""torchvision detectors as a dataforge trainer: ``dataforge train STORE --trainer torchvision-detector``.

Labels are the store's categories in id order, 1..K (0 is the background). Boxes are absolute
xyxy pixels; the model resizes images itself (``min_size``/``max_size``). Validation computes COCO
AP@0.5 on the val split. No weights are downloaded (``weights=None, weights_backbone=None``):
start from scratch or from ``--weights local.pth``.
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
)


class DetectorConfig(TrainerConfig):
    model: Literal[
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "fasterrcnn_resnet50_fpn_v2",
        "retinanet_resnet50_fpn_v2",
        "ssdlite320_mobilenet_v3_large",
        "fcos_resnet50_fpn",
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


class TorchvisionDetector(TorchTrainer):
    name = "torchvision-detector"
    task = "detection"
    config = DetectorConfig
    models = MODELS
    metric = "map50"

    def build_model(self, config: TrainerConfig, num_classes: int) -> Any:
        import torchvision

        assert isinstance(config, DetectorConfig)
        kwargs: dict[str, Any] = {}
        if config.min_size is not None:
            kwargs["min_size"] = config.min_size
        if config.max_size is not None:
            kwargs["max_size"] = config.max_size
        if config.model.startswith("fasterrcnn"):
            kwargs["box_batch_size_per_image"] = config.rois_per_image
        if config.model.startswith(("fasterrcnn", "retinanet", "fcos")):
            kwargs["box_score_thresh" if config.model.startswith("fasterrcnn") else "score_thresh"] = (
                config.score_threshold
            )
            kwargs[
                "box_detections_per_img" if config.model.startswith("fasterrcnn") else "detections_per_img"
            ] = config.detections_per_image
        else:  # ssdlite
            kwargs["score_thresh"] = config.score_threshold
            kwargs["detections_per_img"] = config.detections_per_image
        if config.trainable_backbone_layers is not None:
            kwargs["trainable_backbone_layers"] = config.trainable_backbone_layers
        return torchvision.models.get_model(
            config.model, weights=None, weights_backbone=None, num_classes=num_classes + 1, **kwargs
        )

    def loss(
        self, model: Any, images: Any, targets: Any, class_weights: Any | None
    ) -> tuple[Any, dict[str, float]]:
        losses = model(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
        total = sum(losses.values())
        return total, {k: float(v.detach()) for k, v in losses.items()}

    def infer(self, model: Any, images: Any) -> list[dict[str, Any]]:
        return list(model(list(images)))

    def validate(
        self, model: Any, loader: Any, device: str, categories: list[dict[str, Any]]
    ) -> dict[str, float]:
        from dataforge.boxes import box_area, xyxy_to_xywh
        from dataforge.evaluation.detection import run_cocoeval

        images, anns, preds = [], [], []
        for batch, targets in loader:
            outs = self.infer(model, [im.to(device) for im in batch])
            for im, t, o in zip(batch, targets, outs, strict=True):
                iid = int(t["image_id"])
                images.append({"id": iid, "width": int(im.shape[-1]), "height": int(im.shape[-2])})
                gt = t["boxes"].cpu().numpy().reshape(-1, 4)
                for b, area, lab in zip(
                    xyxy_to_xywh(gt).tolist(), box_area(gt).tolist(), t["labels"].tolist(), strict=True
                ):
                    anns.append(
                        {
                            "id": len(anns) + 1,
                            "image_id": iid,
                            "category_id": int(lab),
                            "bbox": b,
                            "area": area,
                            "iscrowd": 0,
                        }
                    )
                for b, lab, s in zip(
                    xyxy_to_xywh(o["boxes"].cpu().numpy().reshape(-1, 4)).tolist(),
                    o["labels"].tolist(),
                    o["scores"].tolist(),
                    strict=True,
                ):
                    preds.append({"image_id": iid, "category_id": int(lab), "bbox": b, "score": float(s)})
        gt = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": i + 1, "name": c["name"]} for i, c in enumerate(categories)],
        }
        if not anns:
            return {"map50": 0.0, "map": 0.0}
        ev = run_cocoeval(gt, preds)
        return {"map": float(max(ev.stats[0], 0.0)), "map50": float(max(ev.stats[1], 0.0))}
