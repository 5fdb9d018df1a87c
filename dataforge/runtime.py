"""What the process runs on, in one place: usable cores, the torch device, new files written
whole, children that die with their parent, and the garbage collector paused around bulk work.
Light: imports torch only to resolve a device.

One exception keeps its own copies of the last two: ``dataforge/ingest/copier.py`` runs as a
stdlib-only script (``python -I -S``, 20 ms to start) and cannot import dataforge."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

from dataforge.errors import ComponentError


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or ``taskset`` sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_device(device: str, *, option: str = "device", hint: str = "use device auto or cpu") -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is an error
    naming the ``option`` that asked for it. ``cpu`` does not import torch."""
    if device == "cpu":
        return "cpu"
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if not has_cuda:
        raise ComponentError(
            f"{option} cuda was requested but torch sees no CUDA GPU on this machine "
            f"(torch {torch.__version__}, cuda build {torch.version.cuda or 'none'})",
            hint=hint,
        )
    return device


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def write_new_file(path: str, data: bytes) -> None:
    """Create ``path`` and write all of ``data``; an existing file is an error (``FileExistsError``),
    never overwritten. Short writes are finished."""
    fd = os.open(path, _NEW_FILE, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


def load_prctl() -> None:
    """Look prctl up now (before a fork), so a forked child does not pay for loading ctypes."""
    _prctl()


def die_with_parent(parent: int) -> None:
    """Make this child die when process ``parent`` does (Linux ``PR_SET_PDEATHSIG``): a child that
    writes into a store must not go on after the command that started it was killed. If the
    parent is already gone, exit now. Elsewhere the broken pipe to the parent stops the child."""
    prctl = _prctl()
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the prctl
        os._exit(1)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector around bulk work. Imports and evaluations build
    millions of small dicts and lists that form no reference cycles; the collector would walk all
    of them again at every generation-2 collection for nothing. Reference counting still frees
    everything, and the collector runs again as soon as the block ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_FORKED: dict[str, Any] = {}  # what forked workers run and read (inherited at fork, never pickled)


def fork_safe() -> bool:
    """Forking is safe only from a process with no other thread (one could hold a lock the child
    would wait on forever: FiftyOne's database client, a thread pool), where fork exists and there
    is more than one core to use."""
    import multiprocessing as mp
    import threading

    return usable_cores() >= 2 and "fork" in mp.get_all_start_methods() and threading.active_count() == 1


def _one_blas_thread() -> Any:
    """One BLAS thread while the processes are the parallelism (two children each running two
    BLAS threads on two cores took 10.3 s where one each took 6.8 s)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn ("all")
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _run_forked(i: int) -> Any:
    with _one_blas_thread():
        return _FORKED["fn"](_FORKED["parts"][i])


def forked_map(fn: Callable[[Any], Any], parts: list[Any]) -> list[Any]:
    """``[fn(p) for p in parts]``: the last part in this process, each other in a forked one, side
    by side, when :func:`fork_safe` (else all in this process, in turn). The children inherit
    ``fn`` and ``parts`` as they are (a closure, large arrays: nothing is pickled but each part's
    index and result)."""
    if len(parts) < 2 or not fork_safe():
        return [fn(p) for p in parts]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    _FORKED.update(fn=fn, parts=parts)
    try:
        with ProcessPoolExecutor(len(parts) - 1, mp_context=mp.get_context("fork")) as pool:
            futures = [pool.submit(_run_forked, i) for i in range(len(parts) - 1)]
            with _one_blas_thread():
                last = fn(parts[-1])
            return [f.result() for f in futures] + [last]
    finally:
        _FORKED.clear()
