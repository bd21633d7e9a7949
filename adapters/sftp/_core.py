"""The SFTP adapter's foundation: options, the shared connections, one attempt's session, paths.

Every operation of the adapter is an attempt function run by the SDK's engine (``call``, or
``hold`` for an open file or a streamed listing). An attempt takes a :class:`Session`: request
slots on a shared SSH connection (``_links``) under the operation timeout. Foreign errors pass
through it untranslated (the engine applies ``_translate`` once per attempt); a transport failure
only marks the connection broken on its way out, so that the pool discards it.
"""

from __future__ import annotations

import posixpath
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, ClassVar

import anyio
import asyncssh

from hookbridge import AdapterClosed, HookBridgeError, PathRefused, Retry, TransportError
from hookbridge.adapter import (
    Adapter,
    AdapterOptions,
    Option,
    connection_extra,
    positive_int,
    positive_seconds,
)

from ._connect import connect_ssh, default_ciphers, parse_ciphers
from ._links import Grant, Links, LinkStatistics
from ._local import GroupWriter
from ._paths import RemoteRoot, server_realpath
from ._translate import FOREIGN_ERRORS, RemoteFailure, is_transport_failure, translate

__all__ = ["SFTP_OPTIONS", "SFTPCore", "SFTPOptions", "Session"]

KiB = 1024
#: Defaults, chosen by contrib/bench/sftp_transfer.py on loopback (see the module docstring there).
DEFAULT_MAX_CONNECTIONS = 4
DEFAULT_MAX_REQUESTS_PER_CONNECTION = 128
DEFAULT_BLOCK_SIZE = 256 * KiB
DEFAULT_MAX_REQUESTS = 128
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 300.0
#: Longest the server may stay silent during an operation before it fails (see Session).
DEFAULT_OPERATION_TIMEOUT = 60.0
#: Longest a best-effort clean-up request (removing a temporary file) may take.
CLEANUP_TIMEOUT = 5.0
#: Longest closing one SSH connection may take: a server that stopped answering must not hold
#: a cancelled caller or the adapter's close for long.
DISPOSE_TIMEOUT = 3.0


def _parse_root(value: Any) -> str:
    try:
        root = RemoteRoot(value).root
    except PathRefused as exc:
        raise ValueError(str(exc)) from None
    if root is None:
        raise ValueError("must be an absolute server path such as '/data/incoming'.")
    return root


def _ciphers_spec(ciphers: tuple[str, ...]) -> list[str]:
    return list(ciphers)


SFTP_OPTIONS: tuple[Option[Any], ...] = (
    Option("root", _parse_root, doc="the server directory every path must stay in"),
    Option("max_connections", positive_int, default=DEFAULT_MAX_CONNECTIONS, section="pool"),
    Option(
        "max_requests_per_connection",
        positive_int,
        default=DEFAULT_MAX_REQUESTS_PER_CONNECTION,
        section="pool",
    ),
    Option("block_size", positive_int, default=DEFAULT_BLOCK_SIZE),
    Option("max_requests", positive_int, default=DEFAULT_MAX_REQUESTS),
    Option("connect_timeout", positive_seconds, default=DEFAULT_CONNECT_TIMEOUT, section="pool"),
    Option("idle_timeout", positive_seconds, default=DEFAULT_IDLE_TIMEOUT, section="pool"),
    Option("max_lifetime", positive_seconds, section="pool"),
    Option("ciphers", parse_ciphers, to_spec=_ciphers_spec),
    Option(
        "operation_timeout",
        positive_seconds,
        default=DEFAULT_OPERATION_TIMEOUT,
        doc="longest the server may stay silent during an operation",
    ),
)


class SFTPOptions(AdapterOptions, total=False):
    """The keyword arguments of :class:`~hookbridge.adapters.sftp.SFTPAdapter` (see its doc)."""

    root: str | None
    max_connections: int | None
    max_requests_per_connection: int | None
    block_size: int | None
    max_requests: int | None
    connect_timeout: float | None
    idle_timeout: float | None
    max_lifetime: float | None
    ciphers: str | Iterable[str] | None
    operation_timeout: float | None


