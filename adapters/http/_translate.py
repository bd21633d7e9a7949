"""The one boundary where aiohttp's errors and HTTP error statuses become hookbridge errors."""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import aiohttp
from multidict import CIMultiDictProxy

from hookbridge._errors import (
    ConfigurationError,
    HookBridgeError,
    RemoteStatusError,
    Throttled,
    TransportError,
    excerpt,
    redact,
)
from hookbridge._retry import parse_retry_after

__all__ = [
    "ConnectFailed",
    "FOREIGN_ERRORS",
    "status_error",
    "translate_error",
    "translating",
]

#: What the request path catches and hands to :func:`translate_error`. Cancellation is a
#: BaseException and never appears here; ``TimeoutError`` covers aiohttp's total timeout.
FOREIGN_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)


class ConnectFailed(TransportError):
    """The TCP/TLS connection could not be established: nothing was sent.

    Unlike other transport errors it is safe to retry for every method, POST included.
    """


def translate_error(
    exc: BaseException, method: str, url: str, secrets: Sequence[str | None] = ()
) -> HookBridgeError:
    """Return the hookbridge error for a foreign one; the caller raises it ``from exc``."""
    if isinstance(exc, HookBridgeError):
        return exc
    where = f"{method} {redact(url, secrets)}"
    detail = redact(str(exc) or type(exc).__name__, secrets)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return TransportError(
            f"{where}: the server's TLS certificate was not accepted ({detail}). Give the "
            "connection's extra a CA bundle or verify settings that trust it."
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectFailed(
            f"{where}: timed out connecting ({detail}). Check that the host is reachable, or "
            "raise the connect timeout."
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectFailed(
            f"{where}: cannot connect ({detail}). Check the connection's host and port and "
            "that the server is running."
        )
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return ConfigurationError(
            f"{where}: not a usable http(s) URL ({detail}). Check the connection's host/schema "
            "and the endpoint.",
            field="endpoint",
        )
    if isinstance(exc, aiohttp.TooManyRedirects):
        return RemoteStatusError(
            f"{where}: too many redirects ({detail}).", status=exc.status, url=url
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
        return TransportError(
            f"{where}: no complete answer within the timeout. Raise timeout= (seconds) on the "
            "adapter or the call, or in the connection extra's hookbridge.timeout."
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
            "(limits=Limits(rate=...)) or raise the retry attempts.",
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
    return RemoteStatusError(
        f"{head}.{hint}", status=status, url=shown_url, body_excerpt=body_excerpt
    )
