"""The pipeline steps, one module each: importing this package imports every module in it, and
each registers its step, drawer, ops, kernels and albumentations twin (``dataforge.augment.registry``).
A new step is a new module here."""

from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
