"""torchvision classifiers as a dataforge trainer: ``dataforge train STORE --trainer torchvision-classifier``.

Classes are the store's image-level labels (what the class-folder importer writes). Images are
resized to ``image_size`` squares and normalized with ImageNet statistics inside the model call.
No weights are downloaded: start from scratch or from ``--weights local.pth``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from dataforge.training.config import TrainerConfig
from dataforge.training.loop import IMAGENET_MEAN, IMAGENET_STD, TorchTrainer

MODELS = ("resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0")


class ClassifierConfig(TrainerConfig):
    model: Literal["resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"] = (
        "resnet18"
    )
    image_size: int = Field(64, ge=8, description="images are resized to image_size x image_size")
    label_smoothing: float = Field(0.0, ge=0, lt=1)


def _normalize(images: Any) -> Any:
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


class TorchvisionClassifier(TorchTrainer):
    name = "torchvision-classifier"
    task = "classification"
    config = ClassifierConfig
    models = MODELS
    metric = "accuracy"

    def input_size(self, config: TrainerConfig) -> int | None:
        return int(getattr(config, "image_size", 64))

    def build_model(self, config: TrainerConfig, num_classes: int) -> Any:
        import torchvision

        return torchvision.models.get_model(config.model, weights=None, num_classes=num_classes)

    def backbone(self, model: Any) -> Any | None:
        import torch

        if hasattr(model, "features"):  # mobilenet_v3, efficientnet
            return model.features
        head = model.fc  # resnet
        return torch.nn.ModuleList(
            [m for name, m in model.named_children() if m is not head and name != "fc"]
        )

    def loss(
        self, model: Any, images: Any, targets: Any, class_weights: Any | None
    ) -> tuple[Any, dict[str, float]]:
        import torch.nn.functional as F

        logits = model(_normalize(images))
        smoothing = float(getattr(self.run_config, "label_smoothing", 0.0))
        loss = F.cross_entropy(logits, targets["label"], weight=class_weights, label_smoothing=smoothing)
        acc = (logits.argmax(1) == targets["label"]).float().mean()
        return loss, {"accuracy": float(acc)}

    def infer(self, model: Any, images: Any) -> list[dict[str, Any]]:
        probs = model(_normalize(images)).softmax(1)
        return [{"scores": p} for p in probs]

    def validate(
        self, model: Any, loader: Any, device: str, categories: list[dict[str, Any]]
    ) -> dict[str, float]:
        import torch.nn.functional as F

        correct = total = 0
        loss_sum = 0.0
        for images, targets in loader:
            images, labels = images.to(device), targets["label"].to(device)
            logits = model(_normalize(images))
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
            total += len(labels)
        return {"accuracy": correct / max(1, total), "loss": loss_sum / max(1, total)}
