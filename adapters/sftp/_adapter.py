"""The SFTP adapter: pooled SSH connections carrying many concurrent SFTP requests each.

Connections are opened with the provider's ``SFTPHookAsync`` settings (host, port, login,
password, key_file / private_key, passphrase, host_key / no_host_key_check, known_hosts, parsed
by the hook itself), so host keys are verified exactly as the provider verifies them, by default;
``_connect`` adds the cipher preference (AES-GCM first) and a larger channel window and packet
size, with the measurements that chose them. Each connection is shared by many operations at
once (see ``_links``: a :class:`~hookbridge.Pool` owns their lifecycle, the operations share the
connections it hands out), so concurrency is not capped at the number of connections as with
``SFTPClientPool``.

The operations live in layers, one module each: ``_core`` (options, connections, one attempt's
session and timeout), ``_entries`` (stat, listings), ``_transfers`` (whole files, with
``_blocks`` for parallel block requests), ``_trees`` (tree transfers) and this module (the rest,
and the public class).
"""

from __future__ import annotations

import posixpath
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from hookbridge import HookBridgeError, Retry, UsageError

from ._core import SFTPOptions
from ._file import MODES, RemoteFile
from ._links import Grant
from ._translate import is_transport_failure
from ._trees import Trees

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["SFTPAdapter"]


class SFTPAdapter(Trees):
    """SFTP over pooled, shared SSH connections: listings, streams, parallel file and tree copies.

    ``async with hookbridge.open("my_sftp") as sftp:`` then ``await sftp.download(...)``,
    ``async for entry in sftp.walk("/data")``, ``await sftp.download_tree("/data", "local")``.

    Options (keyword-only; each also settable in the connection extra's ``hookbridge`` key, where
    explicit arguments win):

    - ``root``: an absolute server directory that every path must stay in. Relative paths are
      relative to it; ``..``, absolute paths elsewhere and links that lead out are refused with
      :class:`~hookbridge.PathRefused` before the operation is sent. Costs one ``realpath``
      request per single-path operation and one per walked directory. Extra key ``root``.
    - ``max_connections`` (4): SSH connections at most. Extra ``pool.max_connections``.
    - ``max_requests_per_connection`` (128): request slots per connection; an operation takes
      one, a block transfer up to ``max_requests``. Extra ``pool.max_requests_per_connection``.
    - ``block_size`` (256 KiB) and ``max_requests`` (128): block transfers. Extra keys of the
      same names. The server's advertised limits cap the block size.
    - ``connect_timeout`` (30 s), ``idle_timeout`` (300 s), ``max_lifetime`` (none): connection
      lifecycle, in the extra's ``pool`` section.
    - ``operation_timeout`` (60 s): the longest the server may stay silent during an operation
      (for a transfer: between two answers, so a large file is not cut off by its size). Past
      it the operation fails with a :class:`~hookbridge.TransportError` naming the operation and
      the path, and its connection is discarded; retried like any transport error. Extra key
      ``operation_timeout``.
    - ``ciphers``: the SSH ciphers to offer, best first (a list, or one comma-separated
      string), from asyncssh's default set. By default AES-GCM first, then the rest of that set
      (see ``_connect``: about 40% less CPU per small file than chacha20-poly1305, on AES-NI
      hardware). Extra key ``ciphers``.
    - ``limits`` and ``retry`` as for every adapter. Reads, listings, stats, downloads and the
      write-then-rename uploads are retried on transport errors, each time on a live connection.
    """

    def __init__(self, conn_id: str, **options: Unpack[SFTPOptions]) -> None:
        super().__init__(conn_id, **options)

    # -- single-path operations ------------------------------------------------------------------

    async def makedirs(self, path: str) -> None:
        """Create a directory and its missing parents; an existing directory is fine (mkdir -p)."""
        resolved = self._resolve(path)
        await self.call(self._makedirs_once, resolved, target=resolved)

    async def _makedirs_once(self, path: str) -> None:
        async with self._session("makedirs", path) as session:
            await self._confine(session.sftp, path)
            await session.sftp.makedirs(path, exist_ok=True)

    async def remove(self, path: str) -> None:
        """Remove a file or a link (not its target). Not retried: it is not idempotent."""
        resolved = self._resolve(path)
        await self.call(self._remove_once, resolved, retry=Retry.none(), target=resolved)

    async def _remove_once(self, path: str) -> None:
        async with self._session("remove", path) as session:
            # The link itself is removed, never its target: only the parent must stay inside.
            await self._confine(session.sftp, posixpath.dirname(path) or ".")
            await session.sftp.remove(path)

    async def rmdir(self, path: str) -> None:
        """Remove an empty directory. Not retried: it is not idempotent."""
        resolved = self._resolve(path)
        await self.call(self._rmdir_once, resolved, retry=Retry.none(), target=resolved)

    async def _rmdir_once(self, path: str) -> None:
        async with self._session("rmdir", path) as session:
            await self._confine(session.sftp, path)
            await session.sftp.rmdir(path)

    async def _probe(self) -> str:
        """One round trip, for ``hookbridge check``: where the login lands on the server."""
        return await self.call(self._check_once)

    async def _check_once(self) -> str:
        async with self._session("check", None) as session:
            home = await session.sftp.realpath(".")
            cipher = session.grant.link.ssh.get_extra_info("send_cipher")
        root = f", root {self._root.root!r}" if self._root.root else ""
        return f"SFTP {self._server}: logged in, home directory {home!r}{root}, cipher {cipher}"

    # -- streams ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def open(self, path: str, mode: str = "rb") -> AsyncIterator[RemoteFile]:
        """A remote file for streamed reads or writes: ``async with sftp.open(p) as f``.

        Binary modes only (``rb``, ``wb``, ``ab``, ``xb``, ``r+b``, ...; ``"r"`` means ``"rb"``).
        Not retried: a stream cannot be replayed. The file is one admission of the adapter's
        limits (``hold``) and holds one request slot on a shared connection while open.
        """
        resolved = self._resolve(path)
        try:
            sftp_mode = MODES[mode]
        except KeyError:
            raise UsageError(
                f"unsupported mode {mode!r}; use one of {', '.join(sorted(set(MODES.values())))} "
                "(SFTP files are bytes).",
                argument="mode",
            ) from None
        caller_error: Exception | None = None
        async with self.hold(target=resolved):
            grant = await self._links.checkout()
            try:
                with self._timed("open", resolved):
                    await self._confine(grant.sftp, resolved)
                    file = await self._open_handle(grant, resolved, sftp_mode)
                try:
                    block = self._block(grant.sftp, None, False)
                    yield RemoteFile(self, grant, file, resolved, block)
                except Exception as exc:
                    if isinstance(exc, HookBridgeError):
                        raise  # a RemoteFile method's, already translated
                    # The caller's own code failed: not for the boundary to translate (a local
                    # OSError of the caller's is not the connection's). Raised after the hold.
                    caller_error = exc
                finally:
                    with self._timed("close", resolved):
                        await self._close_handle(file)
            except Exception as exc:
                _mark(grant, exc)
                raise
            finally:
                await grant.release()
        if caller_error is not None:
            raise caller_error


def _mark(grant: Grant, exc: Exception) -> None:
    if is_transport_failure(exc):
        grant.broken = True
