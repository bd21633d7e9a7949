"""Tree transfers: a directory tree copied down or up, its files fanned out with ``amap``."""

from __future__ import annotations

import os
import posixpath
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal, TypeVar

import anyio
import asyncssh
from asyncssh.constants import FILEXFER_TYPE_DIRECTORY, FILEXFER_TYPE_SYMLINK

from hookbridge import FailedItem, amap
from hookbridge.adapter import checked_argument, positive_int

from ._entries import RemoteEntry
from ._local import local_tree, makedirs_local
from ._transfers import Transfers

__all__ = ["TransferProgress", "TreeTransfer", "Trees"]

T = TypeVar("T")

#: Files a tree transfer moves at once, per connection.
TREE_FILES_PER_CONNECTION = 32


@dataclass(frozen=True)
class TransferProgress:
    """Where a tree transfer stands; handed to the ``progress`` callback after each file."""

    files_done: int
    bytes_done: int
    files_failed: int
    path: str
    nbytes: int


@dataclass(frozen=True)
class TreeTransfer:
    """What a tree transfer did. ``failures`` is empty unless ``on_error="collect"``."""

    files: int
    bytes: int
    directories: int
    failures: tuple[FailedItem, ...] = ()


class _Tally:
    """Files and bytes done, reported to a tree transfer's progress callback."""

    __slots__ = ("bytes", "failures", "files", "progress")

    def __init__(self, progress: Callable[[TransferProgress], None] | None) -> None:
        self.progress = progress
        self.files = 0
        self.bytes = 0
        self.failures = 0

    def done(self, path: str, nbytes: int) -> None:
        self.files += 1
        self.bytes += nbytes
        if self.progress is not None:
            self.progress(
                TransferProgress(
                    files_done=self.files,
                    bytes_done=self.bytes,
                    files_failed=self.failures,
                    path=path,
                    nbytes=nbytes,
                )
            )

    def failed(self) -> None:
        self.failures += 1


