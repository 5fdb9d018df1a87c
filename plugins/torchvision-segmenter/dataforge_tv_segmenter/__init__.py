"""torchvision semantic segmentation as a dataforge trainer:
``dataforge train STORE --trainer torchvision-segmenter``.

Classes are the store's categories in id order (model index 0..K-1); the targets are the store's
semantic regions (``"semantic": true``: the ``masks`` and VOC ``SegmentationClass`` importers write
them), painted into one class per pixel, with pixels in no region void and ignored by the loss.
Images and targets are resized to ``image_size`` squares (targets by nearest neighbour, so no class
is invented) after the augment pipeline, which moves the regions with the image. Predictions are
upsampled back to each image's size and written as COCO-Stuff results (one RLE per class present),
what ``dataforge evaluate`` scores by mIoU. No weights are downloaded: start from scratch or from
``--weights local.pth``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from dataforge.training.config import TrainerConfig
from dataforge.training.data import IGNORE
from dataforge.training.loop import IMAGENET_MEAN, IMAGENET_STD, TorchTrainer

MODELS = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50")


class SegmenterConfig(TrainerConfig):
    model: Literal["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50"] = (
        "lraspp_mobilenet_v3_large"
    )
    image_size: int = Field(
        128, ge=16, description="images and targets are resized to image_size x image_size"
    )
    bn_momentum: float = Field(
        0.1,
        gt=0,
        le=1,
        description="BatchNorm running-statistics momentum (torchvision's MobileNetV3 uses 0.01, tuned "
        "for ImageNet-length runs: after a few hundred steps its running statistics still lag the "
        "data, and the model in eval mode predicts one class everywhere)",
    )


def _normalize(images: Any) -> Any:
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def confusion(pred: Any, target: Any, k: int) -> np.ndarray:
    """``(K, K)`` pixel counts, rows truth, over the pixels that are not void."""
    import torch

    keep = target != IGNORE
    idx = target[keep] * k + pred[keep]
    return torch.bincount(idx, minlength=k * k).reshape(k, k).cpu().numpy()


def miou(matrix: np.ndarray) -> tuple[float, float]:
    """Mean IoU over the classes present in truth or prediction (as ``dataforge evaluate``), and
    pixel accuracy."""
    from dataforge.evaluation.semantic import class_scores

    iou, _ = class_scores(matrix)
    total = matrix.sum()
    return (
        float(np.nanmean(iou)) if not np.isnan(iou).all() else 0.0,
        float(np.trace(matrix) / total) if total else 0.0,
    )


class TorchvisionSegmenter(TorchTrainer):
    name = "torchvision-segmenter"
    task = "segmentation"
    config = SegmenterConfig
    models = MODELS
    metric = "miou"

    def input_size(self, config: TrainerConfig) -> int | None:
        return int(getattr(config, "image_size", 128))

    def build_model(self, config: TrainerConfig, num_classes: int) -> Any:
        import torchvision

        kwargs: dict[str, Any] = {}
        if config.model != "lraspp_mobilenet_v3_large":
            kwargs["aux_loss"] = False
        import torch

        model = torchvision.models.get_model(
            config.model, weights=None, weights_backbone=None, num_classes=num_classes, **kwargs
        )
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = float(getattr(config, "bn_momentum", 0.1))
        return model

    def loss(
        self, model: Any, images: Any, targets: Any, class_weights: Any | None
    ) -> tuple[Any, dict[str, float]]:
        import torch.nn.functional as F

        logits = model(_normalize(images))["out"]
        loss = F.cross_entropy(logits, targets["mask"], weight=class_weights, ignore_index=IGNORE)
        # no per-step pixel accuracy: an argmax over every logit was 4% of a CPU step (validation has it)
        return loss, {}

    def infer(self, model: Any, images: Any) -> list[dict[str, Any]]:
        logits = model(_normalize(images))["out"]
        return [{"logits": x} for x in logits]

    def validate(
        self, model: Any, loader: Any, device: str, categories: list[dict[str, Any]]
    ) -> dict[str, float]:
        k = len(categories)
        matrix = np.zeros((k, k), dtype=np.int64)
        for images, targets in loader:
            logits = model(_normalize(images.to(device)))["out"]
            matrix += confusion(logits.argmax(1), targets["mask"].to(device), k)
        m, acc = miou(matrix)
        return {"miou": m, "pixel_accuracy": acc}

    def predict(
        self, checkpoint: dict[str, Any], images: list[Any], *, device: str = "auto", batch_size: int = 8
    ) -> list[dict[str, Any]]:
        """COCO-Stuff results: per image, one RLE per predicted class, at the image's own size (the
        logits upsampled bilinearly before the argmax)."""
        import torch
        import torch.nn.functional as F

        from dataforge.masks import encode_all

        model, dev, items, ds = self.prediction_inputs(checkpoint, images, device)
        categories = checkpoint["categories"]
        out: list[dict[str, Any]] = []
        with torch.no_grad():
            for start in range(0, len(ds), batch_size):
                idx = range(start, min(len(ds), start + batch_size))
                batch = torch.stack([ds[i][0] for i in idx]).to(dev)
                logits = model(_normalize(batch))["out"]
                for i, lg in zip(idx, logits, strict=True):
                    s = items[i]
                    up = F.interpolate(
                        lg[None], size=(s.height, s.width), mode="bilinear", align_corners=False
                    )
                    labels = up[0].argmax(0).cpu().numpy()
                    present = np.unique(labels)
                    masks = labels[None] == present[:, None, None]
                    rles, _ = encode_all(masks)
                    for k, rle in zip(present.tolist(), rles, strict=True):
                        out.append(
                            {
                                "image_id": s.image_id,
                                "category_id": int(categories[k]["id"]),
                                "segmentation": rle,
                            }
                        )
        return out
