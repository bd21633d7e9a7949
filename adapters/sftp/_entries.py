"""Remote entries: what listings and ``stat`` report, and the listing operations (listdir, walk)."""

from __future__ import annotations

import posixpath
import stat as stat_module
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import asyncssh
from asyncssh.constants import (
    FILEXFER_TYPE_DIRECTORY,
    FILEXFER_TYPE_REGULAR,
    FILEXFER_TYPE_SYMLINK,
)

from hookbridge import TransportError

from ._core import SFTPCore
from ._links import Grant
from ._paths import check_name

__all__ = ["Listing", "RemoteEntry", "entry_of", "join"]


@dataclass(frozen=True)
class RemoteEntry:
    """A remote file, directory or link, as a listing or ``stat`` reports it.

    ``is_dir`` and ``is_symlink`` come from the listing's ``lstat`` attributes (a link is not a
    directory, wherever it points); ``stat()`` follows links.
    """

    name: str
    path: str
    size: int | None
    mtime: float | None
    is_dir: bool
    is_symlink: bool = False
    is_file: bool = False
    permissions: int | None = None


def entry_of(name: str, path: str, attrs: asyncssh.SFTPAttrs) -> RemoteEntry:
    """The entry for SFTP attributes; the type comes from the mode when the server omits it."""
    kind = attrs.type
    if attrs.permissions is not None and kind not in (
        FILEXFER_TYPE_DIRECTORY,
        FILEXFER_TYPE_REGULAR,
        FILEXFER_TYPE_SYMLINK,
    ):
        mode = attrs.permissions
        if stat_module.S_ISDIR(mode):
            kind = FILEXFER_TYPE_DIRECTORY
        elif stat_module.S_ISLNK(mode):
            kind = FILEXFER_TYPE_SYMLINK
        elif stat_module.S_ISREG(mode):
            kind = FILEXFER_TYPE_REGULAR
    if attrs.mtime_ns is not None:
        mtime: float | None = attrs.mtime_ns / 1e9
    else:
        mtime = float(attrs.mtime) if attrs.mtime is not None else None
    return RemoteEntry(
        name=name,
        path=path,
        size=attrs.size,
        mtime=mtime,
        is_dir=kind == FILEXFER_TYPE_DIRECTORY,
        is_symlink=kind == FILEXFER_TYPE_SYMLINK,
        is_file=kind == FILEXFER_TYPE_REGULAR,
        permissions=None if attrs.permissions is None else stat_module.S_IMODE(attrs.permissions),
    )


def _listed(directory: str, item: asyncssh.SFTPName) -> RemoteEntry | None:
    """A directory listing's entry, or None for ``.`` and ``..``; unsafe names are refused."""
    name = item.filename
    assert isinstance(name, str)
    if name in (".", ".."):
        return None
    check_name(name, directory)
    return entry_of(name, join(directory, name), item.attrs)


def join(directory: str, name: str) -> str:
    return name if directory in (".", "") else posixpath.join(directory, name)


class Listing(SFTPCore):
    """Directory listings: streamed (``listdir``, ``walk``) or whole per directory (trees)."""

    async def listdir(self, path: str = ".") -> AsyncGenerator[RemoteEntry, None]:
        """The entries of a directory, without ``.`` and ``..``, in the server's order.

        Entries stream as the server sends them (a batch per round trip), so work on the first
        ones starts before a large directory is read to its end. The iteration is one admission
        of the adapter's limits (``hold``) and holds a directory handle until the generator is
        closed: ``async with contextlib.aclosing(sftp.listdir(p)) as entries:`` closes it at
        once. A transport failure part-way is retried like other reads (the directory is listed
        again whole); entries already yielded are not repeated.
        """
        resolved = self._resolve(path)
        async for entry in self._scan(resolved, True):
            yield entry

    async def walk(self, path: str = ".") -> AsyncGenerator[RemoteEntry, None]:
        """Every entry below a directory, top-down; links are reported, not followed.

        Streams like :meth:`listdir`. With a root, only the starting directory is resolved on
        the server: the directories a listing reports are real directories, not links, so they
        stay inside.
        """
        async for entry in self._walk(self._resolve(path), stream=True):
            yield entry

    async def _walk(self, top: str, *, stream: bool) -> AsyncGenerator[RemoteEntry, None]:
        """Walk from ``top``; ``stream=False`` lists each directory whole through ``call`` first.

        Tree transfers take the whole listings: their copies need admissions of their own, and
        a streamed listing would hold one while it waits for them.
        """
        pending = [top]
        confine = True
        while pending:
            directory = pending.pop()
            subdirectories = []
            if stream:
                entries = self._scan(directory, confine)
            else:
                listed = await self.call(
                    self._list_once, directory, confine, retry=self._read_retry, target=directory
                )
                entries = _each(listed)
            try:
                async for entry in entries:
                    if entry.is_dir:
                        subdirectories.append(entry.path)
                    yield entry
            finally:
                await entries.aclose()
            confine = False
            pending.extend(reversed(subdirectories))

    async def _scan(self, path: str, confine: bool) -> AsyncGenerator[RemoteEntry, None]:
        """Stream one directory; on a transport failure, list it again whole and fill the gap."""
        seen: set[str] = set()
        try:
            async with self.hold(target=path), self._checkout() as grant:
                async for entry in self._stream(grant, path, confine):
                    seen.add(entry.name)
                    yield entry
        except TransportError as exc:
            if self.retry.next_delay(exc, 1) is None:
                raise
            # The whole listing again, under the adapter's retry; what was seen is skipped.
            entries = await self.call(
                self._list_once, path, confine, retry=self._read_retry, target=path
            )
            for entry in entries:
                if entry.name not in seen:
                    yield entry

    async def _stream(
        self, grant: Grant, path: str, confine: bool
    ) -> AsyncGenerator[RemoteEntry, None]:
        # Each step is timed on its own: a cancel scope must not stay open across a yield, and
        # the time the caller spends on an entry is not the server's silence.
        sftp = grant.sftp
        if confine:
            with self._timed("listdir", path):
                await self._confine(sftp, path)
        names = sftp.scandir(path)
        try:
            while True:
                with self._timed("listdir", path):
                    item = await anext(names, None)
                if item is None:
                    return
                entry = _listed(path, item)
                if entry is not None:
                    yield entry
        finally:
            # Closes the directory handle: one request, bounded like any other.
            with self._timed("listdir", path):
                await names.aclose()

    async def stat(self, path: str) -> RemoteEntry:
        """A path's attributes, following links (``is_symlink`` is then always False)."""
        resolved = self._resolve(path)
        return await self.call(self._stat_once, resolved, retry=self._read_retry, target=resolved)

    async def _stat_once(self, path: str) -> RemoteEntry:
        async with self._session("stat", path) as session:
            await self._confine(session.sftp, path)
            attrs = await session.sftp.stat(path)
        return entry_of(posixpath.basename(path) or path, path, attrs)

    async def exists(self, path: str) -> bool:
        """Whether the path exists (a link counts when its target exists)."""
        try:
            await self.stat(path)
        except FileNotFoundError:
            return False
        return True

    async def _list_once(self, path: str, confine: bool) -> list[RemoteEntry]:
        async with self._session("listdir", path) as session:
            if confine:
                await self._confine(session.sftp, path)
            names = await session.sftp.readdir(path)
        return [entry for entry in (_listed(path, item) for item in names) if entry is not None]


async def _each(entries: list[RemoteEntry]) -> AsyncGenerator[RemoteEntry, None]:
    for entry in entries:
        yield entry
