"""Reading source images and writing them into the store, fast and without leaving the images root.

Every image is read once: the bytes are probed (size, integrity), hashed, and written to its final
place in the store's ``images/`` (which the import journaled first, see ``dataforge.store.staging``).
Plain ``os`` calls on string paths keep the per-image cost near the cost of the syscalls themselves;
a few threads overlap the I/O.
"""

from __future__ import annotations

import errno
import marshal
import os
import subprocess
import sys
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

from dataforge.errors import ImageError
from dataforge.formats.base import Embedded
from dataforge.imageio import probe_bytes, sha256_bytes
from dataforge.ingest import copier
from dataforge.parallel import default_processes
from dataforge.parallel import ranges as split_ranges
from dataforge.runtime import usable_cores, write_new_file

_CHUNK = 64  # images per read task
HELPER_MIN_IMAGES = 256  # fewer embedded images are copied in-process: a helper takes ~20 ms to start
_WINDOW = 6  # read tasks in flight: bounds the image bytes held in memory


Job = tuple[str, int, str, "bytes | Embedded | None"]


@dataclass(slots=True)
class Staged:
    orig_id: int
    width: int = 0
    height: int = 0
    sha256: str = ""
    path: str | None = None  # where it was written in the store
    orientation: int = 1  # the EXIF orientation tag (1: upright)
    #: with ``--exif rotate``: the orientation applied to the pixels and the stored size before it
    turned: tuple[int, int, int] | None = None
    error: ImageError | None = None


class ImageStager:
    """Copies images from ``src_root`` (the import's images folder) into ``dest`` (the store's
    ``images/``)."""

    def __init__(self, src_root: str, dest: str, *, link: bool = False, turn: bool = False) -> None:
        self.turn = turn  # --exif rotate: turn images upright as viewers show them
        self.src_root = os.path.abspath(src_root)
        self.real_root = os.path.realpath(src_root)
        self.dest = dest
        self.link = link
        self._dir_inside: dict[str, bool] = {self.src_root: True}
        self._cancelled = False
        self._made: set[str] = set()

    def _inside(self, real: str) -> bool:
        return real == self.real_root or real.startswith(self.real_root + os.sep)

    def _outside_error(self, orig_id: int, name: str, real: str) -> ImageError:
        return ImageError(
            f"image {orig_id}: {name!r} resolves to {real}, outside the images folder {self.real_root}",
            item=f"image {orig_id}",
            reason="path outside the images folder",
        )

    def _open(self, src: str, name: str, orig_id: int) -> int:
        """Open ``src`` for reading, refusing anything (symlinked dirs or files) that leaves the root."""
        d = os.path.dirname(src)
        inside = self._dir_inside.get(d)
        if inside is None:
            inside = self._dir_inside[d] = self._inside(os.path.realpath(d))
        if not inside:
            raise self._outside_error(orig_id, name, os.path.realpath(src))
        try:
            return os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ImageError(
                f"image {orig_id}: file {name!r} is listed but missing on disk (looked for {src})",
                item=f"image {orig_id}",
                reason="missing file",
            ) from None
        except OSError as exc:
            if exc.errno != errno.ELOOP:  # not a symlink: a real read problem
                raise ImageError(
                    f"image {orig_id}: cannot read {src} ({exc.strerror})",
                    item=f"image {orig_id}",
                    reason="unreadable file",
                ) from None
        real = os.path.realpath(src)  # a symlinked file: allowed while it stays inside the root
        if not self._inside(real):
            raise self._outside_error(orig_id, name, real)
        return self._open(real, name, orig_id) if real != src else os.open(real, os.O_RDONLY)

    def cancel(self) -> None:
        """Make a running :meth:`stage_all` stop after the images in flight."""
        self._cancelled = True

    def read(self, name: str, orig_id: int, embedded: bytes | None = None) -> tuple[bytes, Staged]:
        """Read, probe and hash one source image (runs on reader threads).

        ``embedded``: the image's bytes when the source carries them; no file is read. (Images
        that lie in container files are copied by :meth:`copy_in_background`.)
        """
        res = Staged(orig_id)
        if embedded is not None:
            try:
                info = probe_bytes(embedded, where=f"image {orig_id} ({name})")
            except ImageError as exc:
                res.error = exc
                return b"", res
            res.width, res.height, res.sha256 = info.width, info.height, sha256_bytes(embedded)
            res.orientation = info.orientation
            return embedded, res
        src = os.path.join(self.src_root, name)
        try:
            fd = self._open(src, name, orig_id)
            try:
                size = os.fstat(fd).st_size
                data = os.read(fd, size + 1)  # one call for the usual case; +1 detects growth
                if len(data) > size:
                    data += _read_rest(fd)
            except IsADirectoryError:
                raise ImageError(
                    f"image {orig_id}: {src} is a directory, not an image",
                    item=f"image {orig_id}",
                    reason="unreadable file",
                ) from None
            finally:
                os.close(fd)
            info = probe_bytes(data, where=f"image {orig_id} ({name})")
            if self.turn and info.orientation != 1:
                from dataforge.exif import turn_image, turned_size

                data = turn_image(data, info.format)
                res.turned = (info.orientation, info.width, info.height)
                info = type(info)(*turned_size(info.orientation, info.width, info.height), info.format)
            res.width, res.height, res.sha256 = info.width, info.height, sha256_bytes(data)
            res.orientation = info.orientation
            return data, res
        except ImageError as exc:
            res.error = exc
            return b"", res

    def write(self, name: str, final_name: str, data: bytes, res: Staged) -> Staged:
        """Write one read image to its place in the store (runs on the calling thread)."""
        path = os.path.join(self.dest, final_name)
        parent = os.path.dirname(path)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)
        if not (
            self.link and name and res.turned is None and _try_link(os.path.join(self.src_root, name), path)
        ):
            write_new_file(path, data)
        res.path = path
        return res

    def stage_all(self, jobs: list[Job], readers: int | None = None) -> list[Staged]:
        """Copy ``(source name, orig_id, final_name, embedded bytes or None)`` jobs; results in job order.

        Reader threads read, probe and hash a bounded window of images ahead (reads wait on the
        disk and hashing releases the GIL), while this thread creates the staged files: file
        creation contends on directory locks, so it stays on one thread.
        """
        n = readers or min(4, 2 * usable_cores())
        chunks = [jobs[i : i + _CHUNK] for i in range(0, len(jobs), _CHUNK)]

        def read_chunk(chunk: list[Job]) -> list[tuple[bytes, Staged]]:
            read = []
            for name, orig_id, _final, embedded in chunk:
                assert not isinstance(embedded, Embedded), "copy_in_background copies those"
                read.append(self.read(name, orig_id, embedded))
            return read

        out: list[Staged] = []
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="dataforge-read") as pool:
            window: deque[tuple[list[Job], Future[list[tuple[bytes, Staged]]]]] = deque()
            pending = iter(chunks)
            for chunk in islice(pending, _WINDOW):
                window.append((chunk, pool.submit(read_chunk, chunk)))
            while window and not self._cancelled:
                chunk, fut = window.popleft()
                nxt = next(pending, None)
                if nxt is not None:
                    window.append((nxt, pool.submit(read_chunk, nxt)))
                for (name, _orig_id, final, _emb), (data, res) in zip(chunk, fut.result(), strict=True):
                    out.append(res if res.error is not None else self.write(name, final, data, res))
        return out

    def planned(self, jobs: list[Job]) -> list[Staged]:
        """What copying ``jobs`` (all :class:`Embedded`, already probed and hashed) will give,
        before anything is written: :meth:`copy_in_background` writes the files."""
        out: list[Staged] = []
        for _name, orig_id, final, embedded in jobs:
            assert isinstance(embedded, Embedded)
            path = os.path.join(self.dest, final)
            out.append(Staged(orig_id, embedded.width, embedded.height, embedded.sha256, path))
        return out

    def copy_in_background(self, jobs: list[Job], *, keep_fds: tuple[int, ...] = ()) -> BackgroundCopy:
        """Start copying :class:`Embedded` images out of their container files in a helper process
        (``dataforge.ingest.copier``) while this one goes on. ``keep_fds`` stay open in the helper
        (the store lock: it is held until the helper is gone)."""
        ranges: list[copier.Job] = []
        for _name, _orig_id, final, embedded in jobs:
            assert isinstance(embedded, Embedded)
            ranges.append((embedded.path, embedded.offset, embedded.length, os.path.join(self.dest, final)))
        return BackgroundCopy(jobs, ranges, keep_fds)


