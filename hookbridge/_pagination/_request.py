"""Page requests, their JSON-safe cursors, and the pages a stream yields."""

from __future__ import annotations

import math
from collections.abc import (
    Callable,
    Mapping,
    Sequence,
)
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from .._errors import (
    ConfigurationError,
    redact,
)

__all__ = ["JsonPath", "Page", "PageRequest", "PageResponse", "is_credential_header"]

T = TypeVar("T")

#: A JSON path: a dotted string ("data.items", "@odata.nextLink") or the exact keys as a sequence.
JsonPath = str | Sequence[str]

#: Header names that are credentials: never written into a cursor, whatever the caller allows.
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)
_CREDENTIAL_WORDS = ("auth", "secret", "password", "cookie", "api-key", "apikey", "credential")

_CURSOR_VERSION = 1
_CURSOR_KEYS = frozenset({"v", "method", "url", "params", "json", "data", "headers", "skip"})
# Deep enough for any real request body; stops a self-referencing structure before RecursionError.
_MAX_JSON_DEPTH = 100


def is_credential_header(name: str) -> bool:
    """Whether a header name carries a credential (never written into a cursor)."""
    lowered = name.lower()
    return lowered in _CREDENTIAL_HEADERS or any(word in lowered for word in _CREDENTIAL_WORDS)


# --------------------------------------------------------------------------------------------
# Requests, responses, pages


class PageResponse(Protocol):
    """What strategies read from a fetched page; the HTTP adapter's response satisfies it.

    ``json()`` may be called more than once per page (``paginate`` caches it).
    """

    @property
    def status(self) -> int: ...

    @property
    def url(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


@dataclass(frozen=True, repr=False)
class PageRequest:
    """The request for one page.

    ``to_cursor()`` turns it into a JSON-safe dict that a trigger can store and ``from_cursor()``
    turns back. A cursor never holds credentials: it carries no headers except those named in
    ``cursor_headers`` (a strategy sets that for headers that carry the position, such as a
    continuation header), and even those are dropped when their name looks like a credential
    (Authorization, Cookie, X-Api-Key, ...). The adapter adds its credentials to every request it
    sends; pass your own headers again with ``first`` when resuming.
    """

    url: str
    _: KW_ONLY
    params: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    data: Any = None
    method: str = "GET"
    #: Lower-case names of headers that are part of the position and go into the cursor.
    cursor_headers: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url:
            raise ConfigurationError(f"a page URL must be a non-empty str, got {self.url!r}")
        if not isinstance(self.method, str) or not _is_method(self.method):
            raise ConfigurationError(f"not an HTTP method: {self.method!r}", field="method")
        # Copies behind read-only views: the request is frozen all the way down to its mappings.
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))
        object.__setattr__(
            self, "cursor_headers", frozenset(name.lower() for name in self.cursor_headers)
        )

    def __repr__(self) -> str:
        # Header values and userinfo are left out: a repr ends up in logs.
        return (
            f"PageRequest(method={self.method!r}, url={redact(self.url)!r}, "
            f"params={dict(self.params)!r}, headers=<{', '.join(sorted(self.headers))}>, "
            f"json={self.json!r}, data={self.data!r})"
        )

    def _identity(self) -> tuple[Any, ...]:
        # What says which page this is: headers count only when they carry the position.
        position = {
            k.lower(): v for k, v in self.headers.items() if k.lower() in self.cursor_headers
        }
        return (self.method, self.url, dict(self.params), self.json, self.data, position)

    def to_cursor(self, *, skip: int = 0) -> dict[str, Any]:
        """Return this request as a JSON-safe dict (see the class docstring for what is left out).

        ``skip`` is the number of this page's items already delivered (``max_items`` cut a page).
        """
        if _has_userinfo(self.url):
            raise ConfigurationError(
                "the page URL carries a user name or password, which must not be stored in a "
                "cursor; put credentials in the connection instead",
                field="cursor",
            )
        cursor: dict[str, Any] = {
            "v": _CURSOR_VERSION,
            "method": self.method,
            "url": self.url,
            "params": _json_safe(dict(self.params), "params"),
            "json": _json_safe(self.json, "json"),
            "data": _json_safe(self.data, "data"),
        }
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() in self.cursor_headers and not is_credential_header(name)
        }
        if headers:
            cursor["headers"] = _json_safe(headers, "headers")
        if skip:
            cursor["skip"] = skip
        return cursor

    @classmethod
    def from_cursor(cls, cursor: Any) -> PageRequest:
        """Rebuild the request stored by ``to_cursor``; a damaged cursor is a ConfigurationError."""
        return _parse_cursor(cursor)[0]


