"""Local file I/O of the SFTP adapter, kept off the event loop in worker threads.

Every ``OSError`` raised here becomes a :class:`LocalFileError` that names the file or directory:
a hookbridge error, so the adapter's error boundary passes it through unchanged and never
mistakes a full local disk for a broken SSH connection (nor retries it); still an ``OSError``
with the original ``errno`` and ``filename``, so ``except OSError`` keeps working.

Small downloaded files are written by a :class:`GroupWriter`: the files that finish while one
worker-thread hop is writing are written together by the next hop ("group commit"). A thread hop
costs about as much CPU as the SFTP requests of a 10 KiB file, so one hop per file would cut
small-file throughput; writing on the event loop instead would block it.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import stat as stat_module
from contextlib import suppress
from typing import NoReturn

import anyio
import anyio.lowlevel

from hookbridge import HookBridgeError

__all__ = [
    "GroupWriter",
    "LocalFileError",
    "LocalTemp",
    "local_error",
    "local_size",
    "local_tree",
    "makedirs_local",
    "open_local",
    "pread",
    "read_local",
    "temp_suffix",
]

logger = logging.getLogger("hookbridge.sftp")

# Temporary names: one random part per process and a counter, rather than a urandom read per
# file. O_EXCL (local) and "xb" (remote) keep a clash from ever overwriting anything.
_PREFIX = secrets.token_hex(3)
_COUNTER = itertools.count()
# Buffers one pwritev call takes (IOV_MAX is 1024 on Linux; stay well below it).
_IOV_MAX = 64


class LocalFileError(HookBridgeError, OSError):
    """A local file or directory could not be read or written: not the server's fault.

    Not retried, and it leaves the SSH connection in use. ``errno`` and ``filename`` are the
    original ``OSError``'s, which is also its ``__cause__``.
    """

    def __str__(self) -> str:
        # OSError's own __str__ would print "[Errno 2] ..." with the internal file name.
        return str(self.args[0]) if self.args else ""


def local_error(exc: OSError, message: str) -> LocalFileError:
    """``message`` (what was being done, to which path) with ``exc``'s reason appended."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    error = LocalFileError(f"{message}: {reason}.")
    error.errno, error.strerror, error.filename = exc.errno, exc.strerror, exc.filename
    error.__cause__ = exc
    error.__suppress_context__ = True
    return error


def temp_suffix() -> str:
    """A fresh ``.<random><n>.hookbridge-part`` suffix for a temporary file name."""
    return f".{_PREFIX}{next(_COUNTER):x}.hookbridge-part"


