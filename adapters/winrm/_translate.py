"""The WinRM adapter's one error boundary: pywinrm, requests and Airflow errors to hookbridge's.

A rejected login is :class:`WinRMAuthenticationError` (not retried); a WS-Management fault is a
:class:`~hookbridge.RemoteError` carrying the server's WSManFault code (the shell quota has its
own class); a refused or broken HTTP connection is a :class:`~hookbridge.TransportError` (retried
where the operation is safe to repeat, and it makes the pool drop the shell's session).

Which failures prove that the server did nothing matters, because a command is not safe to send
twice: a connection that could not be made is :class:`~hookbridge.ConnectFailed`, while one that
broke after the request went out is a plain ``TransportError`` (the server may have acted on it).
HTTP 503 without a SOAP body is what HTTP.sys answers when WinRM's request queue is full, before
WinRM sees the request: :class:`~hookbridge.Throttled`. A SOAP fault the server blames on itself
(``s:Receiver``) is a :class:`ServerFault`, an HTTP-5xx status error that a policy may retry; one
it blames on the request (``s:Sender``) stays a plain ``RemoteError``. An answer that is not a
WS-Management message pywinrm or the adapter can read (not XML, not base64, an element missing)
is :class:`~hookbridge.MalformedResponse`.
"""

from __future__ import annotations

import binascii
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import requests
import urllib3.exceptions
from winrm.exceptions import (
    AuthenticationError,
    WinRMError,
    WinRMTransportError,
    WSManFaultError,
)

from hookbridge import (
    ConfigurationError,
    ConnectFailed,
    HookBridgeError,
    MalformedResponse,
    RemoteError,
    Throttled,
    TransportError,
)
from hookbridge.adapter import excerpt, redact

from ._results import ServerFault, ShellQuotaExceeded, WinRMAuthenticationError

__all__ = ["FOREIGN_ERRORS", "QUOTA_MAX_SHELLS", "UnreadableAnswer", "read_answer", "translate"]

QUOTA_MAX_SHELLS = 2150859173  # ERROR_WSMAN_QUOTA_MAX_SHELLS
T = TypeVar("T")
# Receiver faults that a second attempt cannot cure: the quota (its own class), a Receive
# aborted by our own terminate, and a parameter the server cannot use.
_PERMANENT_FAULTS = frozenset({QUOTA_MAX_SHELLS, 995, 87})


class UnreadableAnswer(Exception):
    """The server's answer could not be read as WS-Management (raised on the worker thread)."""


# What pywinrm's parsing of an answer raises on a hostile one: ElementTree's ParseError, base64's
# binascii.Error, int() of a non-number, a missing attribute (KeyError) or element (StopIteration
# from next()), a failed RelatesTo assert, non-ASCII base64 text (UnicodeError, a ValueError).
_PARSE_ERRORS = (
    ET.ParseError,
    binascii.Error,
    ValueError,
    KeyError,
    IndexError,
    StopIteration,
    AssertionError,
    AttributeError,
    TypeError,
)