def _is_method(method: str) -> bool:
    return method.isascii() and method.replace("-", "").isalpha()


def _is_absolute(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.scheme and parts.netloc)


def _has_userinfo(url: str) -> bool:
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return False


def _bad_cursor(reason: str) -> ConfigurationError:
    return ConfigurationError(
        f"not a hookbridge pagination cursor: {reason}. Pass the dict from Page.cursor unchanged "
        "(it survives json.dumps/json.loads), or start without a cursor",
        field="cursor",
    )


def _parse_cursor(cursor: Any) -> tuple[PageRequest, int]:
    if not isinstance(cursor, Mapping):
        raise _bad_cursor(f"expected a dict, got {type(cursor).__name__}")
    unknown = set(cursor) - _CURSOR_KEYS
    if unknown:
        raise _bad_cursor(f"unknown keys {sorted(map(str, unknown))}")
    if cursor.get("v") != _CURSOR_VERSION:
        raise _bad_cursor(f"unsupported version {cursor.get('v')!r}")
    url, method = cursor.get("url"), cursor.get("method")
    if not isinstance(url, str) or not _is_absolute(url) or _has_userinfo(url):
        raise _bad_cursor("'url' must be an absolute URL without a user name or password")
    if not isinstance(method, str) or not _is_method(method):
        raise _bad_cursor("'method' must be an HTTP method name")
    params = cursor.get("params", {})
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise _bad_cursor("'params' must be an object")
    headers = cursor.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise _bad_cursor("'headers' must map names to strings")
    if any(is_credential_header(name) for name in headers):
        raise _bad_cursor("it carries a credential header")
    skip = cursor.get("skip", 0)
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
        raise _bad_cursor("'skip' must be a non-negative integer")
    try:
        for key in ("params", "json", "data"):
            _json_safe(cursor.get(key), key)
    except ConfigurationError as exc:
        raise _bad_cursor(str(exc)) from None
    request = PageRequest(
        url=url,
        params=params,
        headers=headers,
        json=cursor.get("json"),
        data=cursor.get("data"),
        method=method,
        cursor_headers=frozenset(headers),
    )
    return request, skip


def _json_safe(value: Any, where: str, depth: int = 0) -> Any:
    """Return ``value`` as plain JSON types (tuples become lists) or raise ConfigurationError."""
    if depth > _MAX_JSON_DEPTH:
        raise ConfigurationError(f"request {where} is nested too deeply", field="cursor")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigurationError(f"request {where} holds {value!r}", field="cursor")
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(item, where, depth + 1) for item in value]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigurationError(
                    f"request {where} has the non-string key {key!r}; a cursor holds only JSON",
                    field="cursor",
                )
            out[key] = _json_safe(item, where, depth + 1)
        return out
    raise ConfigurationError(
        f"request {where} holds a {type(value).__name__}, which a JSON cursor cannot store; "
        "pass it as a dict, list, str or number",
        field="cursor",
    )


class Page(Generic[T]):
    """One fetched page (read-only).

    ``cursor`` is the JSON-safe position right after this page (``None`` on the last page):
    ``paginate(..., cursor=page.cursor)`` continues with exactly the items that follow. A page
    stream works it out when it is first read, not before the page is handed over: most
    consumers never read it, and the first item should not wait for it. Reading it raises what
    working it out raises (a next link that is no URL, a URL with a password in it).
    """

    __slots__ = ("_cursor", "_position", "items", "number", "status", "url")

    number: int  #: 1-based, counted from where this stream started
    items: Sequence[T]
    status: int
    url: str
    _cursor: dict[str, Any] | None
    #: Works out the cursor when it is first read (page streams pass it instead of cursor).
    _position: Callable[[], dict[str, Any] | None] | None

    def __init__(
        self,
        number: int,
        items: Sequence[T],
        status: int,
        url: str,
        cursor: dict[str, Any] | None = None,
        *,
        position: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "number", number)
        set_(self, "items", items)
        set_(self, "status", status)
        set_(self, "url", url)
        set_(self, "_cursor", cursor)
        set_(self, "_position", position)

    @property
    def cursor(self) -> dict[str, Any] | None:
        position = self._position
        if position is not None:
            object.__setattr__(self, "_cursor", position())
            object.__setattr__(self, "_position", None)
        return self._cursor

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Page is read-only (cannot set {name!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Page):
            return NotImplemented
        return (self.number, self.items, self.status, self.url, self.cursor) == (
            other.number,
            other.items,
            other.status,
            other.url,
            other.cursor,
        )

    def __repr__(self) -> str:
        return (
            f"Page(number={self.number}, items=<{len(self.items)}>, status={self.status}, "
            f"url={redact(self.url)!r})"
        )
