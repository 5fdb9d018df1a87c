"""The evaluator's extra metrics, one module each; importing this package imports every module in
it, and each registers its metrics (:mod:`dataforge.evaluation.registry`). A new metric is a new
module here."""

from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
