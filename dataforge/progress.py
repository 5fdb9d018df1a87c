"""One progress bar for long jobs (augment, training): tqdm on stderr, only where someone watches.

It shows when stderr is a terminal, or when ``DATAFORGE_PROGRESS=1`` forces it (logs, CI).
"""

from __future__ import annotations

import os
import sys
from typing import Any


class ProgressBar:
    """``set_done(done, total)`` for jobs that report totals; ``advance(n, **postfix)`` for loops."""

    def __init__(
        self, what: str, *, unit: str, total: int | None = None, enabled: bool = True, leave: bool = True
    ) -> None:
        self.what, self.unit, self.leave = what, unit, leave
        self.enabled = enabled and (sys.stderr.isatty() or os.environ.get("DATAFORGE_PROGRESS") == "1")
        self._bar: Any = None
        self._n = 0
        if total is not None:
            self._open(total, 0)

    def _open(self, total: int, initial: int) -> None:
        if self.enabled and self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=self.what,
                unit=self.unit,
                file=sys.stderr,
                leave=self.leave,
            )
            self._n = initial

    def set_done(self, done: int, total: int) -> None:
        if self._bar is None:
            self._open(total, done)
            return
        self._bar.update(done - self._n)
        self._n = done

    def advance(self, n: int = 1, **postfix: float) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix({k: f"{v:.4f}" for k, v in postfix.items()}, refresh=False)
            self._bar.update(n)
            self._n += n

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
