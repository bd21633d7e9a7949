"""An open remote file (``SFTPAdapter.open``): streamed reads and writes on a held connection."""

from __future__ import annotations

import os
import posixpath
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import asyncssh

from hookbridge import HookBridgeError

from ._blocks import read_range_at
from ._core import SFTPCore
from ._entries import RemoteEntry, entry_of
from ._links import Grant
from ._translate import is_transport_failure

__all__ = ["MODES", "RemoteFile"]

T = TypeVar("T")

#: The modes ``open`` takes, to the binary mode sent to the server.
MODES = {
    "r": "rb",
    "rb": "rb",
    "r+": "r+b",
    "r+b": "r+b",
    "w": "wb",
    "wb": "wb",
    "w+": "w+b",
    "w+b": "w+b",
    "a": "ab",
    "ab": "ab",
    "a+": "a+b",
    "a+b": "a+b",
    "x": "xb",
    "xb": "xb",
}


class RemoteFile:
    """An open remote file (from :meth:`SFTPAdapter.open`): bytes in, bytes out.

    ``async for chunk in file`` reads block by block to the end. Each method is one request (or
    one parallel batch) under the adapter's ``operation_timeout``, with the adapter's errors.
    """

    def __init__(
        self,
        adapter: SFTPCore,
        grant: Grant,
        file: asyncssh.SFTPClientFile,
        path: str,
        block: int,
    ) -> None:
        self._adapter = adapter
        self._grant = grant
        self._file = file
        self._block = block
        self.path = path

    def __repr__(self) -> str:
        return f"<RemoteFile {self.path!r}>"

    async def _run(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        # The file's admission is the open() block's (hold): each method runs its request here,
        # through the adapter's own translation, instead of taking another admission.
        adapter = self._adapter
        try:
            with adapter._timed(op, self.path):
                return await fn()
        except Exception as exc:
            if is_transport_failure(exc):
                self._grant.broken = True
            if isinstance(exc, HookBridgeError) or not isinstance(exc, adapter.foreign_errors):
                raise
            raise adapter._translate(exc, self.path) from exc

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the current position (all to the end when negative)."""
        file = self._file

        async def run() -> bytes:
            offset = await file.tell()
            if size is None or size < 0:
                length = max(0, ((await file.stat()).size or 0) - offset)
            else:
                length = size
            if length <= self._block:
                data: bytes = await file.read(length, offset)
            else:
                parts: dict[int, bytes] = {}

                def sink(at: int, chunk: bytes) -> None:
                    parts[at] = chunk

                await read_range_at(file, offset, length, self._block, sink)
                data = b"".join(parts[k] for k in sorted(parts))
            await file.seek(offset + len(data))
            return data

        return await self._run("read", run)

    async def write(self, data: bytes) -> int:
        """Write at the current position (the end, in append mode); return the bytes written."""
        file = self._file
        payload = bytes(data)

        async def run() -> int:
            if len(payload) <= self._block:
                await file.write(payload)
                return len(payload)
            for start in range(0, len(payload), self._block):
                await file.write(payload[start : start + self._block])
            return len(payload)

        return await self._run("write", run)

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        async def run() -> int:
            position: int = await self._file.seek(offset, whence)
            return position

        return await self._run("seek", run)

    async def tell(self) -> int:
        async def run() -> int:
            position: int = await self._file.tell()
            return position

        return await self._run("tell", run)

    async def stat(self) -> RemoteEntry:
        attrs = await self._run("stat", self._file.stat)
        return entry_of(posixpath.basename(self.path), self.path, attrs)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.read(self._block)
            if not chunk:
                return
            yield chunk
