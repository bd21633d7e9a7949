"""The SFTP adapter's one error boundary: asyncssh and socket errors to hookbridge errors.

Transport failures (the connection or its SFTP channel is gone or out of step) become
:class:`~hookbridge.TransportError`, which retries idempotent operations and makes the pool
discard the connection. SFTP status answers (no such file, permission denied, ...) become
:class:`~hookbridge.RemoteStatusError` subclasses carrying the SFTP status code, and leave the
connection in use. Authentication and host-key failures are configuration errors: retrying them
cannot help. Messages go through :func:`hookbridge.redact` with the connection's secrets.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncssh

from hookbridge import (
    ConfigurationError,
    HookBridgeError,
    RemoteStatusError,
    TransportError,
)
from hookbridge._errors import redact

__all__ = [
    "RemoteFileExists",
    "RemoteFileNotFound",
    "RemotePermissionDenied",
    "is_transport_failure",
    "mark_local",
    "translate",
]

# SFTP status codes that say the channel itself is unusable, not that one request failed.
_TRANSPORT_SFTP = (asyncssh.SFTPNoConnection, asyncssh.SFTPConnectionLost, asyncssh.SFTPBadMessage)


class RemoteFileNotFound(RemoteStatusError, FileNotFoundError):
    """The remote path does not exist (SFTP ``FX_NO_SUCH_FILE`` / ``FX_NO_SUCH_PATH``).

    Also a :class:`FileNotFoundError`, so ``except FileNotFoundError`` works as with local files.
    """


class RemotePermissionDenied(RemoteStatusError, PermissionError):
    """The server refused the operation on this path (SFTP ``FX_PERMISSION_DENIED``)."""


class RemoteFileExists(RemoteStatusError, FileExistsError):
    """The remote path already exists (SFTP ``FX_FILE_ALREADY_EXISTS``)."""


def mark_local(exc: OSError) -> OSError:
    """Tag an error of local file I/O so that the boundary passes it through unchanged.

    A full local disk is not a broken SSH connection: it must not be retried or discard one.
    """
    exc.hookbridge_local = True  # type: ignore[attr-defined]
    return exc


def _is_local(exc: BaseException) -> bool:
    return bool(getattr(exc, "hookbridge_local", False))


def is_transport_failure(exc: BaseException) -> bool:
    """Whether a foreign error means the SSH connection can no longer be trusted."""
    if _is_local(exc):
        return False
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
) -> BaseException:
    """Return the hookbridge error for a foreign one, or ``exc`` itself when it is not foreign.

    Cancellation, hookbridge errors and programming errors (``TypeError`` ...) pass unchanged.
    """
    if isinstance(exc, HookBridgeError) or not isinstance(exc, Exception) or _is_local(exc):
        return exc
    secrets = tuple(secrets)
    where = f" ({path!r})" if path is not None else ""

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
    if isinstance(exc, asyncssh.KeyImportError):
        return ConfigurationError(
            f"the connection's private key could not be read: {text(exc)}. Check key_file / "
            "private_key and the passphrase.",
            conn_id=conn_id,
            field="extra.private_key",
        )
    if isinstance(exc, asyncssh.SFTPError):
        if isinstance(exc, _TRANSPORT_SFTP):
            return TransportError(
                f"the SFTP channel failed{where}: {type(exc).__name__}: {text(exc.reason)}. "
                f"The connection was discarded. [conn_id {conn_id!r}]"
            )
        cls: type[RemoteStatusError] = RemoteStatusError
        if isinstance(exc, (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath)):
            cls = RemoteFileNotFound
        elif isinstance(exc, asyncssh.SFTPPermissionDenied):
            cls = RemotePermissionDenied
        elif isinstance(exc, asyncssh.SFTPFileAlreadyExists):
            cls = RemoteFileExists
        reason = text(exc.reason) or type(exc).__name__
        return cls(
            f"SFTP server answered {type(exc).__name__} (status {exc.code}){where}: {reason} "
            f"[conn_id {conn_id!r}]",
            status=int(exc.code),
            url=path,
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
    if isinstance(exc, (OSError, EOFError, TimeoutError)):
        detail = text(exc) or type(exc).__name__
        return TransportError(
            f"the SSH connection failed{where}: {type(exc).__name__}: {detail} "
            f"[conn_id {conn_id!r}]"
        )
    if isinstance(exc, ValueError) and "host_key" in str(exc).lower():
        # SFTPHookAsync refuses contradictory host key settings with a bare ValueError.
        return ConfigurationError(text(exc), conn_id=conn_id, field="extra.no_host_key_check")
    return exc