class Trees(Transfers):
    """``download_tree`` and ``upload_tree``."""

    def _tree_concurrency(self, max_at_once: int | None) -> int:
        if max_at_once is not None:
            return checked_argument(positive_int, max_at_once, "max_at_once")
        return self._max_connections * TREE_FILES_PER_CONNECTION

    async def download_tree(
        self,
        remote: str,
        local: str | os.PathLike[str],
        *,
        max_at_once: int | None = None,
        follow_symlinks: bool = False,
        on_error: Literal["raise", "collect"] = "raise",
        progress: Callable[[TransferProgress], None] | None = None,
    ) -> TreeTransfer:
        """Copy a remote directory tree into ``local`` (created if missing), files in parallel.

        The listing streams into the core fan-out (:func:`hookbridge.amap`), so copying starts
        with the first directory. Links are skipped unless ``follow_symlinks``, in which case a
        link to a file is copied (after the root check) and links to directories are not
        followed. ``on_error="raise"`` stops at the first failure with a
        :class:`~hookbridge.BatchError`; ``"collect"`` copies every file it can and reports the
        others in ``failures`` (each :class:`~hookbridge.FailedItem`'s item is the
        :class:`RemoteEntry`). ``progress`` gets a :class:`TransferProgress` after each file.
        """
        start = self._resolve(remote)
        local_root = os.fspath(local)
        await anyio.to_thread.run_sync(makedirs_local, local_root)
        prefix = "" if start in (".", "") else start.rstrip("/") + "/"
        tally = _Tally(progress)
        directories = 0

        def target_of(entry: RemoteEntry) -> str:
            relative = entry.path[len(prefix) :] if prefix else entry.path
            return os.path.join(local_root, *relative.split("/"))

        async def files() -> AsyncIterator[RemoteEntry]:
            nonlocal directories
            async with aclosing(self._walk(start, stream=False)) as entries:
                async for entry in entries:
                    if entry.is_dir:
                        # Before any file inside it is handed to the fan-out.
                        directories += 1
                        await anyio.to_thread.run_sync(makedirs_local, target_of(entry))
                    elif entry.is_file or (entry.is_symlink and follow_symlinks):
                        yield entry

        async def copy(entry: RemoteEntry) -> int:
            confine = False
            size = entry.size or 0
            if entry.is_symlink:
                # Listed attributes are the link's own; copy only a link to a regular file.
                linked = await self.stat(entry.path)
                if not linked.is_file:
                    return 0
                confine, size = True, linked.size or 0
            copied = await self.call(
                self._download_once,
                entry.path,
                target_of(entry),
                size,
                confine,
                None,
                None,
                None,
                retry=self._read_retry,
                target=entry.path,
            )
            tally.done(entry.path, copied)
            return copied

        failures = await self._fan_out(
            copy, files(), self._tree_concurrency(max_at_once), on_error, tally
        )
        return TreeTransfer(
            files=tally.files, bytes=tally.bytes, directories=directories, failures=failures
        )

    async def upload_tree(
        self,
        local: str | os.PathLike[str],
        remote: str,
        *,
        max_at_once: int | None = None,
        on_error: Literal["raise", "collect"] = "raise",
        progress: Callable[[TransferProgress], None] | None = None,
    ) -> TreeTransfer:
        """Copy a local directory tree to ``remote`` (created if missing), files in parallel.

        Local links are skipped. Directories are created first, one request each; then every
        file is written under a temporary name and renamed, as :meth:`upload` does. Failed
        items (with ``on_error="collect"``) are the files' paths relative to ``local``.
        """
        start = self._resolve(remote)
        local_root = os.fspath(local)
        directories, files = await anyio.to_thread.run_sync(local_tree, local_root)
        remote_dirs = [posixpath.join(start, *rel.split(os.sep)) for rel in directories]
        await self.call(self._make_tree_once, start, remote_dirs, target=start)
        tally = _Tally(progress)

        async def copy(relative: str) -> int:
            target = posixpath.join(start, *relative.split(os.sep))
            # The directories were just made (or checked to be real ones): no link is on the way.
            sent = await self._upload_file(
                os.path.join(local_root, relative), target, confine=False
            )
            tally.done(target, sent)
            return sent

        failures = await self._fan_out(
            copy, files, self._tree_concurrency(max_at_once), on_error, tally
        )
        return TreeTransfer(
            files=tally.files, bytes=tally.bytes, directories=len(directories), failures=failures
        )

    async def _make_tree_once(self, top: str, directories: list[str]) -> None:
        """``mkdir -p top`` then each directory, parents first: one request per new directory.

        An existing one must be a real directory, not a link: files are written into it next
        without further checks.
        """
        async with self._session("upload_tree", top) as session:
            sftp = session.sftp
            await self._confine(sftp, top)
            await sftp.makedirs(top, exist_ok=True)
            for directory in directories:
                try:
                    await sftp.mkdir(directory)
                except (asyncssh.SFTPFailure, asyncssh.SFTPFileAlreadyExists):
                    attrs = await sftp.lstat(directory)
                    if attrs.type == FILEXFER_TYPE_SYMLINK:
                        await self._confine(sftp, directory)
                    elif attrs.type != FILEXFER_TYPE_DIRECTORY:
                        raise
                session.watch.tick()

    async def _fan_out(
        self,
        fn: Callable[[T], Awaitable[int]],
        items: Iterable[T] | AsyncIterable[T],
        max_at_once: int,
        on_error: Literal["raise", "collect"],
        tally: _Tally,
    ) -> tuple[FailedItem, ...]:
        failures: list[FailedItem] = []
        if on_error == "collect":
            async with amap(
                fn, items, max_at_once=max_at_once, ordered=False, on_error="collect"
            ) as outcomes:
                async for outcome in outcomes:
                    if outcome.error is not None:
                        failures.append(FailedItem(outcome.index, outcome.item, outcome.error))
                        tally.failed()
        else:
            async with amap(fn, items, max_at_once=max_at_once, ordered=False) as results:
                async for _ in results:
                    pass
        return tuple(failures)
