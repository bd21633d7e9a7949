"""The SFTP adapter: pooled SSH connections carrying many concurrent SFTP requests each.

Connections are opened with the provider's ``SFTPHookAsync`` settings (host, port, login,
password, key_file / private_key, passphrase, host_key / no_host_key_check, known_hosts, parsed
by the hook itself), so host keys are verified exactly as the provider verifies them, by default;
``_connect`` adds the cipher preference (AES-GCM first) and a larger channel window and packet
size, with the measurements that chose them. Each connection is shared by
many operations at once (see ``_links``: a :class:`~hookbridge.Pool` owns their lifecycle, the
operations share the connections it hands out), so concurrency is not capped at the number of
connections as with ``SFTPClientPool``.

Large transfers read or write ``block_size`` blocks with up to ``max_requests`` requests in flight.
They are written here on anyio task groups rather than with asyncssh's ``get``/``put`` because
those run each block in a free-standing asyncio task: a cancelled ``get`` leaves its block tasks
running against a closed file. Here every request belongs to the operation's task group, and local
file I/O runs in worker threads, off the event loop.

Downloads write to a temporary name in the destination directory and ``os.replace`` it on
success; uploads write a temporary remote name and rename it over the target. A failed or
cancelled transfer removes its temporary file, so a destination name never holds a truncated file.
"""

from __future__ import annotations

import builtins
import importlib
import logging
import math
import os
import posixpath
import stat as stat_module
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
)
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, TypeVar

import anyio
import asyncssh
from asyncssh.constants import (
    FILEXFER_TYPE_DIRECTORY,
    FILEXFER_TYPE_REGULAR,
    FILEXFER_TYPE_SYMLINK,
)

from hookbridge import (
    AdapterClosed,
    ConfigurationError,
    FailedItem,
    PathRefused,
    RemoteStatusError,
    TransportError,
)
from hookbridge._adapter import Adapter
from hookbridge._airflow import connection_extra, get_connection
from hookbridge._fanout import amap
from hookbridge._limits import Limits
from hookbridge._retry import Retry

from ._connect import check_ciphers, connect_ssh, default_ciphers
from ._links import Grant, Links, LinkStatistics
from ._local import (
    GroupWriter,
    LocalTemp,
    local_size,
    local_tree,
    makedirs_local,
    open_local,
    pread,
    read_local,
    temp_suffix,
)
from ._paths import RemoteRoot, check_name, server_realpath
from ._translate import is_transport_failure, mark_local, translate

__all__ = ["RemoteEntry", "RemoteFile", "SFTPAdapter", "TransferProgress", "TreeTransfer"]

logger = logging.getLogger("hookbridge.sftp")

T = TypeVar("T")

KiB = 1024
#: Defaults, chosen by contrib/bench/sftp_transfer.py on loopback (see the module docstring there).
DEFAULT_MAX_CONNECTIONS = 4
DEFAULT_MAX_REQUESTS_PER_CONNECTION = 128
DEFAULT_BLOCK_SIZE = 256 * KiB
DEFAULT_MAX_REQUESTS = 128
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 300.0
#: Files a tree transfer moves at once, per connection.
TREE_FILES_PER_CONNECTION = 32
#: Blocks an upload reads from the local file per worker-thread hop.
READ_AHEAD = 8
#: Most downloaded blocks written to the local file per worker-thread hop.
WRITE_BATCH = 32
#: Longest wait for the answer to an open (shielded: its handle must not leak) or a close.
HANDLE_TIMEOUT = 30.0
#: Longest a best-effort clean-up request (removing a temporary file) may take.
CLEANUP_TIMEOUT = 5.0
_FX_EOF = 1

_MODES = {
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


# -- public value types ---------------------------------------------------------------------------


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


def _entry(name: str, path: str, attrs: asyncssh.SFTPAttrs) -> RemoteEntry:
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
    return _entry(name, _join(directory, name), item.attrs)


def _join(directory: str, name: str) -> str:
    return name if directory in (".", "") else posixpath.join(directory, name)


def _temp_name(path: str) -> str:
    head, tail = posixpath.split(path) if "/" in path else ("", path)
    name = "." + tail + temp_suffix()
    return posixpath.join(head, name) if head else name


def _slicer(data: bytes) -> Callable[[int, int], Awaitable[bytes]]:
    async def source(offset: int, length: int) -> bytes:
        return data[offset : offset + length]

    return source


# -- parallel block transfer --------------------------------------------------------------------


_GROUP: type[BaseException] = (
    getattr(builtins, "BaseExceptionGroup", None)
    or importlib.import_module("exceptiongroup").BaseExceptionGroup
)


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, _GROUP):
        error = error.exceptions[0]  # type: ignore[attr-defined]
    return error