class BackgroundCopy:
    """Running :mod:`dataforge.ingest.copier` helpers, one per core, each copying a contiguous
    part of the jobs; :meth:`wait` raises ``ImageError`` if any image could not be copied. With
    ``DATAFORGE_PROCESSES=1`` (or few images) the copying is done here, at once."""

    def __init__(self, jobs: list[Job], ranges: list[copier.Job], keep_fds: tuple[int, ...]) -> None:
        self.jobs = jobs
        self._procs: list[tuple[int, subprocess.Popen[bytes]]] = []  # (first job index, helper)
        self._failures: list[tuple[int, str]] = []
        helpers = min(default_processes(), len(ranges) // HELPER_MIN_IMAGES)
        if helpers < 1 or default_processes() == 1:
            self._failures = copier.copy(ranges)
            return
        try:
            for start, stop in split_ranges(len(ranges), helpers):
                with tempfile.TemporaryFile() as spec:
                    marshal.dump((os.getpid(), ranges[start:stop]), spec)
                    spec.seek(0)
                    proc = subprocess.Popen(
                        [sys.executable, "-I", "-S", copier.__file__],
                        stdin=spec,
                        stdout=subprocess.PIPE,
                        pass_fds=keep_fds,
                    )
                self._procs.append((start, proc))
        except BaseException:
            self.cancel()
            raise

    def wait(self) -> None:
        while self._procs:
            start, proc = self._procs[0]
            out, _ = proc.communicate()
            self._procs.pop(0)
            if proc.returncode != 0:
                self.cancel()
                raise ImageError(
                    f"the process copying images into the store failed (exit code {proc.returncode})"
                )
            self._failures.extend((start + i, reason) for i, reason in marshal.loads(out))
        if self._failures:
            i, reason = self._failures[0]
            _name, orig_id, final, embedded = self.jobs[i]
            more = f" (and {len(self._failures) - 1} more images)" if len(self._failures) > 1 else ""
            raise ImageError(
                f"image {orig_id} ({final}): cannot copy it from {getattr(embedded, 'path', '?')} "
                f"into the store: {reason}{more}",
                item=f"image {orig_id}",
                reason="unreadable file",
            )

    def cancel(self) -> None:
        """Stop the helpers that still run (after an error: what they wrote is journaled)."""
        for _start, proc in self._procs:
            proc.kill()
            proc.communicate()
        self._procs = []


def _read_rest(fd: int) -> bytes:
    parts: list[bytes] = []
    while True:
        part = os.read(fd, 1 << 20)
        if not part:
            return b"".join(parts)
        parts.append(part)


def _try_link(src: str, dst: str) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError:
        return False
