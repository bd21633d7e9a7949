"""The one boundary where aiohttp's errors and HTTP error statuses become hookbridge errors."""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import aiohttp
from multidict import CIMultiDictProxy

from hookbridge import (
    ConfigurationError,
    ConnectFailed,
    HookBridgeError,
    RemoteStatusError,
    Throttled,
    TransportError,
    parse_retry_after,
)
from hookbridge.adapter import excerpt, redact

__all__ = [
    "FOREIGN_ERRORS",
    "status_error",
    "translate_error",
    "translating",
]

#: What the request path catches and hands to :func:`translate_error`. Cancellation is a
#: BaseException and never appears here; ``TimeoutError`` covers aiohttp's total timeout.
FOREIGN_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)


def translate_error(
    exc: BaseException,
    method: str,
    url: str,
    secrets: Sequence[str | None] = (),
    *,
    redirected_from: str | None = None,
) -> HookBridgeError:
    """Return the hookbridge error for a foreign one; the caller raises it ``from exc``.

    ``redirected_from`` is the URL that was asked for when ``url`` is where its redirects led:
    a failure there is the redirect target's, not the connection's.
    """
    if isinstance(exc, HookBridgeError):
        return exc
    where = f"{method} {redact(url, secrets)}"
    if redirected_from is not None:
        where += f" (redirected from {redact(redirected_from, secrets)})"
    detail = redact(str(exc) or type(exc).__name__, secrets)
    https = url[:8].lower() == "https://"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return TransportError(
            f"{where}: the server's TLS certificate was not accepted ({detail}). Give the "
            "connection's extra a CA bundle or verify settings that trust it."
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        if https:
            return ConnectFailed(
                f"{where}: timed out connecting: the TCP connection or its TLS handshake got no "
                f"answer ({detail}). A port that speaks plain HTTP never answers the TLS "
                "handshake: check the connection's schema (http or https) and port; otherwise "
                "check that the host is reachable, or raise the connect timeout."
            )
        return ConnectFailed(
            f"{where}: timed out connecting ({detail}). Check that the host is reachable, or "
            "raise the connect timeout."
        )
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return ConnectFailed(
            f"{where}: the TLS handshake failed ({detail}). Check that the port speaks TLS (an "
            "https connection to a plain-HTTP port fails so) and the connection's schema."
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        peer = f"{exc.host}:{exc.port}"
        if redirected_from is not None:
            hint = (
                "That is where the server's redirect (its Location header) pointed, not the "
                "connection's own host: fix the redirect's target on the server, or turn "
                "redirects off with the connection extra's allow_redirects."
            )
        else:
            hint = "Check the connection's host and port, and that the server is running."
        return ConnectFailed(f"{where}: cannot connect to {peer} ({detail}). {hint}")
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return ConfigurationError(
            f"{where}: not a usable http(s) URL ({detail}). Check the connection's host/schema "
            "and the endpoint.",
            field="endpoint",
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        return RemoteStatusError(
            f"{where}: the response was not usable ({detail}).", status=exc.status, url=url
        )
    if isinstance(exc, (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError)):
        return TransportError(
            f"{where}: the server stopped sending ({detail}). Raise the timeout's sock_read, "
            "or check the server."
        )
    if isinstance(exc, TimeoutError):
        tls = (
            " (An https connection to a port that speaks plain HTTP can hang so, in the TLS "
            "handshake: check the connection's schema and port.)"
            if https
            else ""
        )
        return TransportError(
            f"{where}: no complete answer within the timeout. Raise timeout= (seconds) on the "
            f"adapter or the call, or in the connection extra's hookbridge.timeout.{tls}"
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError(f"{where}: the server closed the connection before answering.")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(f"{where}: the response body was cut off ({detail}).")
    if isinstance(exc, ssl.SSLError):
        return TransportError(f"{where}: TLS failed ({detail}).")
    return TransportError(f"{where}: {type(exc).__name__}: {detail}")


@contextmanager
def translating(method: str, url: str, secrets: Sequence[str | None] = ()) -> Iterator[None]:
    """Translate foreign errors raised in the block (for paths that are not the hot one)."""
    try:
        yield
    except FOREIGN_ERRORS as exc:
        raise translate_error(exc, method, url, secrets) from exc


def status_error(
    status: int,
    reason: str | None,
    method: str,
    url: str,
    headers: CIMultiDictProxy[str],
    body: bytes,
    secrets: Sequence[str | None] = (),
) -> RemoteStatusError:
    """The error for an HTTP error status; 429 and 503 become Throttled with Retry-After."""
    shown_url = redact(url, secrets)
    body_excerpt = redact(excerpt(body), secrets)
    head = f"{method} {shown_url} answered {status} {reason or ''}".rstrip()
    if status in (429, 503):
        retry_after = parse_retry_after(headers.get("Retry-After"))
        wait = f" (Retry-After: {retry_after:g} s)" if retry_after is not None else ""
        return Throttled(
            f"{head}{wait}: the server asks to slow down. Lower the adapter's rate "
            "(limits=Limits(rate=...)); retries wait for Retry-After up to the retry policy's "
            "max_retry_after.",
            status=status,
            retry_after=retry_after,
            url=shown_url,
            body_excerpt=body_excerpt,
        )
    if status in (401, 403):
        hint = " Check the connection's login, password or token headers."
    elif status == 404:
        hint = " Check the endpoint and the connection's base URL."
    elif status >= 500:
        hint = " The server failed; idempotent requests are retried per the adapter's retry."
    else:
        hint = ""
    return RemoteStatusError.for_status(status)(
        f"{head}.{hint}", status=status, url=shown_url, body_excerpt=body_excerpt
    )
