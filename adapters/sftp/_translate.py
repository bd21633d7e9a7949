"""The SFTP adapter's one error mapping: asyncssh and socket errors to hookbridge errors.

The adapter's ``_translate`` (applied by the call engine once per attempt) calls
:func:`translate`. Transport failures (the connection or its SFTP channel is gone or out of
step) become :class:`~hookbridge.TransportError`, which retries idempotent operations; the attempt
that saw one also marks its SSH connection broken (:func:`is_transport_failure`), so the pool
discards it. SFTP status answers (no such file, permission denied, ...) become
:class:`~hookbridge.RemoteError` and its subclasses, carrying the SFTP status code as ``code`` and
the remote path as ``target``, and leave the connection in use. Authentication and host-key
failures are configuration errors: retrying them cannot help. Messages go through
:func:`hookbridge.adapter.redact` with the connection's secrets.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncssh

from hookbridge import (
    AlreadyExists,
    ConfigurationError,
    HookBridgeError,
    NotFound,
    PermissionDenied,
    RemoteError,
    TransportError,
)
from hookbridge.adapter import redact

__all__ = [
    "FOREIGN_ERRORS",
    "FX_EOF",
    "RemoteFailure",
    "RemoteFileExists",
    "RemoteFileNotFound",
    "RemotePermissionDenied",
    "is_transport_failure",
    "translate",
]

#: What the adapter's error boundary translates. Cancellation is a BaseException and never
#: among them; local file errors are :class:`~._local.LocalFileError` (a hookbridge error), so a
#: full local disk passes through unchanged and never counts as a broken connection.
FOREIGN_ERRORS: tuple[type[BaseException], ...] = (asyncssh.Error, OSError, EOFError, TimeoutError)

#: SFTP status ``FX_EOF``: a file ended before the size it had when a transfer started.
FX_EOF = 1

# SFTP status codes that say the channel itself is unusable, not that one request failed.
_TRANSPORT_SFTP = (asyncssh.SFTPNoConnection, asyncssh.SFTPConnectionLost, asyncssh.SFTPBadMessage)


class RemoteFileNotFound(NotFound, FileNotFoundError):
    """The remote path does not exist (SFTP ``FX_NO_SUCH_FILE`` / ``FX_NO_SUCH_PATH``).

    Also a :class:`FileNotFoundError`, so ``except FileNotFoundError`` works as with local files.
    """


class RemotePermissionDenied(PermissionDenied, PermissionError):
    """The server refused the operation on this path (SFTP ``FX_PERMISSION_DENIED``)."""


class RemoteFailure(RemoteError):
    """The server answered ``FX_FAILURE``: an error with no more specific SFTP status.

    SFTP's "500": OpenSSH's sftp-server answers it for every errno it does not map (EIO, a full
    disk, ...) and, in protocol version 3, for an exclusive create of an existing file. Idempotent
    reads (``read_bytes``, ``stat``, ``exists``, downloads, the whole-directory listings of tree
    transfers) retry it as the adapter's retry policy retries transport errors; writes, streams
    and streamed listings never do.
    """


class RemoteFileExists(AlreadyExists, FileExistsError):
    """The remote path already exists (SFTP ``FX_FILE_ALREADY_EXISTS``)."""


def is_transport_failure(exc: BaseException) -> bool:
    """Whether an error means the SSH connection can no longer be trusted."""
    if isinstance(exc, HookBridgeError):
        return isinstance(exc, TransportError)
    if isinstance(exc, asyncssh.SFTPError):
        return isinstance(exc, _TRANSPORT_SFTP)
    if isinstance(exc, (asyncssh.DisconnectError, asyncssh.ChannelOpenError)):
        return True
    # socket errors, timeouts, a closed transport (BrokenPipe, ConnectionReset, EOF)
    return isinstance(exc, (OSError, EOFError, TimeoutError))


def translate(
    exc: BaseException,
    *,
    conn_id: str,
    path: str | None = None,
    secrets: Iterable[str | None] = (),
) -> HookBridgeError:
    """The hookbridge error for a foreign one (one of :data:`FOREIGN_ERRORS`)."""
    if isinstance(exc, HookBridgeError):
        return exc
    secrets = tuple(secrets)
    where = f" ({redact(path, secrets)!r})" if path is not None else ""

    def text(value: object) -> str:
        return redact(str(value), secrets)

    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return ConfigurationError(
            f"the SFTP server's host key was not verified: {text(exc.reason)}. Give the "
            "connection extra 'host_key' (the server's public key line, e.g. 'ssh-ed25519 "
            "AAAA...'), or a 'known_hosts' file that lists it; 'no_host_key_check': true turns "
            "the check off and leaves the connection open to a man-in-the-middle.",
            conn_id=conn_id,
            field="extra.host_key",
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return ConfigurationError(
            f"the SFTP server refused the login: {text(exc.reason)}. Check the connection's "
            "login and password, or its key_file / private_key (and passphrase).",
            conn_id=conn_id,
            field="login",
        )
    if isinstance(exc, asyncssh.SFTPError):
        if isinstance(exc, _TRANSPORT_SFTP):
            return TransportError(
                f"the SFTP channel failed{where}: {type(exc).__name__}: {text(exc.reason)}. "
                f"The connection was discarded. [conn_id {conn_id!r}]"
            )
        cls: type[RemoteError] = RemoteError
        if isinstance(exc, (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath)):
            cls = RemoteFileNotFound
        elif isinstance(exc, asyncssh.SFTPPermissionDenied):
            cls = RemotePermissionDenied
        elif isinstance(exc, asyncssh.SFTPFileAlreadyExists):
            cls = RemoteFileExists
        elif isinstance(exc, asyncssh.SFTPFailure):
            cls = RemoteFailure
        reason = text(exc.reason) or type(exc).__name__
        return cls(
            f"SFTP server answered {type(exc).__name__} (status {exc.code}){where}: {reason} "
            f"[conn_id {conn_id!r}]",
            code=int(exc.code),
            target=path,
        )
    if isinstance(exc, asyncssh.DisconnectError):
        return TransportError(
            f"the SSH connection was closed{where}: {type(exc).__name__}: {text(exc.reason)} "
            f"[conn_id {conn_id!r}]"
        )
    if isinstance(exc, asyncssh.ChannelOpenError):
        return TransportError(
            f"the server refused to open an SFTP channel{where}: {text(exc.reason)} "
            f"[conn_id {conn_id!r}]"
        )
    if isinstance(exc, TimeoutError):
        detail = text(exc) or "no answer within the timeout"
        return TransportError(
            f"the SFTP server did not answer{where}: {detail} [conn_id {conn_id!r}]"
        )
    detail = text(exc) or type(exc).__name__
    return TransportError(
        f"the SSH connection failed{where}: {type(exc).__name__}: {detail} [conn_id {conn_id!r}]"
    )