class LocalTemp:
    """A local temporary file beside ``final``; replaced onto it on success, removed otherwise.

    Its state lives here, not in the awaiting task, so a cancellation that lands while a worker
    thread closes or renames it never closes a file descriptor twice.
    """

    __slots__ = ("fd", "final", "replaced", "tmp")

    def __init__(self, final: str) -> None:
        self.final = final
        directory, name = os.path.split(final)
        self.tmp = os.path.join(directory, "." + name + temp_suffix())
        self.fd = -1
        self.replaced = False

    def create(self) -> None:
        try:
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileNotFoundError as exc:
            directory = os.path.dirname(self.final) or "."
            raise local_error(
                exc,
                f"cannot write {self.final!r}: the local directory {directory!r} does not exist; "
                "create it first (download_tree creates the directories it needs)",
            ) from None
        except OSError as exc:
            raise local_error(exc, f"cannot create a file beside {self.final!r}") from None

    def write_at(self, data: bytes, offset: int) -> None:
        try:
            view = memoryview(data)
            while view:
                written = os.pwrite(self.fd, view, offset)
                view = view[written:]
                offset += written
        except OSError as exc:
            raise local_error(exc, f"cannot write the local file {self.final!r}") from None

    def write_blocks(self, blocks: list[tuple[int, bytes]]) -> None:
        """Write blocks that arrived in any order: contiguous runs go in one ``pwritev`` each."""
        blocks.sort(key=lambda block: block[0])
        start = 0
        while start < len(blocks):
            end = start + 1
            offset = blocks[start][0] + len(blocks[start][1])
            while end < len(blocks) and blocks[end][0] == offset and end - start < _IOV_MAX:
                offset += len(blocks[end][1])
                end += 1
            self._write_run(blocks[start][0], [data for _, data in blocks[start:end]])
            start = end

    def _write_run(self, offset: int, buffers: list[bytes]) -> None:
        try:
            total = sum(len(b) for b in buffers)
            written = os.pwritev(self.fd, buffers, offset)
        except OSError as exc:
            raise local_error(exc, f"cannot write the local file {self.final!r}") from None
        if written < total:  # a short write (rare): finish it block by block
            joined = memoryview(b"".join(buffers))[written:]
            self.write_at(bytes(joined), offset + written)

    def finish(self) -> None:
        try:
            fd, self.fd = self.fd, -1
            os.close(fd)
            os.replace(self.tmp, self.final)
            self.replaced = True
        except OSError as exc:
            raise local_error(
                exc, f"cannot move the download into place at {self.final!r}"
            ) from None

    def discard(self) -> None:
        """Close and remove the temporary file; quick enough to run in clean-up, on the loop."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            with suppress(OSError):
                os.close(fd)
        if not self.replaced:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass
            except OSError:
                logger.warning("could not remove the temporary file %s", self.tmp, exc_info=True)

    def write_whole(self, data: bytes) -> None:
        """Create, write and rename: a whole small file."""
        try:
            self.create()
            self.write_at(data, 0)
            self.finish()
        except BaseException:
            self.discard()
            raise


class _Job:
    __slots__ = ("data", "done", "error", "temp")

    def __init__(self, temp: LocalTemp, data: bytes) -> None:
        self.temp = temp
        self.data = data
        self.done = False
        self.error: BaseException | None = None


def _write_batch(jobs: list[_Job]) -> None:
    for job in jobs:
        try:
            job.temp.write_whole(job.data)
        except Exception as exc:
            job.error = exc
        job.done = True


class GroupWriter:
    """Writes whole small files in worker threads, batching the ones that arrive meanwhile.

    The first caller while no batch runs takes every pending file to a worker thread; the
    others wait for the batch that holds their file. A caller cancelled before its batch starts
    withdraws its file; once its batch started, the file is completed (written and renamed)
    and the cancellation then goes on: never half a file under its final name.
    """

    def __init__(self) -> None:
        self._pending: list[_Job] = []
        self._busy = False
        self._changed: anyio.Event | None = None  # created in the loop, on first wait

    async def write(self, final: str, data: bytes) -> None:
        job = _Job(LocalTemp(final), data)
        self._pending.append(job)
        try:
            while not job.done:
                if self._busy:
                    if self._changed is None:
                        self._changed = anyio.Event()
                    await self._changed.wait()
                    continue
                self._busy = True
                # One turn of the loop first: the other downloads that finished with this one
                # (their answers came in the same read) join the batch.
                await anyio.lowlevel.cancel_shielded_checkpoint()
                batch, self._pending = self._pending, []
                try:
                    await anyio.to_thread.run_sync(_write_batch, batch)
                finally:
                    self._busy = False
                    changed, self._changed = self._changed, None
                    if changed is not None:
                        changed.set()
        except BaseException:
            if not job.done and job in self._pending:
                self._pending.remove(job)
            raise
        if job.error is not None:
            raise job.error


def read_local(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise local_error(exc, f"cannot read the local file {path!r}") from None


def pread(fd: int, size: int, offset: int) -> bytes:
    try:
        return os.pread(fd, size, offset)
    except OSError as exc:
        raise local_error(exc, "cannot read the local file being uploaded") from None


def local_size(path: str) -> int:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise local_error(exc, f"cannot read the local file {path!r}") from None
    if not stat_module.S_ISREG(st.st_mode):
        raise LocalFileError(f"cannot upload {path!r}: it is not a regular file.")
    return st.st_size


def open_local(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise local_error(exc, f"cannot read the local file {path!r}") from None


def local_tree(root: str) -> tuple[list[str], list[str]]:
    """Directories and regular files under a local directory, relative, parents first.

    Links (to files or directories) are left out: an upload copies what is in the tree.
    """
    directories: list[str] = []
    files: list[str] = []
    try:
        for current, dirnames, filenames in os.walk(root, onerror=_raise):
            rel = os.path.relpath(current, root)
            prefix = "" if rel == "." else rel + os.sep
            real_dirs = []
            for name in sorted(dirnames):
                if not os.path.islink(os.path.join(current, name)):
                    real_dirs.append(name)
                    directories.append(prefix + name)
            dirnames[:] = real_dirs
            for name in sorted(filenames):
                if stat_module.S_ISREG(os.lstat(os.path.join(current, name)).st_mode):
                    files.append(prefix + name)
    except OSError as exc:
        raise local_error(exc, f"cannot read the local directory tree {root!r}") from None
    return directories, files


def _raise(exc: OSError) -> NoReturn:
    raise exc


def makedirs_local(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise local_error(exc, f"cannot create the local directory {path!r}") from None
