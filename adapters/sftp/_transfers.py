"""Whole-file transfers: read_bytes, write_bytes, download and upload, each a retried attempt.

Downloads write to a temporary name in the destination directory and ``os.replace`` it on
success; uploads write a temporary remote name and rename it over the target. A failed or
cancelled transfer removes its temporary file, so a destination name never holds a truncated file.
"""

from __future__ import annotations

import math
import os
import posixpath
from collections.abc import Awaitable, Callable
from contextlib import suppress

import anyio
import asyncssh

from hookbridge.adapter import checked_argument, positive_int

from ._blocks import download_blocks, read_range, read_small, slicer, write_range
from ._core import CLEANUP_TIMEOUT, Session
from ._entries import Listing
from ._local import LocalTemp, local_size, open_local, pread, read_local, temp_suffix
from ._translate import is_transport_failure

__all__ = ["Transfers"]

Source = Callable[[int, int], Awaitable[bytes]]
#: The most ``read_bytes`` allocates before the data arrive (then it grows with them).
PREALLOCATE = 16 * 1024 * 1024
Tuning = tuple[int | None, int | None]


def _temp_name(path: str) -> str:
    head, tail = posixpath.split(path) if "/" in path else ("", path)
    name = "." + tail + temp_suffix()
    return posixpath.join(head, name) if head else name


class _UploadState:
    """What one upload's attempts leave each other: stale temporary files, a rename in doubt."""

    __slots__ = ("leftovers", "renaming")

    def __init__(self) -> None:
        #: Temporary files of attempts whose connection broke: removed by the next attempt.
        self.leftovers: list[str] = []
        #: The temporary file whose rename onto the target was sent and not answered.
        self.renaming: str | None = None


def _check_block(value: int | None, field: str) -> int | None:
    return None if value is None else checked_argument(positive_int, value, field)


