"""The hookbridge exception tree: every error the library raises derives from HookBridgeError.

Foreign errors (aiohttp, asyncssh, Airflow) are translated once, at each adapter's boundary, with
``raise ... from``. Messages say what is wrong and how to fix it, and never carry a secret: the
bodies and URLs they quote go through ``redact`` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AdapterClosed",
    "AdapterNotFound",
    "BatchError",
    "ConfigurationError",
    "DeadlineExceeded",
    "FailedItem",
    "HookBridgeError",
    "MalformedResponse",
    "PaginationRefused",
    "PathRefused",
    "PoolClosed",
    "PoolTimeout",
    "RemoteStatusError",
    "ResponseTooLarge",
    "Throttled",
    "TransportError",
    "excerpt",
    "redact",
]

#: Longest body excerpt an error carries: enough to see what the server said, never a whole page.
EXCERPT_LIMIT = 500

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every secret and any ``user:password@`` in a URL replaced by ``***``."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        # Very short "secrets" would blank out ordinary words; they are not worth protecting.
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def excerpt(body: bytes | str | None, limit: int = EXCERPT_LIMIT) -> str:
    """Return at most ``limit`` characters of a response body, marked when cut."""
    if body is None:
        return ""
    # Decode only what can reach the excerpt: a 100 MB error body is not decoded whole.
    text = body[: limit * 4].decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if len(text) > limit:
        return text[:limit] + f"... [{len(text) - limit}+ more characters]"
    return text


class HookBridgeError(Exception):
    """Base of every error hookbridge raises."""


class ConfigurationError(HookBridgeError):
    """A connection, an option or an argument is wrong. Names the conn_id and the field."""

    def __init__(self, message: str, *, conn_id: str | None = None, field: str | None = None):
        where = []
        if conn_id is not None:
            where.append(f"conn_id {conn_id!r}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = f"[{', '.join(where)}] " if where else ""
        super().__init__(prefix + message)
        self.conn_id = conn_id
        self.field = field


class AdapterNotFound(ConfigurationError):
    """No registered adapter matches the requested name or Airflow conn_type."""

    def __init__(
        self,
        message: str,
        *,
        installed: Sequence[str] = (),
        conn_id: str | None = None,
        field: str | None = None,
    ):
        listing = ", ".join(sorted(installed)) or "none"
        super().__init__(
            f"{message}. Installed adapters: {listing}. Install the extra that provides it "
            "(pip install 'hookbridge[http]'), register one with hookbridge.register(), or pass "
            "adapter= explicitly.",
            conn_id=conn_id,
            field=field,
        )
        self.installed = tuple(installed)


class AdapterClosed(HookBridgeError):
    """The adapter was used before ``async with`` opened it, or after it was closed."""


class TransportError(HookBridgeError):
    """The request did not get a complete answer: refused, reset, dropped, timed out, TLS.

    Safe to retry for idempotent operations.
    """


class RemoteStatusError(HookBridgeError):
    """The remote side answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str | None = None,
        body_excerpt: str = "",
    ):
        detail = f" Body: {body_excerpt}" if body_excerpt else ""
        super().__init__(f"{message}{detail}")
        self.status = status
        self.url = url
        self.body_excerpt = body_excerpt


class Throttled(RemoteStatusError):
    """The remote side asked us to slow down (HTTP 429/503). ``retry_after`` is in seconds."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        retry_after: float | None,
        url: str | None = None,
        body_excerpt: str = "",
    ):
        super().__init__(message, status=status, url=url, body_excerpt=body_excerpt)
        self.retry_after = retry_after


class DeadlineExceeded(HookBridgeError, TimeoutError):
    """The retry policy's total deadline passed before an attempt succeeded."""


class PoolClosed(HookBridgeError):
    """The pool was closed: no resource can be checked out any more."""


class PoolTimeout(HookBridgeError, TimeoutError):
    """No resource became free within the pool's acquire timeout."""


class PaginationRefused(HookBridgeError):
    """A next-page link points somewhere the paginator may not follow (another host)."""

    def __init__(self, message: str, *, url: str | None = None):
        super().__init__(message)
        self.url = url


class ResponseTooLarge(HookBridgeError):
    """A response body is larger than the configured cap; it was not truncated silently."""

    def __init__(self, message: str, *, limit: int, url: str | None = None):
        super().__init__(message)
        self.limit = limit
        self.url = url


class PathRefused(HookBridgeError):
    """A remote path resolves outside the adapter's root; nothing was sent."""

    def __init__(self, message: str, *, path: str):
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class FailedItem:
    """One item of a fan-out that ended in an error."""

    index: int
    item: Any
    error: BaseException

    def describe(self) -> str:
        text = repr(self.item)
        if len(text) > 80:
            text = text[:77] + "..."
        return f"#{self.index} {text}: {type(self.error).__name__}: {self.error}"


class BatchError(HookBridgeError):
    """A fan-out with ``on_error="raise"`` stopped because items failed; names each of them."""

    #: How many failed items the message lists; all of them are in ``failures``.
    SHOWN = 10

    def __init__(self, failures: Sequence[FailedItem], *, completed: int, not_run: int):
        lines = [f.describe() for f in failures[: self.SHOWN]]
        more = len(failures) - len(lines)
        if more:
            lines.append(f"... and {more} more (see .failures)")
        super().__init__(
            f"{len(failures)} item(s) failed, {completed} completed, {not_run} not run or "
            "cancelled. Use on_error='collect' to keep going and get every outcome.\n  "
            + "\n  ".join(lines)
        )
        self.failures = tuple(failures)
        self.completed = completed
        self.not_run = not_run


class MalformedResponse(HookBridgeError):
    """A page's body or headers do not have the shape the pagination strategy expects."""

    def __init__(self, reason: str, *, url: str | None = None):
        where = f" [page {redact(url)}]" if url else ""
        super().__init__(f"{reason}{where}")
        self.reason = reason
        self.url = url
