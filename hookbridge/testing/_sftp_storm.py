"""The SFTP test server's fault storm: :class:`~._storm.Storm` fates acted out over SSH/SFTP.

:class:`StormSFTPServer` is the loopback :class:`~._sftp_server.SFTPTestServer` plus a seeded
storm over two families of paths, and a count of the file handles its sessions hold open (so a
test can assert that nothing at all is left open: connections, SFTP channels, handles).

- Reads: opening ``storm/{i}`` (the file is made on first use, its content is ``i`` in ASCII,
  storm or not) draws the fate of ``("open", i, attempt)``.
- Writes: the ``posix-rename`` of a temporary file onto ``stormw/{i}`` (what an atomic upload
  ends with, the moment it takes effect) draws the fate of ``("rename", i, attempt)``; a write is
  *applied* when that rename is done on disk.

Two hostile files, for tests of what a lying or endless server does to a reader:

- ``hostile/growing``: a file that grows forever: every read is answered in full (never an end
  of file) and every ``fstat`` reports 64 KiB more than the one before.
- ``hostile/liar``: ``fstat`` claims 2**62 bytes; reads serve the real (small) file.

How each fate of :data:`~._storm.STORM_FATES` is acted out (HTTP names, SFTP behaviour):

- ``drop-before``: the SSH connection is aborted (no SSH disconnect message) when the request
  arrives, before anything is done; a write is not applied.
- ``drop-during``: the request is carried out (the file opened; the rename applied), and the
  connection is aborted before its answer leaves: for a read, at the read request of the opened
  file; for a write, right after the rename. The client never learns the outcome.
- ``drop-after``: the answer (the file's data; the rename's OK) is written, then the connection
  is aborted.
- ``500`` / ``503``: an SFTP ``FX_FAILURE`` status answer (SFTP has no 5xx; ``FX_FAILURE`` is
  what OpenSSH's sftp-server answers for errors without a specific status, e.g. EIO). Nothing
  is applied, the connection stays up.
- ``429``: SFTP has no throttling answer. The nearest real behaviour is a server over its
  session or connection limits shedding load: the connection is closed with an SSH
  ``DISCONNECT`` of reason ``TOO_MANY_CONNECTIONS`` before the request is processed (nothing is
  applied). Retry-After has no SSH equivalent: ``retry_after`` is accepted and ignored.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any, NoReturn

import asyncssh

from ._sftp_server import SFTPTestServer, _Session
from ._storm import Storm, StormHost

__all__ = ["StormSFTPServer"]

_READ = re.compile(rb"^/?storm/(\d+)$")
_WRITE = re.compile(rb"^/?stormw/(\d+)$")
_HOSTILE = re.compile(rb"^/?hostile/(growing|liar)$")
_GROWTH = 64 * 1024


class _StormSession(_Session):
    """A session that acts out the owner's storm and counts the file handles it holds."""

    _owner: StormSFTPServer

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], owner: StormSFTPServer) -> None:
        super().__init__(chan, owner)
        #: The fate drawn at open, acted out at the read (drop-during, drop-after), per handle.
        self._pending: dict[int, tuple[int, str]] = {}
        #: Handles of the hostile files: their kind and how many fstat answers they had.
        self._hostile: dict[int, list[Any]] = {}

    # -- fates -------------------------------------------------------------------------------------

    @property
    def _storm(self) -> Storm:
        storm = self._owner.storm_counts
        assert storm is not None  # only storm paths draw fates, and only once a storm is set
        return storm

    def _draw(self, method: str, item: int) -> str:
        storm = self._storm
        fate, _ = storm.next_fate(method, item)
        if fate == "drop-before":
            self._cut("drop")
        elif fate in ("500", "503"):
            raise asyncssh.SFTPFailure(f"storm: server failure ({fate})")
        elif fate == "429":
            self._cut("shed")
        return fate

    def _cut(self, how: str) -> NoReturn:
        """Cut the connection now; the answer to the request in hand is never sent."""
        if how == "shed":
            self.conn.disconnect(
                asyncssh.DISC_TOO_MANY_CONNECTIONS, "too many sessions; try again later"
            )
        else:
            self._owner._abort(self.conn)
        raise asyncssh.SFTPConnectionLost(f"storm: connection {how} by the test server")

    def _cut_soon(self) -> None:
        # After the answer: it is written to the transport when this handler returns, in the
        # same step of the loop; the abort runs in the next one.
        asyncio.get_running_loop().call_soon(self._owner._abort, self.conn)

    # -- SFTP requests -----------------------------------------------------------------------------

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        match = _READ.match(path)
        fate = None
        if match is not None:
            item = int(match.group(1))
            if self._owner.storm_counts is not None:
                fate = self._draw("open", item)
            local = self._owner.root / "storm" / str(item)
            if not local.exists():
                local.write_bytes(str(item).encode())
        hostile = _HOSTILE.match(path)
        if hostile is not None:
            local = self._owner.root / "hostile" / hostile.group(1).decode()
            local.parent.mkdir(exist_ok=True)
            local.write_bytes(b"small")
        file_obj = super().open(path, pflags, attrs)
        self._owner._handles.add(id(file_obj))
        if match is not None and fate is not None:
            self._pending[id(file_obj)] = (int(match.group(1)), fate)
        if hostile is not None:
            self._hostile[id(file_obj)] = [hostile.group(1), 0]
        return file_obj

    def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        attrs = asyncssh.SFTPAttrs.from_local(os.fstat(file_obj.fileno()))  # type: ignore[attr-defined]
        hostile = self._hostile.get(id(file_obj))
        if hostile is not None:
            hostile[1] += 1
            attrs.size = 2**62 if hostile[0] == b"liar" else _GROWTH * hostile[1]
        return attrs

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        hostile = self._hostile.get(id(file_obj))
        if hostile is not None and hostile[0] == b"growing":
            return b"g" * size  # there is always more
        pending = self._pending.pop(id(file_obj), None)
        if pending is not None and pending[1] == "drop-during":
            self._cut("drop")
        data = self._read_now(file_obj, offset, size)
        if pending is not None:
            item, fate = pending
            self._storm.answered["open", item] += 1
            if fate == "drop-after":
                self._cut_soon()
        return data

    def close(self, file_obj: object) -> None:
        self._pending.pop(id(file_obj), None)
        self._hostile.pop(id(file_obj), None)
        self._owner._handles.discard(id(file_obj))
        super().close(file_obj)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        match = _WRITE.match(newpath) if self._owner.storm_counts is not None else None
        if match is None:
            super().posix_rename(oldpath, newpath)
            return
        item = int(match.group(1))
        fate = self._draw("rename", item)
        super().posix_rename(oldpath, newpath)
        storm = self._storm
        storm.applied[item] += 1
        if fate == "drop-during":
            self._cut("drop")
        storm.answered["rename", item] += 1
        if fate == "drop-after":
            self._cut_soon()


class StormSFTPServer(SFTPTestServer, StormHost):
    """The loopback SFTP server with a seeded storm over ``storm/{i}`` and ``stormw/{i}``."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._handles: set[int] = set()
        for directory in ("storm", "stormw"):
            (self.root / directory).mkdir(exist_ok=True)

    def _session_for(self, chan: asyncssh.SSHServerChannel[bytes]) -> _Session:
        return _StormSession(chan, self)

    @property
    def open_handles(self) -> int:
        """File handles the server's SFTP sessions hold open right now."""
        return len(self._handles)

    @property
    def open_on_server(self) -> int:
        """Everything a client can leave open: connections, SFTP channels and file handles."""
        return self.connection_count + self.open_channels + self.open_handles
