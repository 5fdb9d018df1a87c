"""The dataset store (a directory that is a valid COCO dataset)."""

from dataforge.store.store import Store

__all__ = ["Store"]
