"""A pipeline as an ``albumentations.Compose`` (for users' own loops and the benchmark baseline)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataforge.augment.pipeline import Pipeline


def to_albumentations(pipeline: Pipeline) -> Any:
    import albumentations as A
    import cv2

    steps: list[Any] = []
    for s in pipeline.steps:
        t = s.type
        if t == "hflip":
            steps.append(A.HorizontalFlip(p=s.p))
        elif t == "vflip":
            steps.append(A.VerticalFlip(p=s.p))
        elif t == "crop":
            steps.append(A.Crop(x_min=s.x_min, y_min=s.y_min, x_max=s.x_max, y_max=s.y_max, p=s.p))  # type: ignore[union-attr]
        elif t == "center_crop":
            steps.append(A.CenterCrop(height=s.height, width=s.width, pad_if_needed=False, p=s.p))  # type: ignore[union-attr]
        elif t == "random_crop":
            steps.append(A.RandomCrop(height=s.height, width=s.width, pad_if_needed=False, p=s.p))  # type: ignore[union-attr]
        elif t == "random_resized_crop":
            if s.size is None:  # type: ignore[union-attr]
                raise ValueError(
                    "albumentations needs a fixed size for random_resized_crop; set size: [w, h]"
                )
            w, h = s.size  # type: ignore[union-attr]
            steps.append(A.RandomResizedCrop(size=(h, w), scale=s.scale, ratio=s.ratio, p=s.p))  # type: ignore[union-attr]
        elif t == "random_scale":
            lo, hi = s.scale  # type: ignore[union-attr]
            steps.append(A.RandomScale(scale_limit=(lo - 1, hi - 1), p=s.p))
        elif t == "resize":
            steps.append(A.Resize(height=s.height, width=s.width, p=s.p))  # type: ignore[union-attr]
        elif t == "rotate":
            steps.append(
                A.Rotate(limit=s.limit, border_mode=cv2.BORDER_CONSTANT, fill=s.fill, p=s.p)  # type: ignore[union-attr]
            )
        elif t == "color_jitter":
            steps.append(
                A.ColorJitter(
                    brightness=s.brightness,  # type: ignore[union-attr]
                    contrast=s.contrast,  # type: ignore[union-attr]
                    saturation=s.saturation,  # type: ignore[union-attr]
                    hue=s.hue,  # type: ignore[union-attr]
                    p=s.p,
                )
            )
        elif t == "gaussian_blur":
            steps.append(A.GaussianBlur(sigma_limit=s.sigma, blur_limit=0, p=s.p))  # type: ignore[union-attr]
        elif t == "normalize":
            steps.append(A.Normalize(mean=s.mean, std=s.std, p=s.p))  # type: ignore[union-attr]
    rules = pipeline.boxes
    return A.Compose(
        steps,
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["labels"],
            min_visibility=rules.min_visibility,
            min_area=rules.min_area,
            clip=True,
        ),
        seed=pipeline.seed,
    )
