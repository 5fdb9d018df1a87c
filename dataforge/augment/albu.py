"""A pipeline as an ``albumentations.Compose`` (for users' own loops and the benchmark baseline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataforge.augment.pipeline import Pipeline


def _albumentations_steps() -> dict[str, Callable[[Any], Any]]:
    """Pipeline step type -> its albumentations transform (the same semantics, for the baseline)."""
    import albumentations as A
    import cv2

    def rrc(s: Any) -> Any:
        if s.size is None:
            raise ValueError("albumentations needs a fixed size for random_resized_crop; set size: [w, h]")
        w, h = s.size
        return A.RandomResizedCrop(size=(h, w), scale=s.scale, ratio=s.ratio, p=s.p)

    return {
        "hflip": lambda s: A.HorizontalFlip(p=s.p),
        "vflip": lambda s: A.VerticalFlip(p=s.p),
        "crop": lambda s: A.Crop(x_min=s.x_min, y_min=s.y_min, x_max=s.x_max, y_max=s.y_max, p=s.p),
        "center_crop": lambda s: A.CenterCrop(height=s.height, width=s.width, pad_if_needed=False, p=s.p),
        "random_crop": lambda s: A.RandomCrop(height=s.height, width=s.width, pad_if_needed=False, p=s.p),
        "random_resized_crop": rrc,
        "random_scale": lambda s: A.RandomScale(scale_limit=(s.scale[0] - 1, s.scale[1] - 1), p=s.p),
        "resize": lambda s: A.Resize(height=s.height, width=s.width, p=s.p),
        "rotate": lambda s: A.Rotate(limit=s.limit, border_mode=cv2.BORDER_CONSTANT, fill=s.fill, p=s.p),
        "color_jitter": lambda s: A.ColorJitter(
            brightness=s.brightness, contrast=s.contrast, saturation=s.saturation, hue=s.hue, p=s.p
        ),
        "gaussian_blur": lambda s: A.GaussianBlur(sigma_limit=s.sigma, blur_limit=0, p=s.p),
        "normalize": lambda s: A.Normalize(mean=s.mean, std=s.std, p=s.p),
    }


def to_albumentations(pipeline: Pipeline) -> Any:
    import albumentations as A

    table = _albumentations_steps()
    rules = pipeline.boxes
    return A.Compose(
        [table[s.type](s) for s in pipeline.steps],
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["labels"],
            min_visibility=rules.min_visibility,
            min_area=rules.min_area,
            clip=True,
        ),
        seed=pipeline.seed,
    )
