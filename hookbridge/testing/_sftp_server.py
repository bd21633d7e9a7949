"""An in-process SSH/SFTP server on 127.0.0.1 (asyncssh) serving a temporary root, for tests.

The server is asyncio-only because asyncssh is. It authenticates one user by password or by a
generated client key, verifies itself with a generated Ed25519 host key, jails every SFTP session
in ``root`` (asyncssh's ``chroot``), and can drop connections on demand so that adapter tests can
exercise retries and clean-up against a real SSH stack instead of patched calls.

Symbolic links and the chroot (asyncssh 2.24 ``SFTPServer`` semantics, which this server keeps):

* ``map_path`` only joins the normalised client path under the root, so ``..`` never leaves the
  root; but the operating system follows a link that already exists inside the root, wherever it
  points. ``stat``, ``open`` and ``read`` of a link to a file outside the root succeed and serve
  that file, ``listdir`` of a link to a directory outside lists it; ``lstat`` reports the link.
* ``realpath`` of such a link resolves on the server's disk and then fails the reverse mapping:
  the client gets ``SFTPNoSuchFile`` ("File not found"). ``readlink`` of a link whose target is an
  absolute path outside the root fails the same way; an absolute target inside the root is answered
  as a client path (``/dir/file``).
* ``readlink`` of a *relative* target is resolved against the server process's working directory,
  not against the link's directory (an asyncssh quirk): do not rely on its answer; use ``realpath``.
* Creating a link through SFTP to a target outside the root is refused by asyncssh; use
  :meth:`SFTPTestServer.make_symlink` to put such a link on the disk.

Run ``python -m hookbridge.testing._sftp_server --root DIR [--port 0]`` to serve from its own
process (benchmarks): it prints one JSON line with host, port, user, password, host_key and
client_key_path, then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import anyio
import asyncssh

from . import _sftp_files
from ._serve import argument_parser, serve_until_signalled

__all__ = ["SFTPServerStatistics", "SFTPTestServer"]

_DEFAULT_WAIT = 10.0


@dataclass(frozen=True)
class SFTPServerStatistics:
    """A snapshot of what the server holds and has done since it started."""

    connections: int  # live SSH connections (from TCP accept, before authentication)
    open_channels: int  # live SFTP sessions
    connections_total: int
    channels_total: int
    bytes_read: int  # file data returned by read requests
    drops: int  # connections aborted by drop_connections or drop_after_bytes


class _Connection(asyncssh.SSHServer):
    """Per-connection protocol object: tracks the connection and checks credentials."""

    def __init__(self, owner: SFTPTestServer) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._owner._connection_made(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner._connection_lost(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # always require authentication

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        # compare_digest on both so a wrong user and a wrong password take the same path
        user_ok = hmac.compare_digest(username.encode(), self._owner.user.encode())
        password_ok = hmac.compare_digest(password.encode(), self._owner.password.encode())
        return user_ok and password_ok

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._owner.user and key.public_data == self._owner._client_public_data


class _Session(asyncssh.SFTPServer):
    """One SFTP session jailed in the root; counts file bytes served, for the drop trigger."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], owner: SFTPTestServer) -> None:
        super().__init__(chan, chroot=os.fsencode(owner.root))
        self._owner = owner
        self._exited = False
        self.dropped = False  # set when the test server aborts this session's connection
        # Kept: asyncssh forgets a channel's connection once the channel closes.
        self.conn = cast(asyncssh.SSHServerConnection, chan.get_connection())
        owner._channel_opened(self)

    def read(self, file_obj: object, offset: int, size: int) -> bytes | Awaitable[bytes]:
        if self._owner.read_delay:
            return self._read_later(file_obj, offset, size, self._owner.read_delay)
        return self._read_now(file_obj, offset, size)

    async def _read_later(self, file_obj: object, offset: int, size: int, delay: float) -> bytes:
        await asyncio.sleep(delay)
        return self._read_now(file_obj, offset, size)

    def _read_now(self, file_obj: object, offset: int, size: int) -> bytes:
        if self.dropped:
            # A client pipelines many reads; asyncssh keeps processing the ones it already
            # received after an abort. Answer them without disk I/O or counting: nobody gets them.
            raise asyncssh.SFTPConnectionLost("connection dropped by the test server")
        result = super().read(file_obj, offset, size)
        assert isinstance(result, bytes)  # the base class reads synchronously
        self._owner._served(self, len(result))
        return result

    def exit(self) -> None:
        if not self._exited:
            self._exited = True
            self._owner._channel_closed(self)