def read_answer(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args)``, a pywinrm Protocol call, with its parse errors as :class:`UnreadableAnswer`.

    On the worker thread: a StopIteration must not reach the event loop's future, and only here
    is it known that the error came from reading the server's answer (a Protocol method sends the
    request and parses what came back; requests' and pywinrm's own errors pass through).
    """
    try:
        return fn(*args, **kwargs)
    except _PARSE_ERRORS as exc:
        raise UnreadableAnswer(f"{type(exc).__name__}: {exc}") from None


FOREIGN_ERRORS: tuple[type[BaseException], ...] = (
    UnreadableAnswer,
    WinRMError,
    WinRMTransportError,
    requests.RequestException,
    OSError,
    TimeoutError,
)


def translate(
    exc: Exception, target: object, *, conn_id: str, endpoint: str, secrets: Iterable[str | None]
) -> HookBridgeError:
    """The hookbridge error for ``exc``, raised while doing ``target`` (a command, "open shell")."""
    secrets = tuple(secrets)
    what = redact(str(target), secrets) if target is not None else "the request"
    where = f"conn_id {conn_id!r} ({endpoint})"
    if isinstance(exc, AuthenticationError):
        return WinRMAuthenticationError(
            f"{where}: the server rejected the credentials (HTTP 401). Check the connection's "
            "login and password, and that the endpoint allows this transport (Basic auth needs "
            "winrm/config/service/auth Basic=true and, over http, AllowUnencrypted=true).",
            code=401,
            target=endpoint,
        )
    if isinstance(exc, WSManFaultError):
        reason = redact(exc.reason or "", secrets)
        code = exc.wsman_fault_code
        if code == QUOTA_MAX_SHELLS:
            return ShellQuotaExceeded(
                f"{where}: the server refused a new shell: {reason.strip()} Lower max_shells or "
                "raise MaxShellsPerUser on the server.",
                code=code,
                target=what,
            )
        message = (
            f"{where}: {what} failed with WSManFault {code} (HTTP {exc.code}): {reason.strip()}"
        )
        if (
            (exc.fault_code or "").endswith("Receiver")
            and exc.code >= 500
            and code not in _PERMANENT_FAULTS
        ):
            return ServerFault(message, status=exc.code, fault_code=code, target=what)
        return RemoteError(message, code=code, target=what)
    if isinstance(exc, UnreadableAnswer):
        return MalformedResponse(
            f"{where}: {what}: the server's answer is not a WS-Management message that can be "
            f"read ({excerpt(redact(str(exc), secrets))})"
        )
    if isinstance(exc, WinRMTransportError):
        body = excerpt(redact(exc.response_text or "", secrets))
        if exc.code == 503:
            # HTTP.sys's queue is full: the request never reached WinRM (nothing was done).
            return Throttled(
                f"{where}: {what} got HTTP 503 (the server is overloaded): {body}",
                status=503,
                retry_after=None,
                url=endpoint,
            )
        if exc.code >= 500:
            return TransportError(f"{where}: {what} got HTTP {exc.code} from the server: {body}")
        return RemoteError(
            f"{where}: {what} got HTTP {exc.code} from the server.",
            code=exc.code,
            target=what,
            body_excerpt=body,
        )
    detail = redact(str(exc) or type(exc).__name__, secrets)
    if isinstance(exc, requests.ConnectionError) and not isinstance(
        exc, requests.exceptions.ReadTimeout
    ):
        if isinstance(exc, requests.exceptions.SSLError):
            return ConfigurationError(
                f"{where}: the TLS handshake failed ({detail}). Set the connection extra's "
                "ca_trust_path to the server's CA, or server_cert_validation to 'ignore'.",
                conn_id=conn_id,
            )
        if _never_connected(exc):
            return ConnectFailed(f"{where}: cannot reach the WinRM endpoint: {detail}")
        # Sent, then the connection broke: the server may have acted on the request.
        return TransportError(f"{where}: {what}: the connection broke: {detail}")
    if isinstance(exc, (requests.Timeout, TimeoutError)):
        return TransportError(
            f"{where}: {what}: no answer within read_timeout_sec ({detail}). Raise the "
            "connection extra's read_timeout_sec (it must exceed operation_timeout_sec)."
        )
    if isinstance(exc, WinRMError):  # pywinrm's own checks: settings it cannot use
        return ConfigurationError(f"{where}: {detail}", conn_id=conn_id)
    return TransportError(f"{where}: {what}: {type(exc).__name__}: {detail}")


def _never_connected(exc: requests.ConnectionError) -> bool:
    """Whether the connection was never made (refused, unreachable, connect timeout).

    requests wraps those in urllib3's MaxRetryError with a NewConnectionError (a ConnectTimeout
    error is one) as its reason; a drop after the request went out is a ProtocolError instead.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(reason, urllib3.exceptions.NewConnectionError)
