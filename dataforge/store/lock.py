"""An inter-process lock on a store directory (``fcntl.flock`` on ``<store>/.lock``).

flock is released by the kernel when the holder dies, so a killed job never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from dataforge.errors import StoreError

DEFAULT_TIMEOUT_S = 120.0


class StoreLock:
    def __init__(self, root: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = root / ".lock"
        self.timeout_s = timeout_s
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout_s
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    holder = self._holder()
                    raise StoreError(
                        f"{self.path.parent}: the store is locked by another dataforge process{holder} "
                        f"and stayed locked for {self.timeout_s:.0f} s",
                        hint="wait for that command to finish; a killed process releases the lock by itself",
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    @property
    def fd(self) -> int:
        """The locked file's descriptor (while held)."""
        if self._fd is None:
            raise StoreError(f"{self.path.parent}: the store lock is not held")
        return self._fd

    def _holder(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            return ""
        return f" (pid {pid})" if pid else ""

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
