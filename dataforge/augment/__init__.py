"""Box-aware augmentation: pipeline files, the CPU (OpenCV kernels, albumentations semantics) and torchvision backends,
and the dask job behind ``dataforge augment``.

Import cost stays low: dask, torch and OpenCV load only when a job, a backend or a preview runs.
"""

from __future__ import annotations

from dataforge.augment.pipeline import Pipeline, load_pipeline, parse_pipeline
from dataforge.augment.replay import Replayed, replay

__all__ = ["Pipeline", "Replayed", "augment", "load_pipeline", "parse_pipeline", "preview", "replay"]


def __getattr__(name: str) -> object:
    if name == "augment":
        from dataforge.augment.job import augment

        return augment
    if name == "preview":
        from dataforge.augment.preview import preview

        return preview
    raise AttributeError(name)
