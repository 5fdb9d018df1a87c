"""Pause Python's cyclic garbage collector around bulk work.

Imports and evaluations build millions of small dicts and lists that form no reference cycles;
the cyclic GC would walk all of them again at every generation-2 collection for nothing. Reference
counting still frees everything; the collector runs again as soon as the block ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