_State = Literal["new", "serving", "closed"]


def _transport(conn: asyncssh.SSHServerConnection) -> asyncio.Transport:
    # asyncssh offers no public way to stop reading; its connection is an asyncio Protocol and
    # keeps the transport it was given in connection_made.
    transport = conn._transport
    assert transport is not None  # set before connection_made reaches the server object
    return transport


class SFTPTestServer:
    """A real SSH/SFTP server on 127.0.0.1, on a random port, serving ``root`` as "/".

    ``async with SFTPTestServer(root=tmp_path) as server:`` starts it and, on exit, closes every
    connection and waits for them. Keys are generated per instance: ``host_key_line`` is what an
    Airflow sftp connection takes as extra ``host_key``; ``client_key_path`` is an OpenSSH private
    key (no passphrase) that the server accepts for ``user``. ``ciphers`` narrows the SSH ciphers
    the server accepts (asyncssh's defaults when None), to test a client's negotiation.
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike[str],
        user: str = "user",
        password: str = "hookbridge-test-secret",
        host: str = "127.0.0.1",
        port: int = 0,
        ciphers: Sequence[str] | None = None,
    ) -> None:
        root_path = Path(root)
        if not root_path.is_dir():
            raise ValueError(f"SFTP root {str(root_path)!r} is not a directory: create it first")
        self.root = root_path.resolve()
        self.user = user
        self.password = password
        self.host = host
        self._requested_port = port
        self._ciphers = list(ciphers) if ciphers is not None else ()
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._client_key = asyncssh.generate_private_key("ssh-ed25519")
        self._client_public_data = self._client_key.public_data
        self.host_key_line: str = self._host_key.export_public_key("openssh").decode().strip()
        """``ssh-ed25519 AAAA...``: the value for the Airflow connection extra ``host_key``."""

        self._state: _State = "new"
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._key_dir: str | None = None
        self._port: int | None = None
        self._conns: set[asyncssh.SSHServerConnection] = set()
        self._sessions: set[_Session] = set()
        self._connections_total = 0
        self._channels_total = 0
        self._bytes_read = 0
        self._drops = 0
        self._drop_at: int | None = None  # bytes_read value at which the armed trigger fires
        self._stalled = False
        #: Seconds each read request waits before it is answered (0: at once). A slow server
        #: that keeps answering, as opposed to ``stall()``.
        self.read_delay = 0.0
        self._changed: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Write the client key and start listening. ``async with`` calls it."""
        if self._state != "new":
            raise RuntimeError(f"SFTPTestServer is {self._state}: create a new one to serve again")
        self._state = "serving"
        self._key_dir = tempfile.mkdtemp(prefix="hookbridge-sftp-keys-")
        try:
            self._client_key.write_private_key(self.client_key_path, "openssh")
            os.chmod(self.client_key_path, 0o600)
            self._acceptor = await asyncssh.listen(
                self.host,
                self._requested_port,
                server_factory=lambda: _Connection(self),
                server_host_keys=[self._host_key],
                sftp_factory=self._session_for,
                allow_scp=False,
                # no ~/.ssh/authorized_keys or sshd_config of the user running the tests
                authorized_client_keys=None,
                config=None,
                encryption_algs=self._ciphers,
            )
            self._port = self._acceptor.get_port()
        except BaseException:
            self._state = "closed"
            self._remove_key_dir()
            raise

    def _session_for(self, chan: asyncssh.SSHServerChannel[bytes]) -> _Session:
        # A subclass serves its own sessions (the fault storm: _sftp_storm).
        return _Session(chan, self)

    def close(self) -> None:
        """Stop listening and disconnect every live connection; then await ``wait_closed``."""
        if self._state == "new":
            self._state = "closed"
            return
        self._state = "closed"
        self.resume()  # a stalled connection would not finish its close
        if self._acceptor is not None:
            self._acceptor.close()
        for conn in list(self._conns):
            conn.close()

    async def wait_closed(self) -> None:
        """Wait until the listener and every connection are closed; remove the key directory."""
        try:
            if self._acceptor is not None:
                await self._acceptor.wait_closed()
            for conn in list(self._conns):
                await conn.wait_closed()
        finally:
            self._remove_key_dir()

    async def aclose(self) -> None:
        self.close()
        await self.wait_closed()

    async def __aenter__(self) -> SFTPTestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        # Shielded so a cancelled test still leaves no connection behind; bounded in time.
        with anyio.move_on_after(_DEFAULT_WAIT, shield=True):
            await self.wait_closed()

    def _remove_key_dir(self) -> None:
        if self._key_dir is not None:
            shutil.rmtree(self._key_dir, ignore_errors=True)
            self._key_dir = None

    # -- addresses and credentials -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("SFTPTestServer has no port yet: use it inside `async with`")
        return self._port

    @property
    def client_key_path(self) -> Path:
        """OpenSSH private key (no passphrase) accepted for ``user``; removed when closed."""
        if self._key_dir is None:
            raise RuntimeError("the client key is written on start and removed on close")
        return Path(self._key_dir) / "id_ed25519"

    @property
    def client_public_key_line(self) -> str:
        return self._client_key.export_public_key("openssh").decode().strip()

    @property
    def known_hosts_line(self) -> str:
        """A known_hosts line for this host and port, for raw asyncssh/OpenSSH clients."""
        return f"[{self.host}]:{self.port} {self.host_key_line}"

    def airflow_connection(
        self, *, auth: Literal["password", "key"] = "password"
    ) -> dict[str, Any]:
        """An Airflow sftp connection (the JSON form of ``AIRFLOW_CONN_<ID>``) for this server."""
        extra: dict[str, Any] = {"host_key": self.host_key_line}
        conn: dict[str, Any] = {
            "conn_type": "sftp",
            "host": self.host,
            "port": self.port,
            "login": self.user,
        }
        if auth == "password":
            conn["password"] = self.password
        else:
            extra["key_file"] = str(self.client_key_path)
        conn["extra"] = extra
        return conn

    # -- statistics --------------------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    @property
    def open_channels(self) -> int:
        return len(self._sessions)

    def statistics(self) -> SFTPServerStatistics:
        return SFTPServerStatistics(
            connections=len(self._conns),
            open_channels=len(self._sessions),
            connections_total=self._connections_total,
            channels_total=self._channels_total,
            bytes_read=self._bytes_read,
            drops=self._drops,
        )

    async def wait_for(
        self, predicate: Callable[[SFTPServerStatistics], bool]
    ) -> SFTPServerStatistics:
        """Wait until ``predicate(statistics())`` holds; re-checked on every change of state.

        The server sees a client's disconnect a moment after the client's ``wait_closed``
        returns: ``await server.wait_for(lambda s: s.connections == 0)`` instead of sleeping.
        Bound the wait with ``anyio.fail_after``.
        """
        while not predicate(stats := self.statistics()):
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
        return stats

    async def wait_idle(self) -> None:
        """Wait until no connection and no SFTP session is left (bound it with fail_after)."""
        await self.wait_for(lambda s: s.connections == 0 and s.open_channels == 0)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # -- dropping connections ----------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Abort every live connection at once (no SSH disconnect message); return how many."""
        conns = list(self._conns)
        for conn in conns:
            self._abort(conn)
        return len(conns)

    def drop_after_bytes(self, n: int) -> None:
        """Arm a one-shot trigger: abort the connection that serves the n-th byte of file data.

        Bytes are counted from now, over all connections. The read request that takes the count
        to ``n`` or more aborts its connection and its data is not delivered, so the client
        receives fewer than ``n`` bytes in all. The trigger then disarms, so a retry on a new
        connection succeeds. Arming again replaces a pending trigger.

        The granularity is one read request: asyncssh's own ``SFTPClient.get`` asks this server
        for up to 4 MiB per request (``SFTPHookAsync.retrieve_file``: 64 KiB). Note that a
        dropped ``SFTPClient.get`` also leaves "Task exception was never retrieved" log records
        from asyncssh's parallel reader; sequential ``SFTPClientFile.read`` calls do not.
        """
        if n < 1:
            raise ValueError(f"drop_after_bytes needs n >= 1, got {n}")
        self._drop_at = self._bytes_read + n

    # -- a server that stops answering ------------------------------------------------------------

    def stall(self) -> None:
        """Stop reading from every connection, and from new ones as they come: no more answers.

        As a stopped server process looks to a client: connections stay open and TCP still
        accepts, but nothing is read or answered (new connections get no further than the SSH
        greeting). ``resume()`` lets everything go on where it stopped.
        """
        self._stalled = True
        for conn in self._conns:
            _transport(conn).pause_reading()

    def resume(self) -> None:
        """Undo ``stall()``: read and answer again."""
        if self._stalled:
            self._stalled = False
            for conn in self._conns:
                transport = _transport(conn)
                if not transport.is_closing():
                    transport.resume_reading()

    @property
    def stalled(self) -> bool:
        return self._stalled

    def _served(self, session: _Session, nbytes: int) -> None:
        self._bytes_read += nbytes
        if self._drop_at is not None and self._bytes_read >= self._drop_at:
            self._drop_at = None
            # The reply to this read is then discarded: asyncssh skips writes on a closing channel.
            self._abort(session.conn)
        self._notify()

    def _abort(self, conn: asyncssh.SSHServerConnection) -> None:
        self._drops += 1
        for session in self._sessions:
            if session.conn is conn:
                session.dropped = True
        conn.abort()

    # -- tracking (called by _Connection and _Session) ---------------------------------------------

    def _connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        if self._stalled:
            _transport(conn).pause_reading()
        self._conns.add(conn)
        self._connections_total += 1
        self._notify()

    def _connection_lost(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conns.discard(conn)
        # asyncssh never calls exit() on a session whose connection died before the SFTP init
        # packet: close the connection's sessions here so that the count returns to zero.
        for session in [s for s in self._sessions if s.channel.get_connection() is conn]:
            session.exit()
        self._notify()

    def _channel_opened(self, session: _Session) -> None:
        self._sessions.add(session)
        self._channels_total += 1
        self._notify()

    def _channel_closed(self, session: _Session) -> None:
        self._sessions.discard(session)
        self._notify()

    # -- the served tree ---------------------------------------------------------------------------

    def local_path(self, path: str | os.PathLike[str]) -> Path:
        """The disk path of a client path ("/a/b" or "a/b"), which must stay inside the root."""
        candidate = (self.root / os.fspath(path).lstrip("/")).resolve(strict=False)
        if candidate != self.root and self.root not in candidate.parents:
            raise ValueError(f"{os.fspath(path)!r} is outside the SFTP root {str(self.root)!r}")
        return candidate

    def make_symlink(self, link: str, target: str | os.PathLike[str]) -> Path:
        """Create a real symlink at client path ``link`` pointing at ``target`` (written verbatim).

        ``target`` may lie outside the root (see the module docstring for what the server then
        answers). Parent directories of the link are created. Returns the link's disk path.
        """
        # normpath (not resolve): the link itself must not be followed, only ".." folded
        link_path = Path(os.path.normpath(self.root / link.lstrip("/")))
        if self.root not in link_path.parents:
            raise ValueError(f"link {link!r} must be inside the SFTP root")
        link_path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.fspath(target), link_path)
        return link_path

    def populate_small(
        self, dir: str = "small", count: int = 1000, size: int = 10 * 1024
    ) -> list[str]:
        """See :func:`populate_small`; paths are relative to the root (client path: "/" + it)."""
        return _sftp_files.populate_small(self.root, dir, count, size)

    def populate_tree(
        self,
        dir: str = "tree",
        depth: int = 4,
        fanout: int = 3,
        files_per_dir: int = 3,
        size: int = 1024,
    ) -> list[str]:
        """See :func:`populate_tree`."""
        return _sftp_files.populate_tree(self.root, dir, depth, fanout, files_per_dir, size)

    def populate_large(self, name: str = "large.bin", size: int = 200 * 1024 * 1024) -> str:
        """See :func:`populate_large`. Blocking disk I/O: from a test, consider a worker thread."""
        return _sftp_files.populate_large(self.root, name, size)

    def sha256_of(self, path: str | os.PathLike[str]) -> str:
        """Hex SHA-256 of the file at a client path (relative to the root)."""
        return _sftp_files.sha256_of(self.local_path(path))


# --- own process ----------------------------------------------------------------------------------


def _print_address(server: SFTPTestServer) -> None:
    info = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "host_key": server.host_key_line,
        "client_key_path": str(server.client_key_path),
    }
    print(json.dumps(info), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argument_parser("_sftp_server", "Serve DIR over SFTP until SIGTERM or SIGINT.")
    parser.add_argument("--root", required=True, help="directory served as '/'")
    parser.add_argument("--user", default="user")
    parser.add_argument("--password", default="hookbridge-test-secret")
    server = SFTPTestServer(**vars(parser.parse_args(argv)))  # the options are the server's
    asyncio.run(serve_until_signalled(server, _print_address))


if __name__ == "__main__":
    main()
