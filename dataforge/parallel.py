"""Split CPU-bound Python work over forked processes, results back in order.

The GIL keeps threads from sharing pure-Python work (parsing protobufs, probing images), and
threads that mix such work with syscalls are slower than one thread (each GIL hand-off is a
context switch). Forked processes share the parent's memory for free, so a reader can hand each
child a range of records and get compact results back through a pipe.

Forking is only done where it is safe and pays: on platforms with ``fork``, when the calling
process runs a single thread (forking a threaded process can copy a lock that some other thread
holds), and for enough items. Otherwise the work runs in this process, with the same results.
Set ``DATAFORGE_PROCESSES=1`` to always stay in one process.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dataforge.errors import DataforgeError
from dataforge.runtime import die_with_parent, load_prctl, usable_cores

T = TypeVar("T")
A = TypeVar("A")
D = TypeVar("D")


def default_processes() -> int:
    env = os.environ.get("DATAFORGE_PROCESSES")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise DataforgeError(f"DATAFORGE_PROCESSES must be a whole number, not {env!r}") from None
    return min(4, usable_cores())


def can_fork() -> bool:
    return hasattr(os, "fork") and threading.active_count() == 1


def ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous [start, stop) ranges covering ``range(n)``, sizes differing by at most 1."""
    parts = max(1, min(parts, n))
    q, r = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + q + (i < r)
        out.append((start, stop))
        start = stop
    return out