class Transfers(Listing):
    """One file at a time, with parallel block requests for the large ones."""

    # -- whole-file bytes ------------------------------------------------------------------------

    async def read_bytes(self, path: str) -> bytes:
        """A remote file's content, read with parallel block requests."""
        resolved = self._resolve(path)
        return await self.call(self._read_once, resolved, retry=self._read_retry, target=resolved)

    async def _read_once(self, path: str) -> bytes:
        async with self._session("read", path, want=self._max_requests) as session:
            sftp = session.sftp
            await self._confine(sftp, path)
            file = await self._open_handle(session.grant, path, "rb")
            try:
                size = (await file.stat()).size or 0
                block = self._block(sftp, None, write=False)
                session.grant.shrink(math.ceil(size / block))
                # Memory for what arrives, not for what the server claims: a size of 2**62 must
                # end in an error at the real end of file, not in a MemoryError.
                buffer = bytearray(min(size, PREALLOCATE))

                def sink(offset: int, data: bytes) -> None:
                    end = offset + len(data)
                    if end > len(buffer):
                        buffer.extend(bytes(end - len(buffer)))
                    buffer[offset:end] = data

                await read_range(
                    file,
                    size,
                    block=block,
                    workers=session.grant.slots,
                    sink=sink,
                    path=path,
                    tick=session.watch.tick,
                )
            finally:
                await self._close_handle(file)
        return bytes(buffer)

    async def write_bytes(self, path: str, data: bytes) -> int:
        """Write ``data`` as the file's whole content, atomically (temporary name, then rename).

        Retried on transport errors: a retry writes a new temporary file.
        """
        resolved = self._resolve(path)
        payload = bytes(data)
        return await self._upload(resolved, len(payload), slicer(payload), True, None)

    # -- download --------------------------------------------------------------------------------

    async def download(
        self,
        remote: str,
        local: str | os.PathLike[str],
        *,
        block_size: int | None = None,
        max_requests: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Copy one remote file to ``local`` with parallel block reads; return its size.

        The data goes to a temporary name beside ``local`` and is renamed onto it when complete;
        a failure or cancellation removes the temporary file. Retried on transport errors.
        ``progress(bytes_done, total)`` is called as blocks land. The local directory must
        exist (a :class:`~hookbridge.adapters.sftp.LocalFileError` names it otherwise).
        """
        resolved = self._resolve(remote)
        return await self.call(
            self._download_once,
            resolved,
            os.fspath(local),
            None,
            True,
            _check_block(block_size, "block_size"),
            _check_block(max_requests, "max_requests"),
            progress,
            retry=self._read_retry,
            target=resolved,
        )

    async def _download_once(
        self,
        path: str,
        local: str,
        size_hint: int | None,
        confine: bool,
        block_size: int | None,
        max_requests: int | None,
        progress: Callable[[int, int], None] | None,
    ) -> int:
        parallel = max_requests or self._max_requests
        block_guess = block_size or self._block_size
        want = parallel if size_hint is None else min(parallel, math.ceil(size_hint / block_guess))
        data: bytes | None = None
        async with self._session("download", path, want=want) as session:
            sftp = session.sftp
            if confine:
                await self._confine(sftp, path)
            file = await self._open_handle(session.grant, path, "rb")
            try:
                size = size_hint if size_hint is not None else (await file.stat()).size or 0
                block = self._block(sftp, block_size, write=False)
                session.grant.shrink(min(parallel, math.ceil(size / block)))
                if size <= block:
                    data = await read_small(file, size, path)
                else:
                    await download_blocks(
                        file,
                        size,
                        block,
                        session.grant.slots,
                        LocalTemp(local),
                        path,
                        progress,
                        session.watch.tick,
                    )
            finally:
                await self._close_handle(file)
        if data is not None:
            # Written after the connection's slot is given back: local disk time is not SFTP's.
            await self._writer.write(local, data)
            if progress is not None:
                progress(size, size)
        return size

    # -- upload ----------------------------------------------------------------------------------

    async def upload(
        self,
        local: str | os.PathLike[str],
        remote: str,
        *,
        block_size: int | None = None,
        max_requests: int | None = None,
    ) -> int:
        """Copy one local file to ``remote`` with parallel block writes; return its size.

        Written to a temporary name in the target directory and renamed over ``remote`` when
        complete, so readers never see a partial file and an existing link at ``remote`` is
        replaced, not written through. Retried on transport errors (each attempt writes a new
        temporary file and removes the previous one's).
        """
        resolved = self._resolve(remote)
        tuning = (
            _check_block(block_size, "block_size"),
            _check_block(max_requests, "max_requests"),
        )
        return await self._upload_file(os.fspath(local), resolved, confine=True, tuning=tuning)

    async def _upload_file(
        self, local: str, remote: str, *, confine: bool, tuning: Tuning | None = None
    ) -> int:
        size = await anyio.to_thread.run_sync(local_size, local)
        if size <= self._block_size:
            # One read, one write request: the path small files take.
            data = await anyio.to_thread.run_sync(read_local, local)
            return await self._upload(remote, len(data), slicer(data), confine, tuning)
        fd = await anyio.to_thread.run_sync(open_local, local)
        try:

            async def source(offset: int, length: int) -> bytes:
                return await anyio.to_thread.run_sync(pread, fd, length, offset)

            return await self._upload(remote, size, source, confine, tuning)
        finally:
            os.close(fd)

    async def _upload(
        self, path: str, size: int, source: Source, confine: bool, tuning: Tuning | None
    ) -> int:
        state = _UploadState()
        try:
            return await self.call(
                self._upload_once, path, size, source, confine, tuning, state, target=path
            )
        finally:
            if state.leftovers:
                # The last attempt's connection broke under it: remove its temporary file over a
                # live one, best effort.
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(CLEANUP_TIMEOUT),
                    suppress(Exception),
                ):
                    async with self._session("upload", path) as session:
                        for stale in state.leftovers:
                            await self._remove_quietly(session, stale)

    async def _upload_once(
        self,
        path: str,
        size: int,
        source: Source,
        confine: bool,
        tuning: Tuning | None,
        state: _UploadState,
    ) -> int:
        block_size, max_requests = tuning or (None, None)
        parallel = max_requests or self._max_requests
        want = max(1, min(parallel, math.ceil(size / (block_size or self._block_size))))
        leftovers = state.leftovers
        async with self._session("upload", path, want=want) as session:
            sftp = session.sftp
            if state.renaming is not None:
                await self._finish_rename(sftp, state, state.renaming, path)
                return size
            for stale in list(leftovers):
                await self._remove_quietly(session, stale)
                leftovers.remove(stale)
            if confine:
                await self._confine(sftp, posixpath.dirname(path) or ".")
            temp = _temp_name(path)
            leftovers.append(temp)
            try:
                file = await self._open_handle(session.grant, temp, "xb")
                try:
                    block = self._block(sftp, block_size, write=True)
                    session.grant.shrink(min(parallel, math.ceil(size / block)))
                    await write_range(
                        file,
                        size,
                        block=block,
                        workers=session.grant.slots,
                        source=source,
                        tick=session.watch.tick,
                    )
                finally:
                    await self._close_handle(file)
                state.renaming = temp
                await self._replace(sftp, temp, path)
                state.renaming = None
                leftovers.remove(temp)
            except BaseException as exc:
                if not is_transport_failure(exc):
                    state.renaming = None
                    with anyio.CancelScope(shield=True):
                        await self._remove_quietly(session, temp)
                    leftovers.remove(temp)
                raise
        return size

    async def _finish_rename(
        self, sftp: asyncssh.SFTPClient, state: _UploadState, temp: str, path: str
    ) -> None:
        """Settle a rename whose answer was lost, so that the write is applied exactly once.

        The temporary name is this upload's own, complete and closed. If it is gone, the lost
        rename was applied: sending the data again would apply the write a second time (and
        could put this content back over someone else's newer write). If it is still there,
        the rename did not happen: it is sent again, and the data is not. "No such file" to that
        rename means the lost request was applied in between, which is as good.
        """
        try:
            await sftp.lstat(temp)
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
            pass
        else:
            with suppress(asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
                await self._replace(sftp, temp, path)
        state.renaming = None
        state.leftovers.remove(temp)

    @staticmethod
    async def _remove_quietly(session: Session, path: str) -> None:
        with anyio.move_on_after(CLEANUP_TIMEOUT):
            with suppress(asyncssh.Error, OSError):
                await session.sftp.remove(path)

    @staticmethod
    async def _replace(sftp: asyncssh.SFTPClient, source: str, target: str) -> None:
        try:
            await sftp.posix_rename(source, target)
            return
        except asyncssh.SFTPOpUnsupported:
            pass
        # SFTP v3 rename fails when the target exists: make room first.
        with suppress(asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
            await sftp.remove(target)
        await sftp.rename(source, target)
