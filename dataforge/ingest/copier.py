"""Copy byte ranges of container files (TFRecord shards) into image files: a helper process.

An import of images embedded in container files runs this as a script (``python -I -S
copier.py < JOBS``) so that the copying, a read and a write per image, overlaps the import's own
checks on another core. A separate interpreter shares no memory with the import: a forked child
would make both processes copy every page either one touches. It imports nothing but the
standard library, and starts in about 20 ms.

``JOBS`` is a (temporary) file holding ``marshal.dumps((parent pid, [(source, offset, length, dest), ...]))``.
The helper writes ``marshal.dumps([(job index, reason), ...])`` (the jobs it could not do) to
its standard output. It dies with the import (``PR_SET_PDEATHSIG``) and never overwrites a file.
"""

from __future__ import annotations

import marshal
import os
import sys

Job = tuple[str, int, int, str]


def copy(jobs: list[Job]) -> list[tuple[int, str]]:
    """Copy each job's ``length`` bytes at ``offset`` of ``source`` to the new file ``dest``."""
    sources: dict[str, int] = {}
    made: set[str] = set()
    failures: list[tuple[int, str]] = []
    try:
        for i, (src, offset, length, dest) in enumerate(jobs):
            try:
                fd = sources.get(src)
                if fd is None:
                    fd = sources[src] = os.open(src, os.O_RDONLY)
                data = os.pread(fd, length, offset)
                if len(data) != length:
                    failures.append((i, f"read {len(data)} of {length} bytes; did the file change?"))
                    continue
                parent = os.path.dirname(dest)
                if parent not in made:
                    os.makedirs(parent, exist_ok=True)
                    made.add(parent)
                out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(out, view) :]
                finally:
                    os.close(out)
            except OSError as exc:
                failures.append((i, exc.strerror or str(exc)))
    finally:
        for fd in sources.values():
            os.close(fd)
    return failures


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):  # not Linux: the import kills it on errors anyway
        pass


def main() -> None:
    _die_with_parent()
    parent, jobs = marshal.load(sys.stdin.buffer)
    if os.getppid() != parent:  # the import died before this started
        sys.exit(1)
    failures = copy(jobs)
    sys.stdout.buffer.write(marshal.dumps(failures))


if __name__ == "__main__":
    main()
