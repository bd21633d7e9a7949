"""The hookbridge exception tree: every error the library raises derives from HookBridgeError.

Foreign errors (aiohttp, asyncssh, Airflow) are translated once, at each adapter's boundary, with
``raise ... from``. Messages say what is wrong and how to fix it, and never carry a secret: the
bodies and URLs they quote go through ``redact`` first.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = [
    "AdapterClosed",
    "AlreadyExists",
    "ConnectFailed",
    "AdapterNotFound",
    "BatchError",
    "ConfigurationError",
    "DeadlineExceeded",
    "FailedItem",
    "HookBridgeError",
    "HostRefused",
    "MalformedResponse",
    "NotFound",
    "PaginationRefused",
    "PathRefused",
    "PermissionDenied",
    "PoolClosed",
    "PoolTimeout",
    "RemoteError",
    "RemoteStatusError",
    "ResponseTooLarge",
    "Throttled",
    "TransportError",
    "UsageError",
    "encoded_forms",
    "excerpt",
    "redact",
]

#: Longest body excerpt an error carries: enough to see what the server said, never a whole page.
EXCERPT_LIMIT = 500

# The scheme's length is bounded: unbounded, a long run of letters (a token, a base64 body) made
# every search quadratic, seconds for a 20 kB message.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)[^/@\s]+@")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every secret and any ``user:password@`` in a URL replaced by ``***``.

    Each secret is also looked for in the forms it takes on the wire: percent-encoded (as in a
    query string or a URL path, with any set of characters left as they are, in either case of
    hex digits), form-encoded (``+`` for a space) and base64 (Basic auth, tokens).
    """
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        # Very short "secrets" would blank out ordinary words; they are not worth protecting.
        if secret and len(secret) >= 3:
            pattern, base64_forms = _secret_patterns(secret)
            text = pattern.sub("***", text)
            for form in base64_forms:
                if form in text:
                    text = text.replace(form, "***")
    return text


@lru_cache(maxsize=256)
def _secret_patterns(secret: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """A pattern for ``secret`` with each character raw or percent-encoded; its base64 forms.

    Clients differ in which characters they leave unencoded (yarl keeps ``@`` and ``/`` in a
    query and writes a space as ``+``; urllib's ``quote`` keeps ``/`` only): matching per
    character covers all of them, where a list of encoders would miss the next client's choice.
    The base64 forms are replaced as plain strings: joined to the pattern as alternatives, they
    made a search of a long token thousands of times slower.
    """
    per_character = re.compile("".join(_character_pattern(char) for char in secret))
    return per_character, tuple(sorted(_base64_forms(secret), key=len, reverse=True))


def _character_pattern(char: str) -> str:
    # %XX per UTF-8 byte, hex digits in either case.
    escaped = "".join(
        "%" + "".join(f"[{h}{h.lower()}]" if h.isalpha() else h for h in f"{byte:02X}")
        for byte in char.encode()
    )
    options = [re.escape(char), escaped, r"\+"] if char == " " else [re.escape(char), escaped]
    return f"(?:{'|'.join(options)})"


def _base64_forms(secret: str) -> set[str]:
    raw = secret.encode()
    forms = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    # Also without the padding, as in JWT-style tokens.
    return forms | {form.rstrip("=") for form in forms}


@lru_cache(maxsize=256)
def encoded_forms(secret: str) -> tuple[str, ...]:
    """The secret as it may appear in a message, longest first (so no form is left half-done).

    What a leak test looks for; :func:`redact` matches more (any mix of raw and encoded
    characters).
    """
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret, safe="/"),
        quote_plus(secret),
        # yarl (so aiohttp) in a query string and in a path: RFC 3986 lets these stand.
        quote_plus(secret, safe="!$'()*,:@/?~"),
        quote(secret, safe="!$&'()*+,;=:@/~"),
    }
    # Percent escapes may come in lower case (some clients normalise them so).
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), form) for form in forms}
    forms |= _base64_forms(secret)
    return tuple(sorted((form for form in forms if len(form) >= 3), key=len, reverse=True))


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
        #: The message without the conn_id/field prefix.
        self.reason = message
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


class UsageError(HookBridgeError):
    """The API was used in a way it does not support (a wrong argument, a call out of order).

    The message says what to write instead. Raised before anything is sent.
    """

    def __init__(self, message: str, *, argument: str | None = None):
        super().__init__(f"[argument {argument!r}] {message}" if argument else message)
        self.argument = argument


class AdapterClosed(UsageError):
    """The adapter was used before ``async with`` opened it, or after it was closed."""


class TransportError(HookBridgeError):
    """The request did not get a complete answer: refused, reset, dropped, timed out, TLS.

    Safe to retry for idempotent operations.
    """


class ConnectFailed(TransportError):
    """The connection could not be established (refused, unreachable, connect timeout).

    Nothing was sent, so unlike other transport errors it is safe to retry for every operation,
    writes included.
    """


class RemoteError(HookBridgeError):
    """The remote side answered, and the answer is an error.

    ``code`` is the protocol's own (an HTTP status, an SFTP status code, a Graph error code, a
    WS-Management fault code); ``target`` says what was asked for (a URL, a remote path, a
    command), already redacted. ``body_excerpt`` is a bounded, redacted part of the answer.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | str | None = None,
        target: str | None = None,
        body_excerpt: str = "",
    ):
        detail = f" Body: {body_excerpt}" if body_excerpt else ""
        super().__init__(f"{message}{detail}")
        self.code = code
        self.target = target
        self.body_excerpt = body_excerpt


class NotFound(RemoteError):
    """What was asked for does not exist on the remote side (HTTP 404, SFTP no such file)."""


class PermissionDenied(RemoteError):
    """The remote side refused the credentials or the operation (HTTP 401/403, SFTP)."""


class AlreadyExists(RemoteError):
    """The operation would create something that exists already (HTTP 409, SFTP)."""


class RemoteStatusError(RemoteError):
    """An HTTP(-like) error status. ``status`` is the code, ``url`` the target."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str | None = None,
        body_excerpt: str = "",
    ):
        super().__init__(message, code=status, target=url, body_excerpt=body_excerpt)
        self.status = status
        self.url = url

    @staticmethod
    def for_status(status: int) -> type[RemoteStatusError]:
        """The class of the error for ``status``: 404 is also a :class:`NotFound`, and so on."""
        return _STATUS_CLASSES.get(status, RemoteStatusError)


class StatusNotFound(RemoteStatusError, NotFound):
    """HTTP 404/410: a :class:`RemoteStatusError` that is also a :class:`NotFound`."""


class StatusPermissionDenied(RemoteStatusError, PermissionDenied):
    """HTTP 401/403: a :class:`RemoteStatusError` that is also a :class:`PermissionDenied`."""


class StatusAlreadyExists(RemoteStatusError, AlreadyExists):
    """HTTP 409: a :class:`RemoteStatusError` that is also an :class:`AlreadyExists`."""


_STATUS_CLASSES: dict[int, type[RemoteStatusError]] = {
    401: StatusPermissionDenied,
    403: StatusPermissionDenied,
    404: StatusNotFound,
    409: StatusAlreadyExists,
    410: StatusNotFound,
}


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


class HostRefused(HookBridgeError):
    """A URL (absolute endpoint, redirect, next link) is outside the adapter's host policy.

    Nothing was sent to it: the connection's credentials go with every request.
    """

    def __init__(self, message: str, *, url: str | None = None):
        super().__init__(message)
        self.url = url


class PaginationRefused(HostRefused):
    """A next-page link points somewhere the paginator may not follow (another host)."""


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