async def _run_all(*tasks: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run the tasks in a task group; raise the first failure unwrapped.

    When the connection drops, every worker fails the same way: the operation's error boundary
    needs one error to translate and retry on, not a group of identical ones.
    """
    try:
        async with anyio.create_task_group() as tg:
            for task in tasks:
                tg.start_soon(task)
    except _GROUP as group:
        raise _first_leaf(group) from None


async def _read_range(
    file: asyncssh.SFTPClientFile,
    size: int,
    *,
    block: int,
    workers: int,
    sink: Callable[[int, bytes], Any],
    path: str,
) -> None:
    """Read bytes ``[0, size)`` in ``block`` requests, ``workers`` in flight; ``sink`` each block.

    ``sink(offset, data)`` returns an awaitable or None. A short answer is asked again for the
    rest; an end of file before ``size`` bytes means the file shrank while it was copied.
    """
    next_offset = 0

    async def worker() -> None:
        nonlocal next_offset
        while next_offset < size:
            offset = next_offset
            length = min(block, size - offset)
            next_offset += length
            while length > 0:
                data: bytes = await file.read(length, offset)
                if not data:
                    raise RemoteStatusError(
                        f"{path!r} ended at {offset} bytes, before the {size} bytes it had when "
                        "the transfer started: it changed during the transfer.",
                        status=_FX_EOF,
                        url=path,
                    )
                pending = sink(offset, data)
                if pending is not None:
                    await pending
                offset += len(data)
                length -= len(data)

    if workers <= 1 or size <= block:
        await worker()
        return
    await _run_all(*[worker] * workers)


async def _write_range(
    file: asyncssh.SFTPClientFile,
    size: int,
    *,
    block: int,
    workers: int,
    source: Callable[[int, int], Awaitable[bytes]],
) -> None:
    """Write bytes ``[0, size)`` taken from ``await source(offset, length)``, in parallel blocks.

    One task reads ahead ``READ_AHEAD`` blocks per ``source`` call (one worker-thread hop for a
    local file) and hands blocks to ``workers`` writers through a bounded stream.
    """
    if size <= block or workers <= 1:
        for offset in range(0, size, block):
            length = min(block, size - offset)
            await file.write(await _exactly(source, offset, length), offset)
        return
    send, receive = anyio.create_memory_object_stream[tuple[int, bytes]](workers)

    async def produce() -> None:
        with send:
            offset = 0
            while offset < size:
                length = min(block * READ_AHEAD, size - offset)
                chunk = await _exactly(source, offset, length)
                for start in range(0, length, block):
                    await send.send((offset + start, chunk[start : start + block]))
                offset += length

    async def write() -> None:
        async for offset, data in receive:
            await file.write(data, offset)

    with send, receive:  # closed here too, should a task never start
        await _run_all(produce, *[write] * workers)


async def _exactly(
    source: Callable[[int, int], Awaitable[bytes]], offset: int, length: int
) -> bytes:
    data = await source(offset, length)
    if len(data) != length:
        raise mark_local(OSError(f"the local file changed size during the upload, at {offset}"))
    return data


# -- the adapter ---------------------------------------------------------------------------------


def _positive_int(value: Any, *, conn_id: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"must be an integer >= 1, got {value!r}.", conn_id=conn_id, field=field
        )
    return value


def _positive_seconds(value: Any, *, conn_id: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"must be a number of seconds > 0, got {value!r}.", conn_id=conn_id, field=field
        )
    return float(value)


class SFTPAdapter(Adapter):
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
    - ``ciphers``: the SSH ciphers to offer, best first (a list, or one comma-separated
      string), from asyncssh's default set. By default AES-GCM first, then the rest of that set
      (see ``_connect``: about 40% less CPU per small file than chacha20-poly1305, on AES-NI
      hardware).
      Extra key ``ciphers``.
    - ``limits`` and ``retry`` as for every adapter. Reads, listings, stats, downloads and the
      write-then-rename uploads are retried on transport errors, each time on a live connection.
    """

    name: ClassVar[str] = "sftp"
    conn_types: ClassVar[tuple[str, ...]] = ("sftp",)
    asyncio_only: ClassVar[bool] = True

    _POOL_KEYS: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "max_connections": int,
        "max_requests_per_connection": int,
        "connect_timeout": (int, float),
        "idle_timeout": (int, float),
        "max_lifetime": (int, float),
    }
    _ADAPTER_KEYS: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "root": str,
        "block_size": int,
        "max_requests": int,
        "ciphers": (list, str),
    }

    def __init__(
        self,
        conn_id: str,
        *,
        root: str | None = None,
        max_connections: int | None = None,
        max_requests_per_connection: int | None = None,
        block_size: int | None = None,
        max_requests: int | None = None,
        connect_timeout: float | None = None,
        idle_timeout: float | None = None,
        max_lifetime: float | None = None,
        ciphers: str | Iterable[str] | None = None,
        limits: Limits | None = None,
        retry: Retry | None = None,
    ) -> None:
        super().__init__(conn_id, limits=limits, retry=retry)
        explicit: dict[str, Any] = {}
        if root is not None:
            explicit["root"] = self._check_root(root, field="root")
        if ciphers is not None:
            if not isinstance(ciphers, str):
                ciphers = list(ciphers)
            explicit["ciphers"] = list(check_ciphers(ciphers, conn_id=conn_id, field="ciphers"))
        for field, value in (
            ("max_connections", max_connections),
            ("max_requests_per_connection", max_requests_per_connection),
            ("block_size", block_size),
            ("max_requests", max_requests),
        ):
            if value is not None:
                explicit[field] = _positive_int(value, conn_id=conn_id, field=field)
        for field, seconds in (
            ("connect_timeout", connect_timeout),
            ("idle_timeout", idle_timeout),
            ("max_lifetime", max_lifetime),
        ):
            if seconds is not None:
                explicit[field] = _positive_seconds(seconds, conn_id=conn_id, field=field)
        self._explicit_options = explicit
        self._root = RemoteRoot(explicit.get("root"))
        self._real_root: str | None = None
        self._max_connections = DEFAULT_MAX_CONNECTIONS
        self._capacity = DEFAULT_MAX_REQUESTS_PER_CONNECTION
        self._block_size = DEFAULT_BLOCK_SIZE
        self._max_requests = DEFAULT_MAX_REQUESTS
        self._connect_timeout = DEFAULT_CONNECT_TIMEOUT
        self._ciphers = default_ciphers()
        self._links_or_none: Links | None = None
        self._writer = GroupWriter()
        self._secrets: tuple[str, ...] = ()
        self._server = ""

    def _check_root(self, root: Any, *, field: str) -> str:
        try:
            checked = RemoteRoot(root).root
        except (TypeError, ValueError, PathRefused) as exc:
            raise ConfigurationError(str(exc), conn_id=self.conn_id, field=field) from None
        assert checked is not None
        return checked

    # -- lifecycle -------------------------------------------------------------------------------

    async def _open(self) -> None:
        conn = await get_connection(self.conn_id)
        extra = await connection_extra(conn)
        self._secrets = tuple(
            s
            for s in (
                getattr(conn, "password", None),
                extra.get("private_key"),
                extra.get("passphrase"),
                extra.get("private_key_passphrase"),
            )
            if isinstance(s, str) and s
        )
        settings = self._apply_settings(
            extra, pool_keys=self._POOL_KEYS, adapter_keys=self._ADAPTER_KEYS
        )
        options: dict[str, Any] = {}
        for key, value in settings.pool.items():
            field = f"hookbridge.pool.{key}"
            if key in ("max_connections", "max_requests_per_connection"):
                options[key] = _positive_int(value, conn_id=self.conn_id, field=field)
            else:
                options[key] = _positive_seconds(value, conn_id=self.conn_id, field=field)
        for key, value in settings.adapter_options.items():
            field = f"hookbridge.{key}"
            if key == "root":
                options[key] = self._check_root(value, field=field)
            elif key == "ciphers":
                options[key] = check_ciphers(value, conn_id=self.conn_id, field=field)
            else:
                options[key] = _positive_int(value, conn_id=self.conn_id, field=field)
        options.update(self._explicit_options)
        self._root = RemoteRoot(options.get("root"))
        self._max_connections = options.get("max_connections", DEFAULT_MAX_CONNECTIONS)
        self._capacity = options.get(
            "max_requests_per_connection", DEFAULT_MAX_REQUESTS_PER_CONNECTION
        )
        self._block_size = options.get("block_size", DEFAULT_BLOCK_SIZE)
        self._max_requests = options.get("max_requests", DEFAULT_MAX_REQUESTS)
        self._connect_timeout = options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        self._ciphers = tuple(options.get("ciphers", default_ciphers()))
        self._server = f"{getattr(conn, 'host', None)}:{getattr(conn, 'port', None) or 22}"
        self._links_or_none = Links(
            self._connect,
            max_connections=self._max_connections,
            capacity=self._capacity,
            idle_timeout=options.get("idle_timeout", DEFAULT_IDLE_TIMEOUT),
            max_lifetime=options.get("max_lifetime"),
            name=f"sftp:{self.conn_id}",
        )
        await self._links_or_none.open()
        # One connection now: a wrong host key or password shows at open, not at first use.
        await self.retry.run(self._probe)

    async def _probe(self) -> None:
        async with self._use(None) as grant:
            if self._root.root is not None:
                self._real_root = await server_realpath(grant.sftp, self._root.root)

    async def _close(self) -> None:
        links, self._links_or_none = self._links_or_none, None
        if links is not None:
            await links.aclose()

    async def _connect(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        with anyio.fail_after(self._connect_timeout):
            ssh = await connect_ssh(self.conn_id, self._ciphers)
        try:
            # Shielded (and bounded): a session cut off between channel open and the SFTP init
            # exchange is one the server may never see end; finish the handshake, then cancel.
            with anyio.CancelScope(shield=True), anyio.fail_after(self._connect_timeout):
                sftp = await ssh.start_sftp_client()
        except BaseException:
            ssh.abort()
            raise
        return ssh, sftp

    @property
    def _links(self) -> Links:
        if self._links_or_none is None:
            self._require_open()
            raise AdapterClosed(f"{self!r} is not open.")  # pragma: no cover - opening
        return self._links_or_none

    def _spec_options(self) -> dict[str, Any]:
        options = super()._spec_options()
        options.update(self._explicit_options)
        return options

    def _pool_statistics(self) -> LinkStatistics | None:
        return self._links_or_none.statistics() if self._links_or_none is not None else None

    def __repr__(self) -> str:
        root = f" root={self._root.root!r}" if self._root.root is not None else ""
        return f"<SFTPAdapter conn_id={self.conn_id!r}{root} state={self._state}>"

    # -- the error boundary ----------------------------------------------------------------------

    def _translated(
        self, exc: BaseException, grant: Grant | None, path: str | None
    ) -> BaseException:
        err = translate(exc, conn_id=self.conn_id, path=path, secrets=self._secrets)
        if grant is not None and is_transport_failure(err):
            grant.broken = True
        return err

    async def _checkout(self, path: str | None, want: int = 1) -> Grant:
        try:
            return await self._links.checkout(want)
        except Exception as exc:
            err = self._translated(exc, None, path)
            if err is exc:
                raise
            raise err from exc

    @asynccontextmanager
    async def _use(self, path: str | None, want: int = 1) -> AsyncIterator[Grant]:
        """One attempt's hold on a shared connection; foreign errors are translated here.

        Only the adapter's own code runs inside: a caller's code never does, so its errors are
        never mistaken for the connection's.
        """
        grant = await self._checkout(path, want)
        try:
            yield grant
        except Exception as exc:
            err = self._translated(exc, grant, path)
            if err is exc:
                raise
            raise err from exc
        finally:
            await grant.release()

    async def _confine(self, sftp: asyncssh.SFTPClient, path: str) -> None:
        """Refuse ``path`` if the server resolves it (links followed) outside the root."""
        if self._root.root is None:
            return
        real = await server_realpath(sftp, path)
        real_root = self._real_root or self._root.root
        if not self._root.contains(posixpath.normpath(real), real_root):
            raise PathRefused(
                f"{path!r} leads to {real!r} on the server (through a symbolic link), outside "
                f"the adapter's root {self._root.root!r}; the operation was not sent.",
                path=path,
            )

    async def _open_handle(
        self, sftp: asyncssh.SFTPClient, path: str, mode: str
    ) -> asyncssh.SFTPClientFile:
        # Shielded: once the request is out, its answer carries a handle that must be closed.
        # One scope for the shield and the time limit (its own deadline still applies): this
        # runs once per file of a tree.
        with anyio.CancelScope(
            shield=True, deadline=anyio.current_time() + HANDLE_TIMEOUT
        ) as scope:
            file: asyncssh.SFTPClientFile = await sftp.open(path, mode, block_size=0)
        if scope.cancelled_caught:
            raise TimeoutError(f"no answer to opening {path!r} in {HANDLE_TIMEOUT:g} s")
        return file

    @staticmethod
    async def _close_handle(file: asyncssh.SFTPClientFile) -> None:
        # The close request leaves before the first await, so even a cancelled caller frees it.
        with anyio.CancelScope(deadline=anyio.current_time() + HANDLE_TIMEOUT):
            # A broken connection fails the close too; the operation's own error says so.
            with suppress(asyncssh.Error, OSError):
                await file.close()

    def _block(self, sftp: asyncssh.SFTPClient, block_size: int | None, write: bool) -> int:
        block = block_size if block_size is not None else self._block_size
        limits = sftp.limits
        cap = limits.max_write_len if write else limits.max_read_len
        return max(1, min(block, cap)) if cap else block

    def _resolve(self, path: str) -> str:
        self._require_open()
        return self._root.resolve(path)

    async def _run(self, fn: Callable[..., Any], *args: Any, retry: bool = True) -> Any:
        return await self.call(fn, *args, retry=None if retry else Retry.none())

    # -- listing ---------------------------------------------------------------------------------

    async def listdir(self, path: str = ".") -> AsyncGenerator[RemoteEntry, None]:
        """The entries of a directory, without ``.`` and ``..``, in the server's order.

        Entries stream as the server sends them (a batch per round trip), so work on the first
        ones starts before a large directory is read to its end. A stopped iteration holds a
        directory handle until the generator is closed: ``async with
        contextlib.aclosing(sftp.listdir(p)) as entries:`` closes it at once. A transport
        failure part-way is retried like other reads; entries already yielded are not repeated.
        """
        resolved = self._resolve(path)
        async with aclosing(self._scan(resolved, True)) as entries:
            async for entry in entries:
                yield entry

    async def _scan(self, path: str, confine: bool) -> AsyncGenerator[RemoteEntry, None]:
        """Stream one directory; on a transport failure, list it again whole and fill the gap."""
        seen: set[str] = set()
        try:
            await self.limits.acquire()
            async with self._use(path) as grant:
                if confine:
                    await self._confine(grant.sftp, path)
                async with aclosing(grant.sftp.scandir(path)) as names:
                    async for item in names:
                        entry = _listed(path, item)
                        if entry is not None:
                            seen.add(entry.name)
                            yield entry
        except TransportError as exc:
            if self.retry.attempts <= 1 or not self.retry.retry_on(exc):
                raise
            # The attempts left go to whole listings, as for every other retried read.
            rest = replace(self.retry, attempts=self.retry.attempts - 1)
            entries: list[RemoteEntry] = await self.call(self._list_once, path, confine, retry=rest)
            for entry in entries:
                if entry.name not in seen:
                    yield entry

    async def _list_once(self, path: str, confine: bool) -> list[RemoteEntry]:
        async with self._use(path) as grant:
            if confine:
                await self._confine(grant.sftp, path)
            names = await grant.sftp.readdir(path)
        return [entry for entry in (_listed(path, item) for item in names) if entry is not None]

    async def walk(self, path: str = ".") -> AsyncGenerator[RemoteEntry, None]:
        """Every entry below a directory, top-down; links are reported, not followed.

        Streams like :meth:`listdir`. With a root, only the starting directory is resolved on
        the server: the directories a listing reports are real directories, not links, so they
        stay inside.
        """
        resolved = self._resolve(path)
        pending = [resolved]
        confine = True
        while pending:
            directory = pending.pop()
            subdirectories = []
            async with aclosing(self._scan(directory, confine)) as entries:
                async for entry in entries:
                    if entry.is_dir:
                        subdirectories.append(entry.path)
                    yield entry
            confine = False
            pending.extend(reversed(subdirectories))

    # -- single-path operations ------------------------------------------------------------------

    async def stat(self, path: str) -> RemoteEntry:
        """A path's attributes, following links (``is_symlink`` is then always False)."""
        resolved = self._resolve(path)
        result: RemoteEntry = await self._run(self._stat_once, resolved)
        return result

    async def _stat_once(self, path: str) -> RemoteEntry:
        async with self._use(path) as grant:
            await self._confine(grant.sftp, path)
            attrs = await grant.sftp.stat(path)
        return _entry(posixpath.basename(path) or path, path, attrs)

    async def exists(self, path: str) -> bool:
        """Whether the path exists (a link counts when its target exists)."""
        try:
            await self.stat(path)
        except FileNotFoundError:
            return False
        return True

    async def makedirs(self, path: str) -> None:
        """Create a directory and its missing parents; an existing directory is fine (mkdir -p)."""
        resolved = self._resolve(path)
        await self._run(self._makedirs_once, resolved)

    async def _makedirs_once(self, path: str) -> None:
        async with self._use(path) as grant:
            await self._confine(grant.sftp, path)
            await grant.sftp.makedirs(path, exist_ok=True)

    async def remove(self, path: str) -> None:
        """Remove a file or a link (not its target). Not retried: it is not idempotent."""
        resolved = self._resolve(path)
        await self._run(self._remove_once, resolved, retry=False)

    async def _remove_once(self, path: str) -> None:
        async with self._use(path) as grant:
            # The link itself is removed, never its target: only the parent must stay inside.
            await self._confine(grant.sftp, posixpath.dirname(path) or ".")
            await grant.sftp.remove(path)

    async def rmdir(self, path: str) -> None:
        """Remove an empty directory."""
        resolved = self._resolve(path)
        await self._run(self._rmdir_once, resolved, retry=False)

    async def _rmdir_once(self, path: str) -> None:
        async with self._use(path) as grant:
            await self._confine(grant.sftp, path)
            await grant.sftp.rmdir(path)

    async def check(self) -> str:
        """One round trip, for ``hookbridge check``: where the login lands on the server."""
        result: str = await self._run(self._check_once)
        return result

    async def _check_once(self) -> str:
        async with self._use(None) as grant:
            home = await grant.sftp.realpath(".")
            cipher = grant.link.ssh.get_extra_info("send_cipher")
        root = f", root {self._root.root!r}" if self._root.root else ""
        return f"SFTP {self._server}: logged in, home directory {home!r}{root}, cipher {cipher}"

    # -- whole-file bytes ------------------------------------------------------------------------

    async def read_bytes(self, path: str) -> bytes:
        """A remote file's content, read with parallel block requests."""
        resolved = self._resolve(path)
        result: bytes = await self._run(self._read_once, resolved)
        return result

    async def _read_once(self, path: str) -> bytes:
        async with self._use(path, want=self._max_requests) as grant:
            sftp = grant.sftp
            await self._confine(sftp, path)
            file = await self._open_handle(sftp, path, "rb")
            try:
                size = (await file.stat()).size or 0
                block = self._block(sftp, None, write=False)
                grant.shrink(math.ceil(size / block))
                buffer = bytearray(size)

                def sink(offset: int, data: bytes) -> None:
                    buffer[offset : offset + len(data)] = data

                await _read_range(
                    file, size, block=block, workers=grant.slots, sink=sink, path=path
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
        return await self._upload(resolved, len(payload), _slicer(payload), True, None)

    # -- streams ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def open(self, path: str, mode: str = "rb") -> AsyncIterator[RemoteFile]:
        """A remote file for streamed reads or writes: ``async with sftp.open(p) as f``.

        Binary modes only (``rb``, ``wb``, ``ab``, ``xb``, ``r+b``, ...; ``"r"`` means ``"rb"``).
        Not retried: a stream cannot be replayed. The file holds one request slot on a shared
        connection while open.
        """
        resolved = self._resolve(path)
        try:
            sftp_mode = _MODES[mode]
        except KeyError:
            raise ConfigurationError(
                f"unsupported mode {mode!r}; use one of {', '.join(sorted(set(_MODES.values())))} "
                "(SFTP files are bytes).",
                conn_id=self.conn_id,
                field="mode",
            ) from None
        # The limits slot is held while the file is open; not self._use(): that would translate
        # errors the caller's own code raises in the block.
        async with self.limits():
            file, grant = await self._open_once(resolved, sftp_mode)
            try:
                yield RemoteFile(self, grant, file, resolved, self._block(grant.sftp, None, False))
            finally:
                try:
                    await self._close_handle(file)
                finally:
                    await grant.release()

    async def _open_once(self, path: str, mode: str) -> tuple[asyncssh.SFTPClientFile, Grant]:
        grant = await self._checkout(path)
        try:
            try:
                await self._confine(grant.sftp, path)
                return await self._open_handle(grant.sftp, path, mode), grant
            except Exception as exc:
                err = self._translated(exc, grant, path)
                if err is exc:
                    raise
                raise err from exc
        except BaseException:
            await grant.release()
            raise

    # -- one-file transfers ----------------------------------------------------------------------

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
        ``progress(bytes_done, total)`` is called as blocks land.
        """
        resolved = self._resolve(remote)
        result: int = await self._run(
            self._download_once,
            resolved,
            os.fspath(local),
            None,
            True,
            self._check_block(block_size, "block_size"),
            self._check_block(max_requests, "max_requests"),
            progress,
        )
        return result

    def _check_block(self, value: int | None, field: str) -> int | None:
        return None if value is None else _positive_int(value, conn_id=self.conn_id, field=field)

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
        async with self._use(path, want=want) as grant:
            sftp = grant.sftp
            if confine:
                await self._confine(sftp, path)
            file = await self._open_handle(sftp, path, "rb")
            try:
                size = size_hint if size_hint is not None else (await file.stat()).size or 0
                block = self._block(sftp, block_size, write=False)
                grant.shrink(min(parallel, math.ceil(size / block)))
                if size <= block:
                    data = await self._read_small(file, size, path)
                else:
                    temp = LocalTemp(local)
                    await self._download_large(file, size, block, grant.slots, temp, path, progress)
            finally:
                await self._close_handle(file)
        if data is not None:
            # Written after the connection's slot is given back: local disk time is not SFTP's.
            await self._writer.write(local, data)
            if progress is not None:
                progress(size, size)
        return size

    @staticmethod
    async def _read_small(file: asyncssh.SFTPClientFile, size: int, path: str) -> bytes:
        """Read a file of at most one block; a server that caps reads is asked for the rest."""
        parts: list[bytes] = []
        offset = 0
        while offset < size:
            chunk: bytes = await file.read(size - offset, offset)
            if not chunk:
                raise RemoteStatusError(
                    f"{path!r} ended at {offset} of its {size} bytes: it changed during the "
                    "transfer.",
                    status=_FX_EOF,
                    url=path,
                )
            parts.append(chunk)
            offset += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _download_large(
        self,
        file: asyncssh.SFTPClientFile,
        size: int,
        block: int,
        workers: int,
        temp: LocalTemp,
        path: str,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        # Readers hand blocks to one writer task through a bounded stream; the writer gathers a
        # quarter as many blocks as there are readers (at most WRITE_BATCH; fewer at the end)
        # and takes them to a worker thread in one hop. One hop per block arriving costs more
        # than the write: on loopback, 800 hops for 200 MiB took a tenth more client CPU (the
        # thread switches, in the kernel) than asyncssh's get writing on the loop; 25 hops do
        # not. Memory stays bounded by the readers: a quarter more blocks than are in flight.
        send, receive = anyio.create_memory_object_stream[tuple[int, bytes]](max(1, workers // 2))
        gather = max(1, min(WRITE_BATCH, workers // 4))
        done = 0

        async def write() -> None:
            nonlocal done
            async for first in receive:
                batch = [first]
                with suppress(anyio.EndOfStream):
                    while len(batch) < WRITE_BATCH:
                        try:
                            batch.append(receive.receive_nowait())
                        except anyio.WouldBlock:
                            if len(batch) >= gather:
                                break
                            batch.append(await receive.receive())
                await anyio.to_thread.run_sync(temp.write_blocks, batch)
                done += sum(len(data) for _, data in batch)
                if progress is not None:
                    try:
                        progress(done, size)
                    except OSError as exc:  # the caller's, not the connection's
                        raise mark_local(exc) from None

        async def read() -> None:
            with send:
                await _read_range(
                    file,
                    size,
                    block=block,
                    workers=workers,
                    sink=lambda offset, data: send.send((offset, data)),
                    path=path,
                )

        try:
            with send, receive:  # closed here too, should a task never start
                await anyio.to_thread.run_sync(temp.create)
                await _run_all(write, read)
            await anyio.to_thread.run_sync(temp.finish)
        except BaseException:
            temp.discard()
            raise

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
            self._check_block(block_size, "block_size"),
            self._check_block(max_requests, "max_requests"),
        )
        return await self._upload_file(os.fspath(local), resolved, confine=True, tuning=tuning)

    async def _upload_file(
        self,
        local: str,
        remote: str,
        *,
        confine: bool,
        tuning: tuple[int | None, int | None] | None = None,
    ) -> int:
        size = await anyio.to_thread.run_sync(local_size, local)
        if size <= self._block_size:
            # One read, one write request: the path small files take.
            data = await anyio.to_thread.run_sync(read_local, local)
            return await self._upload(remote, len(data), _slicer(data), confine, tuning)
        fd = await anyio.to_thread.run_sync(open_local, local)
        try:

            async def source(offset: int, length: int) -> bytes:
                return await anyio.to_thread.run_sync(pread, fd, length, offset)

            return await self._upload(remote, size, source, confine, tuning)
        finally:
            os.close(fd)

    async def _upload(
        self,
        path: str,
        size: int,
        source: Callable[[int, int], Awaitable[bytes]],
        confine: bool,
        tuning: tuple[int | None, int | None] | None,
    ) -> int:
        leftovers: list[str] = []
        try:
            result: int = await self._run(
                self._upload_once, path, size, source, confine, tuning, leftovers
            )
        finally:
            if leftovers:
                # The last attempt's connection broke under it: remove its temporary file over a
                # live one, best effort.
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(CLEANUP_TIMEOUT),
                    suppress(Exception),
                ):
                    async with self._use(path) as grant:
                        for stale in leftovers:
                            await self._remove_quietly(grant.sftp, stale)
        return result

    async def _upload_once(
        self,
        path: str,
        size: int,
        source: Callable[[int, int], Awaitable[bytes]],
        confine: bool,
        tuning: tuple[int | None, int | None] | None,
        leftovers: list[str],
    ) -> int:
        block_size, max_requests = tuning or (None, None)
        parallel = max_requests or self._max_requests
        want = max(1, min(parallel, math.ceil(size / (block_size or self._block_size))))
        async with self._use(path, want=want) as grant:
            sftp = grant.sftp
            for stale in list(leftovers):
                await self._remove_quietly(sftp, stale)
                leftovers.remove(stale)
            if confine:
                await self._confine(sftp, posixpath.dirname(path) or ".")
            temp = _temp_name(path)
            leftovers.append(temp)
            try:
                file = await self._open_handle(sftp, temp, "xb")
                try:
                    block = self._block(sftp, block_size, write=True)
                    grant.shrink(min(parallel, math.ceil(size / block)))
                    await _write_range(file, size, block=block, workers=grant.slots, source=source)
                finally:
                    await self._close_handle(file)
                await self._replace(sftp, temp, path)
                leftovers.remove(temp)
            except BaseException as exc:
                if not is_transport_failure(exc):
                    with anyio.CancelScope(shield=True):
                        await self._remove_quietly(sftp, temp)
                    leftovers.remove(temp)
                raise
        return size

    @staticmethod
    async def _remove_quietly(sftp: asyncssh.SFTPClient, path: str) -> None:
        with anyio.move_on_after(CLEANUP_TIMEOUT):
            with suppress(asyncssh.Error, OSError):
                await sftp.remove(path)

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

    # -- trees -----------------------------------------------------------------------------------

    def _tree_concurrency(self, max_at_once: int | None) -> int:
        if max_at_once is not None:
            return _positive_int(max_at_once, conn_id=self.conn_id, field="max_at_once")
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
            async with aclosing(self.walk(start)) as entries:
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
            copied: int = await self._run(
                self._download_once, entry.path, target_of(entry), size, confine, None, None, None
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
        await self._run(self._make_tree_once, start, remote_dirs)
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
        async with self._use(top) as grant:
            sftp = grant.sftp
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
        self._report(path, nbytes)

    def failed(self) -> None:
        self.failures += 1

    def _report(self, path: str, nbytes: int) -> None:
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


class RemoteFile:
    """An open remote file (from :meth:`SFTPAdapter.open`): bytes in, bytes out.

    ``async for chunk in file`` reads block by block to the end.
    """

    def __init__(
        self,
        adapter: SFTPAdapter,
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

    async def _guard(self, coro: Any) -> Any:
        try:
            return await coro
        except Exception as exc:
            err = self._adapter._translated(exc, self._grant, self.path)
            if err is exc:
                raise
            raise err from exc

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

                try:
                    await _read_range_at(file, offset, length, self._block, sink, self.path)
                except RemoteStatusError as exc:
                    if exc.status != _FX_EOF:
                        raise
                data = b"".join(parts[k] for k in sorted(parts))
            await file.seek(offset + len(data))
            return data

        result: bytes = await self._guard(run())
        return result

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

        result: int = await self._guard(run())
        return result

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        result: int = await self._guard(self._file.seek(offset, whence))
        return result

    async def tell(self) -> int:
        result: int = await self._guard(self._file.tell())
        return result

    async def stat(self) -> RemoteEntry:
        attrs = await self._guard(self._file.stat())
        return _entry(posixpath.basename(self.path), self.path, attrs)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.read(self._block)
            if not chunk:
                return
            yield chunk


async def _read_range_at(
    file: asyncssh.SFTPClientFile,
    start: int,
    length: int,
    block: int,
    sink: Callable[[int, bytes], None],
    path: str,
) -> None:
    """Like :func:`_read_range` for ``[start, start + length)``; an early end of file stops it."""
    end = start + length

    async def one(offset: int, size: int) -> None:
        while size > 0:
            data: bytes = await file.read(size, offset)
            if not data:
                return
            sink(offset, data)
            offset += len(data)
            size -= len(data)

    try:
        async with anyio.create_task_group() as tg:
            for offset in range(start, end, block):
                tg.start_soon(one, offset, min(block, end - offset))
    except _GROUP as group:
        raise _first_leaf(group) from None