class Watch:
    """An operation's timeout: a cancel scope whose deadline moves on as answers arrive."""

    __slots__ = ("scope", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.scope = anyio.CancelScope(deadline=anyio.current_time() + timeout)

    def tick(self) -> None:
        """The server answered: the silence starts again.

        Once per block of a transfer (a few microseconds: one timer re-armed), against the
        decryption and dispatch of the block's SSH packets.
        """
        self.scope.deadline = anyio.current_time() + self.timeout


class Session:
    """One attempt's request slots on a shared connection, and its timeout."""

    __slots__ = ("grant", "watch")

    def __init__(self, grant: Grant, watch: Watch) -> None:
        self.grant = grant
        self.watch = watch

    @property
    def sftp(self) -> asyncssh.SFTPClient:
        sftp: asyncssh.SFTPClient = self.grant.sftp
        return sftp


class SFTPCore(Adapter):
    """What every SFTP operation stands on; :class:`~.SFTPAdapter` adds the operations."""

    name: ClassVar[str] = "sftp"
    conn_types: ClassVar[tuple[str, ...]] = ("sftp",)
    asyncio_only: ClassVar[bool] = True
    declared_options = SFTP_OPTIONS
    foreign_errors = FOREIGN_ERRORS

    def __init__(self, conn_id: str, **options: Any) -> None:
        super().__init__(conn_id, **options)
        self._take_options()
        self._real_root: str | None = None
        self._links_or_none: Links | None = None
        self._writer = GroupWriter()
        self._secrets: tuple[str, ...] = ()
        self._server = ""

    def _take_options(self) -> None:
        """Keep the options in force where the operations read them, typed."""
        options = self.options
        self._root = RemoteRoot(options["root"])
        self._max_connections: int = options["max_connections"]
        self._capacity: int = options["max_requests_per_connection"]
        self._block_size: int = options["block_size"]
        self._max_requests: int = options["max_requests"]
        self._connect_timeout: float = options["connect_timeout"]
        self._operation_timeout: float = options["operation_timeout"]
        self._ciphers: tuple[str, ...] = options["ciphers"] or default_ciphers()

    # -- lifecycle -------------------------------------------------------------------------------

    async def _open(self) -> None:
        conn = await self._connection()
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
        self._take_options()  # again: the connection extra may have changed them
        options = self.options
        self._server = f"{getattr(conn, 'host', None)}:{getattr(conn, 'port', None) or 22}"
        self._links_or_none = Links(
            self._connect,
            max_connections=self._max_connections,
            capacity=self._capacity,
            idle_timeout=options["idle_timeout"],
            max_lifetime=options["max_lifetime"],
            dispose_timeout=DISPOSE_TIMEOUT,
            name=f"sftp:{self.conn_id}",
        )
        await self._links_or_none.open()
        # One connection now: a wrong host key or password shows at open, not at first use.
        await self.call(self._find_root)

    async def _find_root(self) -> None:
        async with self._session("open", None) as session:
            if self._root.root is not None:
                self._real_root = await server_realpath(session.sftp, self._root.root)

    async def _close(self) -> None:
        links, self._links_or_none = self._links_or_none, None
        if links is not None:
            await links.aclose()

    async def _connect(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        with anyio.move_on_after(self._connect_timeout) as scope:
            ssh = await connect_ssh(self.conn_id, self._ciphers)
        if scope.cancelled_caught:
            raise TimeoutError(
                f"no SSH connection to {self._server} within the connect_timeout of "
                f"{self._connect_timeout:g} s"
            )
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

    def _pool_statistics(self) -> LinkStatistics | None:
        return self._links_or_none.statistics() if self._links_or_none is not None else None

    def __repr__(self) -> str:
        root = f" root={self._root.root!r}" if self._root.root is not None else ""
        return f"<SFTPAdapter conn_id={self.conn_id!r}{root} state={self._state}>"

    # -- the error boundary ----------------------------------------------------------------------

    def _known_secrets(self) -> tuple[str, ...]:
        return self._secrets

    def _translate(self, exc: Exception, target: object) -> HookBridgeError:
        path = None if target is None else str(target)
        return translate(exc, conn_id=self.conn_id, path=path, secrets=self._secrets)

    @property
    def _read_retry(self) -> Retry:
        """The retry of idempotent reads: what the policy retries, and ``FX_FAILURE`` answers.

        ``FX_FAILURE`` is SFTP's unspecified server failure (its "500"): a read may well work on
        the next attempt, and repeating it changes nothing on the server. Writes keep the policy
        as it is, so a write the server failed is reported, never sent twice.
        """
        return self._derived_retry(_or_server_failure)

    # -- one attempt -----------------------------------------------------------------------------

    @contextmanager
    def _timed(self, op: str, path: str | None) -> Iterator[Watch]:
        """Fail with a TransportError naming ``op`` and ``path`` when the server goes silent."""
        watch = Watch(self._operation_timeout)
        with watch.scope:
            yield watch
        if watch.scope.cancelled_caught:
            where = f" of {path!r}" if path is not None else ""
            raise TransportError(
                f"{op}{where}: the SFTP server sent nothing for {watch.timeout:g} s (the "
                "operation_timeout); the connection was discarded. Raise operation_timeout if "
                f"the server is only slow. [conn_id {self.conn_id!r}]"
            )

    @asynccontextmanager
    async def _session(self, op: str, path: str | None, want: int = 1) -> AsyncIterator[Session]:
        """Book up to ``want`` request slots for one attempt of ``op``, under its timeout.

        Foreign errors pass through, for the engine's boundary to translate; a transport failure
        (or the timeout) marks the connection broken first. Only the adapter's own code runs
        inside: a caller's code never does, so its errors are never taken for the connection's.
        """
        async with self._checkout(want) as grant:
            with self._timed(op, path) as watch:
                yield Session(grant, watch)

    @asynccontextmanager
    async def _checkout(self, want: int = 1) -> AsyncIterator[Grant]:
        """A grant of ``want`` request slots, marked broken if a transport failure leaves it."""
        grant = await self._links.checkout(want)
        try:
            yield grant
        except Exception as exc:
            if is_transport_failure(exc):
                grant.broken = True
            raise
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

    @staticmethod
    async def _open_handle(grant: Grant, path: str, mode: str) -> asyncssh.SFTPClientFile:
        try:
            file: asyncssh.SFTPClientFile = await grant.sftp.open(path, mode, block_size=0)
        except BaseException as exc:
            if not isinstance(exc, Exception) or is_transport_failure(exc):
                # Interrupted with the request out: the answer may carry a handle that nobody
                # will close. Retiring the connection (once its other operations end) frees it
                # on the server, without holding a cancelled caller for the answer.
                grant.broken = True
            raise
        return file

    @staticmethod
    async def _close_handle(file: asyncssh.SFTPClientFile) -> None:
        # The close request leaves before the first await, so even a cancelled caller frees it;
        # the wait for its answer is bounded by the operation's timeout.
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


def _or_server_failure(
    base: Callable[[BaseException], bool],
) -> Callable[[BaseException], bool]:
    def retry_on(error: BaseException) -> bool:
        return isinstance(error, RemoteFailure) or base(error)

    return retry_on
