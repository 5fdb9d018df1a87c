"""Point regression ("where's my nose?") as a dataforge trainer:
``dataforge train STORE --trainer torchvision-regressor``.

The targets are the points of the one keypoint instance each training image has (the store's one
category with ``keypoints`` names: a ``face`` with ``nose``, say). A torchvision backbone (ResNet or
MobileNetV3, from scratch or ``--weights local.pth``; nothing is downloaded) reads the image resized
to ``image_size`` square and predicts the K points:

- ``head=soft_argmax`` (default): a 1x1 convolution makes one heatmap per point from the
  backbone's stride-16 features, and each point is the softmax-weighted mean of the cell centres
  (integral regression, Sun et al., ECCV 2018). It keeps where things are, which a global pool
  throws away, and learns from few images.
- ``head=fc``: the classifier's global pool and a linear layer of 2K outputs (the classic
  regression head of the fast.ai "where's my nose" lesson).

The loss (``l1``, ``smooth_l1`` or ``mse``) is in pixels of the model's input, over the labelled
points alone (``v > 0``; a point the augment pipeline moved off the image is unlabelled). Points
move with the pixels under the pipeline: a flip swaps left and right points (the category's
``flip_idx``, or its left/right names). Validation reports the mean and median error in pixels of
the images' own size and PCK (a point within 5% of the image's longer side); the best checkpoint is
the lowest mean error. Predictions are COCO keypoint results without a score, one per image, in
the image's pixels: ``dataforge evaluate`` scores them as regression.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from dataforge.errors import UsageError
from dataforge.training.config import TrainerConfig
from dataforge.training.loop import IMAGENET_MEAN, IMAGENET_STD, TorchTrainer

MODELS = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large")
#: PCK's threshold in validation: a fraction of the image's longer side
PCK_ALPHA = 0.05


class RegressorConfig(TrainerConfig):
    model: Literal["resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large"] = (
        "resnet18"
    )
    image_size: int = Field(96, ge=32, description="images are resized to image_size x image_size")
    head: Literal["soft_argmax", "fc"] = Field(
        "soft_argmax",
        description="soft_argmax: heatmaps on stride-16 features, each point their expected position; "
        "fc: global pool + linear layer",
    )
    loss_fn: Literal["l1", "smooth_l1", "mse"] = Field(
        "l1", description="loss on the labelled points' coordinates, in input pixels"
    )
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = Field(0.001, gt=0, description="learning rate at base_batch_size")


def _normalize(images: Any) -> Any:
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def keypoint_category(categories: list[dict[str, Any]]) -> dict[str, Any]:
    """The one category with point names among ``categories`` (the run's table)."""
    found = [c for c in categories if c.get("keypoints")]
    if len(found) != 1:
        names = ", ".join(repr(c["name"]) for c in found) or "none"
        raise UsageError(
            f"point regression needs exactly one category with keypoints, found {names}",
            hint="train on a store whose one keypoint category holds the points to predict",
        )
    return found[0]


def _build(config: RegressorConfig, k: int) -> Any:
    """The network: images ``(B, 3, S, S)`` -> points ``(B, K, 2)`` as fractions of the input."""
    import torch
    import torchvision
    from torch import nn

    class Points(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.k = k
            self.head_kind = config.head
            if config.head == "fc":
                self.net = torchvision.models.get_model(config.model, weights=None, num_classes=2 * k)
                return
            net = torchvision.models.get_model(config.model, weights=None)
            if config.model.startswith("resnet"):
                self.backbone = nn.Sequential(
                    net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3
                )
            else:  # mobilenet_v3: the feature layers up to stride 16
                layers, stride = [], 1
                for m in net.features:
                    s = _stride(m)
                    if stride * s > 16:
                        break
                    stride *= s
                    layers.append(m)
                self.backbone = nn.Sequential(*layers)
            with torch.no_grad():
                channels = self.backbone(torch.zeros(1, 3, 64, 64)).shape[1]
            self.heatmaps = nn.Conv2d(channels, k, kernel_size=1)

        def forward(self, x: Any) -> Any:
            if self.head_kind == "fc":
                return 0.5 + self.net(x).view(-1, self.k, 2)
            logits = self.heatmaps(self.backbone(x))  # (B, K, h, w)
            b, _, h, w = logits.shape
            prob = logits.flatten(2).softmax(-1).view(b, self.k, h, w)
            xs = (torch.arange(w, device=x.device, dtype=prob.dtype) + 0.5) / w  # cell centres
            ys = (torch.arange(h, device=x.device, dtype=prob.dtype) + 0.5) / h
            px = (prob.sum(2) * xs).sum(-1)
            py = (prob.sum(3) * ys).sum(-1)
            return torch.stack([px, py], dim=-1)

    return Points()


def _stride(m: Any) -> int:
    """The stride a MobileNetV3 feature block applies (its first strided convolution's)."""
    from torch import nn

    for sub in m.modules():
        if isinstance(sub, nn.Conv2d) and sub.stride[0] > 1:
            return int(sub.stride[0])
    return 1


class TorchvisionRegressor(TorchTrainer):
    name = "torchvision-regressor"
    task = "regression"
    config = RegressorConfig
    models = MODELS
    metric = "mean_error_px"
    metric_mode = "min"

    def input_size(self, config: TrainerConfig) -> int | None:
        return int(getattr(config, "image_size", 96))

    def outputs(self, categories: list[dict[str, Any]]) -> int:
        return len(keypoint_category(categories)["keypoints"])

    def build_model(self, config: TrainerConfig, num_classes: int) -> Any:
        assert isinstance(config, RegressorConfig)
        return _build(config, num_classes)

    def backbone(self, model: Any) -> Any | None:
        if model.head_kind == "soft_argmax":
            return model.backbone
        import torch

        if hasattr(model.net, "features"):
            return model.net.features
        return torch.nn.ModuleList([m for name, m in model.net.named_children() if name != "fc"])

    def loss(
        self, model: Any, images: Any, targets: Any, class_weights: Any | None
    ) -> tuple[Any, dict[str, float]]:
        import torch
        import torch.nn.functional as F

        size = float(images.shape[-1])
        pred = model(_normalize(images)) * size
        truth = targets["points"] * size
        vis = targets["visible"]
        if not bool(vis.any()):  # every point left the images: nothing to learn from this batch
            return (pred * 0).sum(), {"error_px": 0.0}
        p, t = pred[vis], truth[vis]
        fn = {"l1": F.l1_loss, "smooth_l1": F.smooth_l1_loss, "mse": F.mse_loss}[
            getattr(self.run_config, "loss_fn", "l1")
        ]
        loss = fn(p, t)
        with torch.no_grad():
            err = torch.linalg.vector_norm(p - t, dim=-1).mean()
        return loss, {"error_px": float(err)}

    def infer(self, model: Any, images: Any) -> list[dict[str, Any]]:
        return [{"points": p} for p in model(_normalize(images))]

    def validate(
        self, model: Any, loader: Any, device: str, categories: list[dict[str, Any]]
    ) -> dict[str, float]:
        import torch

        errors, within = [], []
        for images, targets in loader:
            pred = model(_normalize(images.to(device))).cpu()
            scale = targets["size_wh"][:, None, :]  # fractions -> the images' own pixels
            dist = torch.linalg.vector_norm((pred - targets["points"]) * scale, dim=-1)
            vis = targets["visible"]
            errors.append(dist[vis])
            longer = targets["size_wh"].max(dim=1).values[:, None].expand_as(dist)
            within.append(dist[vis] <= PCK_ALPHA * longer[vis])
        err = torch.cat(errors) if errors else torch.zeros(0)
        if err.numel() == 0:
            return {"mean_error_px": float("inf"), "median_error_px": float("inf"), "pck": 0.0}
        return {
            "mean_error_px": float(err.mean()),
            "median_error_px": float(err.median()),
            "pck": float(torch.cat(within).float().mean()),
        }

    def predict(
        self, checkpoint: dict[str, Any], images: list[Any], *, device: str = "auto", batch_size: int = 8
    ) -> list[dict[str, Any]]:
        """One COCO keypoint result per image, no score: ``keypoints`` ``[x, y, 1] * K`` in the
        image's pixels, ``category_id`` the keypoint category's."""
        import torch

        model, dev, items, ds = self.prediction_inputs(checkpoint, images, device)
        category = keypoint_category(checkpoint["categories"])
        out: list[dict[str, Any]] = []
        with torch.no_grad():
            for start in range(0, len(ds), batch_size):
                idx = range(start, min(len(ds), start + batch_size))
                batch = torch.stack([ds[i][0] for i in idx]).to(dev)
                for i, pts in zip(idx, model(_normalize(batch)).cpu().tolist(), strict=True):
                    s = items[i]
                    flat: list[float] = []
                    for x, y in pts:
                        flat += [round(x * s.width, 3), round(y * s.height, 3), 1]
                    out.append(
                        {"image_id": s.image_id, "category_id": int(category["id"]), "keypoints": flat}
                    )
        return out
