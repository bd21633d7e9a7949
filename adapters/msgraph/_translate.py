"""Graph answers and client errors as hookbridge errors: statuses, Graph error codes, Entra ID."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from hookbridge import (
    ConnectFailed,
    HookBridgeError,
    PermissionDenied,
    RemoteStatusError,
    Throttled,
    TransportError,
    parse_retry_after,
)
from hookbridge.adapter import excerpt

__all__ = ["THROTTLING", "graph_error", "status_error", "translate_foreign"]

#: Statuses Graph uses to say "slow down" (a Retry-After usually comes with them).
THROTTLING = frozenset({429, 503, 504})


def graph_error(body: Any) -> tuple[str | None, str]:
    """Graph's ``{"error": {"code", "message"}}`` as (code, message); tolerant of other shapes."""
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested thousands deep
            return None, ""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        return str(error.get("code") or "") or None, str(error.get("message") or "")
    return None, ""


def status_error(
    status: int,
    headers: Mapping[str, str],
    body: Any,
    target: str,
    conn_id: str,
    redact: Callable[[str], str],
) -> HookBridgeError:
    """The error for an unsuccessful Graph answer (HTTP or a ``$batch`` sub-response)."""
    code, message = graph_error(body)
    raw = body if isinstance(body, (bytes, str)) else _dumped(body)
    shown = redact(excerpt(raw))
    what = f"Microsoft Graph answered {status}"
    if code:
        what += f" {code}"
    what += f" to {target} (conn_id {conn_id!r})"
    if message:
        what += f": {redact(message)}"
    if status in THROTTLING:
        retry_after = parse_retry_after(headers.get("retry-after"))
        return Throttled(
            what + ". Every caller of this adapter waits out the Retry-After.",
            status=status,
            retry_after=retry_after,
            url=target,
            body_excerpt=shown,
        )
    if status in (401, 403):
        what += (
            f". Check that the app registration behind conn_id {conn_id!r} has the Graph "
            "application permissions this call needs, with admin consent"
        )
    return RemoteStatusError.for_status(status)(what, status=status, url=target, body_excerpt=shown)


def translate_foreign(
    exc: BaseException,
    target: str,
    conn_id: str,
    authority: str | None,
    redact: Callable[[str], str],
) -> HookBridgeError | None:
    """The hookbridge error for an httpx, azure-identity or kiota error, or None if not ours."""
    import httpx
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

    detail = redact(str(exc) or type(exc).__name__)
    if isinstance(exc, ClientAuthenticationError):
        return PermissionDenied(
            f"the token endpoint {authority or 'login.microsoftonline.com'} refused the client "
            f"credentials of conn_id {conn_id!r} ({_first_line(detail)}). Check the connection's "
            "login (the application's client id), password (its client secret) and extra "
            "tenant_id.",
            code=_aadsts(detail),
            target=authority,
        )
    if isinstance(exc, ServiceRequestError):
        return ConnectFailed(
            f"could not reach the token endpoint {authority} for conn_id {conn_id!r}: {detail}"
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ConnectFailed(f"could not connect to {target} (conn_id {conn_id!r}): {detail}")
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(f"{target}: no answer within the timeout (conn_id {conn_id!r}).")
    if isinstance(exc, httpx.HTTPError):
        return TransportError(f"{target}: {type(exc).__name__}: {detail}")
    return None


def _dumped(body: Any) -> str:
    try:
        return json.dumps(body)
    except (ValueError, RecursionError):  # NaN is fine; nesting deeper than the stack is not
        return f"<a {type(body).__name__} too deeply nested to show>"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _aadsts(text: str) -> str | None:
    start = text.find("AADSTS")
    if start < 0:
        return None
    end = start + 6
    while end < len(text) and text[end].isdigit():
        end += 1
    return text[start:end]