class Background:
    """``fn()`` running in a forked child process while this one goes on; :meth:`result` waits.

    Where forking is not safe (see the module docs) ``fn`` runs at once, in this process. Use it
    as a context manager: leaving the block with an exception kills and reaps the child, so that
    nothing keeps running behind an error.
    """

    def __init__(self, fn: Callable[[], Any], *, fork: bool = True) -> None:
        self._pid = 0
        self._fd = -1
        self._value: Any = None
        if not (fork and can_fork()):
            self._value = fn()
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: compute, send, and leave without running the parent's cleanup
            os.close(r)
            code = 0
            try:
                try:
                    payload = pickle.dumps((True, fn()), protocol=pickle.HIGHEST_PROTOCOL)
                except BaseException as exc:  # sent to the parent, which raises it
                    code = 1
                    payload = _pickled_error(exc)
                with os.fdopen(w, "wb") as out:
                    out.write(payload)
            finally:
                os._exit(code)
        os.close(w)
        self._pid, self._fd = pid, r

    def result(self) -> Any:
        if not self._pid:
            return self._value
        with os.fdopen(self._fd, "rb") as f:
            self._fd = -1  # closed by the with block
            data = f.read()
        os.waitpid(self._pid, 0)
        self._pid = 0
        if not data:
            raise DataforgeError("a worker process died before it sent its result (killed? out of memory?)")
        ok, self._value = pickle.loads(data)
        if not ok:
            raise self._value
        return self._value

    def cancel(self) -> None:
        """Kill the child if it is still running, and reap it."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        _kill(self._pid)
        self._pid = 0

    def __enter__(self) -> Background:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.cancel()


def _spans(n: int, processes: int | None, min_per_process: int) -> list[tuple[int, int]]:
    """The ranges to hand out: one per process (``processes`` or the default, each with at least
    ``min_per_process`` items), or the whole of ``range(n)`` where forking is not safe."""
    parts = min(processes or default_processes(), max(1, n // min_per_process))
    return ranges(n, parts) if parts > 1 and can_fork() else [(0, n)]


def map_ranges(
    fn: Callable[[int, int], T], n: int, *, processes: int | None = None, min_per_process: int = 1000
) -> list[T]:
    """``[fn(start, stop) for each range]`` over ``range(n)`` cut into one range per process.

    The calling process computes the first range itself while forked children compute the rest;
    each child pickles its result back through a pipe. An exception raised by ``fn`` in a child is
    re-raised here; a child that dies is a ``DataforgeError``.
    """
    spans = _spans(n, processes, min_per_process)
    if len(spans) == 1:
        return [fn(0, n)]
    children: list[Background] = []
    try:
        for start, stop in spans[1:]:
            children.append(Background(functools.partial(fn, start, stop)))
        return [fn(*spans[0])] + [child.result() for child in children]
    finally:
        for child in children:  # after an error: stop whatever is still running
            child.cancel()


class _Stepper:
    """A forked child that runs ``first`` on its range, waits for the parent's decision, then runs
    ``second``; each result goes back as one length-prefixed pickle."""

    def __init__(self, first: Callable[[], Any], second: Callable[[Any], Any]) -> None:
        up_r, up_w = os.pipe()  # child -> parent: results
        down_r, down_w = os.pipe()  # parent -> child: the decision
        parent = os.getpid()
        load_prctl()
        pid = os.fork()
        if pid == 0:
            os.close(up_r)
            os.close(down_w)
            code = 1
            try:
                die_with_parent(parent)
                with os.fdopen(up_w, "wb") as up, os.fdopen(down_r, "rb") as down:
                    if _send(up, first):
                        ok, decision = _receive(down)
                        if ok and _send(up, lambda: second(decision)):
                            code = 0
            finally:
                os._exit(code)
        os.close(up_w)
        os.close(down_r)
        self.pid = pid
        self._up = os.fdopen(up_r, "rb")
        self._down = os.fdopen(down_w, "wb")

    def result(self) -> Any:
        ok, value = _receive(self._up)
        if not ok:
            raise value
        return value

    def decide(self, decision: Any) -> None:
        data = pickle.dumps((True, decision), protocol=pickle.HIGHEST_PROTOCOL)
        self._down.write(len(data).to_bytes(8, "little") + data)
        self._down.close()

    def close(self) -> None:
        """Kill the child if it still runs, and reap it."""
        for f in (self._up, self._down):
            with contextlib.suppress(OSError):
                f.close()
        _kill(self.pid)
        self.pid = 0


def _kill(pid: int) -> None:
    """Kill child ``pid`` (0: none) if it still runs, and reap it."""
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


_exiting: list[int] = []  # children that sent their results and were still exiting


def _reap(pids: list[int]) -> None:
    """Reap children that have sent their results, and those of earlier calls. One with a big
    inherited heap takes milliseconds to exit, and nothing needs to wait for that: one that is
    still exiting is reaped by a later call (or is gone with this process)."""
    for pid in [*_exiting, *pids]:
        try:
            done = os.waitpid(pid, os.WNOHANG)[0] != 0
        except ChildProcessError:  # reaped elsewhere
            done = True
        if pid in _exiting and done:
            _exiting.remove(pid)
        elif pid not in _exiting and not done:
            _exiting.append(pid)


def _send(out: Any, fn: Callable[[], Any]) -> bool:
    try:
        data, ok = pickle.dumps((True, fn()), protocol=pickle.HIGHEST_PROTOCOL), True
    except BaseException as exc:  # sent to the parent, which raises it
        data, ok = _pickled_error(exc), False
    out.write(len(data).to_bytes(8, "little") + data)
    out.flush()
    return ok


def _receive(f: Any) -> tuple[bool, Any]:
    head = f.read(8)
    size = int.from_bytes(head, "little") if len(head) == 8 else -1
    data = f.read(size) if size >= 0 else b""
    if size < 0 or len(data) != size:
        raise DataforgeError("a worker process died before it sent its result (killed? out of memory?)")
    return pickle.loads(data)


def map_ranges_in_two_steps(
    first: Callable[[int, int], A],
    decide: Callable[[list[A]], D],
    second: Callable[[int, int, D], T],
    n: int,
    *,
    processes: int | None = None,
    min_per_process: int = 1000,
) -> tuple[D, list[T]]:
    """Like :func:`map_ranges`, in two steps with a decision between them, each range staying in
    its process: ``first(start, stop)`` runs for every range; ``decide`` (in this process) turns
    their results into one decision; ``second(start, stop, decision)`` then runs for every range,
    in the process that ran its ``first``, which may keep state from one step to the next.
    Returns the decision and the results of ``second`` in range order."""
    spans = _spans(n, processes, min_per_process)
    if len(spans) == 1:
        decision = decide([first(0, n)])
        return decision, [second(0, n, decision)]
    children: list[_Stepper] = []
    try:
        for start, stop in spans[1:]:
            children.append(
                _Stepper(functools.partial(first, start, stop), functools.partial(second, start, stop))
            )
        firsts = [first(*spans[0])] + [child.result() for child in children]
        decision = decide(firsts)
        for child in children:
            child.decide(decision)
        seconds = [second(*spans[0], decision)] + [child.result() for child in children]
        _reap([child.pid for child in children])
        for child in children:
            child.pid = 0
        return decision, seconds
    finally:
        for child in children:  # after an error: stop whatever is still running
            child.close()


def _pickled_error(exc: BaseException) -> bytes:
    try:
        return pickle.dumps((False, exc))
    except Exception:  # cannot be pickled: send its text
        return pickle.dumps((False, DataforgeError(f"{type(exc).__name__}: {exc}")))
