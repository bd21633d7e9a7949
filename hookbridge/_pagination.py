"""Pagination: strategies that find the next page, a page stream with resumable cursors, prefetch.

Transport-agnostic: an adapter passes a ``fetch`` coroutine function that sends one
``PageRequest`` and returns something satisfying ``PageResponse``.

The JSON paths and the RFC 8288 ``Link`` header parser are written here rather than taken from a
library: the paths need exactly one rule that JSONPath libraries lack (a key that exists verbatim,
such as ``@odata.nextLink``, wins over splitting on dots), and every parser of remote data must
fail with ``MalformedResponse`` only, which is simplest to guarantee (and fuzz) in a few lines.
"""

from __future__ import annotations

import math
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import KW_ONLY, dataclass, field, replace
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urljoin, urlsplit

import anyio
from anyio.abc import ObjectReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream

from ._errors import (
    ConfigurationError,
    HookBridgeError,
    MalformedResponse,
    PaginationRefused,
    redact,
)
from ._groups import EXCEPTION_GROUP, single_leaf

__all__ = [
    "CursorToken",
    "LinkHeader",
    "NextLink",
    "OffsetLimit",
    "Page",
    "PageNumber",
    "PageRequest",
    "PageResponse",
    "PaginationFunction",
    "Strategy",
    "iter_items",
    "paginate",
    "prefetch",
]

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
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Deep enough for any real request body; stops a self-referencing structure before RecursionError.
_MAX_JSON_DEPTH = 100
# Closing a page source runs under a shield; a source that hangs in its cleanup is abandoned.
_CLOSE_TIMEOUT = 5.0


def _is_credential(name: str) -> bool:
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
            if name.lower() in self.cursor_headers and not _is_credential(name)
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
    if any(_is_credential(name) for name in headers):
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


@dataclass(frozen=True)
class Page(Generic[T]):
    """One fetched page.

    ``cursor`` is the JSON-safe position right after this page (``None`` on the last page):
    ``paginate(..., cursor=page.cursor)`` continues with exactly the items that follow.
    """

    number: int  #: 1-based, counted from where this stream started
    items: Sequence[T]
    status: int
    url: str
    cursor: dict[str, Any] | None


# --------------------------------------------------------------------------------------------
# JSON paths and Link headers


class _Missing:
    def __repr__(self) -> str:
        return "_MISSING"


#: A path that leads nowhere (absent key or null on the way).
_MISSING: Any = _Missing()
# A path that runs into a value that is not an object (a list, a string, a number).
_WRONG_SHAPE: Any = _Missing()


def _check_path(path: JsonPath | None, name: str, *, optional: bool) -> JsonPath | None:
    if path is None:
        if optional:
            return None
        raise ConfigurationError(f"{name} needs a JSON path", field=name)
    if isinstance(path, str):
        if not path:
            hint = " (use None for the whole body)" if optional else ""
            raise ConfigurationError(f"{name} must not be empty{hint}", field=name)
        return path
    if isinstance(path, Sequence) and path and all(isinstance(key, str) for key in path):
        return tuple(path)
    raise ConfigurationError(
        f"{name} must be a dotted path like 'data.items' or a list of keys, got {path!r}",
        field=name,
    )


def _lookup(body: Any, path: JsonPath) -> Any:
    """Return the value at ``path`` in ``body``, or ``_MISSING`` when a key is absent or null.

    A dotted string prefers the longest key that exists verbatim: ``"@odata.nextLink"`` finds
    that key rather than ``body["@odata"]["nextLink"]``. A sequence is the exact keys.
    Raises ``TypeError`` when the path runs into something that is not an object.
    """
    keys = path.split(".") if isinstance(path, str) else list(path)
    joined = isinstance(path, str)
    found = _walk(body, keys, 0, joined)
    if found is _WRONG_SHAPE:
        raise TypeError(f"the body has no object where {_show_path(path)} leads")
    return found


def _walk(node: Any, keys: list[str], start: int, joined: bool) -> Any:
    if start == len(keys):
        return node
    if node is None:
        return _MISSING
    if not isinstance(node, dict):
        return _WRONG_SHAPE
    result = _MISSING
    ends = range(len(keys), start, -1) if joined else (start + 1,)
    for end in ends:
        key = ".".join(keys[start:end])
        if key in node:
            found = _walk(node[key], keys, end, joined)
            if found is not _MISSING and found is not _WRONG_SHAPE:
                return found
            if found is _WRONG_SHAPE:
                result = _WRONG_SHAPE
    return result


def _show_path(path: JsonPath | None) -> str:
    if path is None:
        return "the body"
    return repr(path) if isinstance(path, str) else repr(list(path))


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OWS = " \t"


def _parse_link_header(value: str) -> list[tuple[str, dict[str, str]]]:
    """Parse an RFC 8288 ``Link`` header into ``(target, params)`` pairs; ValueError if broken.

    Parameter names are lower-cased; the first occurrence of a parameter wins (RFC 8288 3.3).
    """
    links: list[tuple[str, dict[str, str]]] = []
    pos, end = 0, len(value)

    def skip(chars: str) -> None:
        nonlocal pos
        while pos < end and value[pos] in chars:
            pos += 1

    while True:
        skip(_OWS + ",")
        if pos >= end:
            return links
        if value[pos] != "<":
            raise ValueError(f"expected '<' at {pos}")
        close = value.find(">", pos + 1)
        if close < 0:
            raise ValueError("unterminated '<'")
        target = value[pos + 1 : close].strip(_OWS)
        pos = close + 1
        params: dict[str, str] = {}
        while True:
            skip(_OWS)
            if pos >= end or value[pos] == ",":
                break
            if value[pos] != ";":
                raise ValueError(f"expected ';' or ',' at {pos}")
            pos += 1
            skip(_OWS)
            start = pos
            while pos < end and value[pos] in _TCHAR:
                pos += 1
            name = value[start:pos].lower()
            if not name:
                if pos >= end or value[pos] in ";,":
                    continue  # an empty parameter ("; ;"): tolerated
                raise ValueError(f"expected a parameter name at {pos}")
            skip(_OWS)
            param = ""
            if pos < end and value[pos] == "=":
                pos += 1
                skip(_OWS)
                if pos < end and value[pos] == '"':
                    param, pos = _quoted_string(value, pos)
                else:
                    start = pos
                    while pos < end and value[pos] not in _OWS + ";,":
                        pos += 1
                    param = value[start:pos]
            params.setdefault(name, param)
        links.append((target, params))


def _quoted_string(value: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    pos += 1
    while pos < len(value):
        char = value[pos]
        if char == "\\" and pos + 1 < len(value):
            out.append(value[pos + 1])
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    raise ValueError("unterminated quoted string")


# --------------------------------------------------------------------------------------------
# Strategies


class Strategy(Protocol):
    """How to find the items of a page and the request for the next one.

    (The method is ``page_items`` because every strategy takes ``items=``, the JSON path of the
    list.) ``prepare`` sets up the first request (e.g. ``page=1&per_page=100``); it is not
    applied when resuming from a cursor. Parsers of remote data raise ``MalformedResponse`` and
    nothing else.
    """

    def prepare(self, request: PageRequest) -> PageRequest: ...

    def page_items(self, response: PageResponse) -> list[Any]: ...

    def next_request(
        self, request: PageRequest, response: PageResponse, items: Sequence[Any]
    ) -> PageRequest | None: ...


def _body(response: PageResponse) -> Any:
    try:
        return response.json()
    except HookBridgeError:
        raise
    except Exception as exc:
        raise MalformedResponse(
            f"the page is not JSON ({type(exc).__name__}); check the endpoint and the Accept "
            "header",
            url=_url(response),
        ) from exc


def _url(response: PageResponse) -> str | None:
    url = getattr(response, "url", None)
    return str(url) if url else None


def _find(response: PageResponse, path: JsonPath, what: str) -> Any:
    try:
        return _lookup(_body(response), path)
    except TypeError as exc:
        raise MalformedResponse(
            f"cannot read {what} {_show_path(path)}: {exc}", url=_url(response)
        ) from None


def _items_at(response: PageResponse, path: JsonPath | None) -> list[Any]:
    found = _body(response) if path is None else _find(response, path, "the items at")
    if isinstance(found, list):
        return list(found)
    if found is _MISSING:
        got = "nothing"
    else:
        got = "null" if found is None else f"a {type(found).__name__}"
    raise MalformedResponse(
        f"expected a list of items at {_show_path(path)}, found {got}; set items= to the JSON "
        "path of the list",
        url=_url(response),
    )


def _count(response: PageResponse, path: JsonPath, what: str) -> int | None:
    """Read a total from the body: an int (or digits), None when null."""
    found = _find(response, path, f"the {what} at")
    if found is None:
        return None
    if isinstance(found, int) and not isinstance(found, bool):
        return found
    if isinstance(found, str) and found.isascii() and found.isdigit():
        return int(found)
    got = "nothing" if found is _MISSING else f"{type(found).__name__} {found!r:.40}"
    raise MalformedResponse(
        f"expected an integer {what} at {_show_path(path)}, found {got}", url=_url(response)
    )


def _follow(request: PageRequest, response: PageResponse, link: str) -> PageRequest:
    """The request for a next link, resolved against the page URL; the link carries the query."""
    return replace(request, url=_next_url(_url(response) or request.url, link, urljoin), params={})


def _next_url(base: str, link: str, join: Callable[[str, str], str]) -> str:
    try:
        url = join(base, link.strip())
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError as exc:
        raise MalformedResponse(f"the next link {link!r:.200} is not a URL", url=base) from exc
    if "@" in parts.netloc:
        raise MalformedResponse(
            "the next link carries a user name or password; hookbridge does not follow it",
            url=base,
        )
    if not parts.scheme or not parts.netloc:
        raise MalformedResponse(f"the next link {link!r:.200} is not a URL", url=base)
    return url


def _int_param(request: PageRequest, name: str, default: int) -> int:
    value = request.params.get(name, default)
    if isinstance(value, bool):
        value = None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise ConfigurationError(
            f"query parameter {name!r} must be a non-negative integer, got {value!r}", field=name
        )
    return number


def _set_fixed(params: dict[str, Any], name: str, value: int) -> None:
    if name in params and str(params[name]) != str(value):
        raise ConfigurationError(
            f"query parameter {name!r} is {params[name]!r} in the request but {value} in the "
            "pagination strategy; set it in one place only",
            field=name,
        )
    params[name] = value


def _check_name(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty str, got {value!r}", field=name)


def _check_int(value: Any, name: str, minimum: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(
            f"{name} must be an integer >= {minimum}, got {value!r}", field=name
        )


@dataclass(frozen=True, kw_only=True)
class NextLink:
    """The body holds the URL of the next page (``@odata.nextLink``, ``links.next``, ...).

    The link may be relative to the page's URL; it carries the query, so the request's own
    params are dropped. A missing, null or empty link ends the stream.
    """

    link: JsonPath = "@odata.nextLink"
    items: JsonPath | None = "value"

    def __post_init__(self) -> None:
        object.__setattr__(self, "link", _check_path(self.link, "link", optional=False))
        object.__setattr__(self, "items", _check_path(self.items, "items", optional=True))

    def prepare(self, request: PageRequest) -> PageRequest:
        return request

    def page_items(self, response: PageResponse) -> list[Any]:
        return _items_at(response, self.items)

    def next_request(
        self, request: PageRequest, response: PageResponse, items: Sequence[Any]
    ) -> PageRequest | None:
        link = _find(response, self.link, "the next link at")
        if link is _MISSING or link is None or link == "":
            return None
        if not isinstance(link, str):
            raise MalformedResponse(
                f"the next link at {_show_path(self.link)} is a {type(link).__name__}, not a URL",
                url=_url(response),
            )
        return _follow(request, response, link)


@dataclass(frozen=True, kw_only=True)
class LinkHeader:
    """An RFC 8288 ``Link`` response header names the next page (``rel="next"``), as on GitHub.

    ``items`` is the JSON path of the list, or None when the body is the list.
    """

    rel: str = "next"
    items: JsonPath | None = None

    def __post_init__(self) -> None:
        _check_name(self.rel, "rel")
        object.__setattr__(self, "items", _check_path(self.items, "items", optional=True))

    def prepare(self, request: PageRequest) -> PageRequest:
        return request

    def page_items(self, response: PageResponse) -> list[Any]:
        return _items_at(response, self.items)

    def next_request(
        self, request: PageRequest, response: PageResponse, items: Sequence[Any]
    ) -> PageRequest | None:
        # A multi-valued header may come as repeated keys (multidict) or one comma-joined value.
        values = [str(v) for k, v in response.headers.items() if str(k).lower() == "link"]
        try:
            links = _parse_link_header(",".join(values))
        except ValueError as exc:
            raise MalformedResponse(
                f"cannot parse the Link header ({exc}): {', '.join(values)!r:.200}",
                url=_url(response),
            ) from None
        wanted = self.rel.lower()
        for target, params in links:
            if wanted in params.get("rel", "").lower().split():
                return _follow(request, response, target)
        return None


@dataclass(frozen=True, kw_only=True)
class PageNumber:
    """A page-number query parameter (``?page=2``), optionally with a page size parameter.

    Stops on an empty page, on a page shorter than ``size`` (when given), or on the last page
    that the ``total_pages`` JSON path announces. Pages count from ``start``.
    """

    param: str = "page"
    start: int = 1
    size_param: str | None = None
    size: int | None = None
    items: JsonPath | None = None
    total_pages: JsonPath | None = None

    def __post_init__(self) -> None:
        _check_name(self.param, "param")
        _check_int(self.start, "start", 0)
        _check_int(self.size, "size", 1, optional=True)
        if self.size_param is not None:
            _check_name(self.size_param, "size_param")
            if self.size is None:
                raise ConfigurationError("size_param needs size= as well", field="size")
        object.__setattr__(self, "items", _check_path(self.items, "items", optional=True))
        object.__setattr__(
            self, "total_pages", _check_path(self.total_pages, "total_pages", optional=True)
        )

    def prepare(self, request: PageRequest) -> PageRequest:
        params = dict(request.params)
        params[self.param] = _int_param(request, self.param, self.start)
        if self.size_param is not None and self.size is not None:
            _set_fixed(params, self.size_param, self.size)
        return replace(request, params=params)

    def page_items(self, response: PageResponse) -> list[Any]:
        return _items_at(response, self.items)

    def next_request(
        self, request: PageRequest, response: PageResponse, items: Sequence[Any]
    ) -> PageRequest | None:
        current = _int_param(request, self.param, self.start)
        if not items or (self.size is not None and len(items) < self.size):
            return None
        if self.total_pages is not None:
            total = _count(response, self.total_pages, "page count")
            if total is not None and current >= self.start + total - 1:
                return None
        return replace(request, params={**request.params, self.param: current + 1})


@dataclass(frozen=True, kw_only=True)
class OffsetLimit:
    """Offset and limit query parameters (``?offset=200&limit=100``).

    Stops on a page shorter than ``limit`` or when the ``total`` JSON path says nothing is left.
    A server that caps the limit below ``limit`` looks like a short page: set ``limit`` to at
    most the server's maximum.
    """

    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100
    items: JsonPath | None = None
    total: JsonPath | None = None

    def __post_init__(self) -> None:
        _check_name(self.offset_param, "offset_param")
        _check_name(self.limit_param, "limit_param")
        if self.offset_param == self.limit_param:
            raise ConfigurationError(
                "offset_param and limit_param must differ", field="limit_param"
            )
        _check_int(self.limit, "limit", 1)
        object.__setattr__(self, "items", _check_path(self.items, "items", optional=True))
        object.__setattr__(self, "total", _check_path(self.total, "total", optional=True))

    def prepare(self, request: PageRequest) -> PageRequest:
        params = dict(request.params)
        params[self.offset_param] = _int_param(request, self.offset_param, 0)
        _set_fixed(params, self.limit_param, self.limit)
        return replace(request, params=params)

    def page_items(self, response: PageResponse) -> list[Any]:
        return _items_at(response, self.items)

    def next_request(
        self, request: PageRequest, response: PageResponse, items: Sequence[Any]
    ) -> PageRequest | None:
        offset = _int_param(request, self.offset_param, 0) + len(items)
        if len(items) < self.limit:
            return None
        if self.total is not None:
            total = _count(response, self.total, "total")
            if total is not None and offset >= total:
                return None
        return replace(request, params={**request.params, self.offset_param: offset})


@dataclass(frozen=True, kw_only=True)
class CursorToken:
    """The body holds an opaque token that goes into a query parameter for the next page.

    A missing, null or empty token ends the stream.
    """

    token: JsonPath = "next_cursor"
    param: str = "cursor"
    items: JsonPath | None = "items"

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", _check_path(self.token, "token", optional=False))
        _check_name(self.param, "param")
        object.__setattr__(self, "items", _check_path(self.items, "items", optional=True))

    def prepare(self, request: PageRequest) -> PageRequest:
        return request

    def page_items(self, response: PageResponse) -> list[Any]:
        return _items_at(response, self.items)

    def next_request(
        self, request: PageRequest, response: PageResponse, items: Sequence[Any]
    ) -> PageRequest | None:
        token = _find(response, self.token, "the cursor token at")
        if token is _MISSING or token is None or token == "":
            return None
        if isinstance(token, bool) or not isinstance(token, (str, int)):
            raise MalformedResponse(
                f"the cursor token at {_show_path(self.token)} is a {type(token).__name__}, "
                "not a string",
                url=_url(response),
            )
        return replace(request, params={**request.params, self.param: token})


_FUNCTION_KEYS = frozenset({"endpoint", "data", "json", "headers", "params"})


@dataclass(frozen=True)
class PaginationFunction:
    """A callable like Airflow ``HttpOperator``'s ``pagination_function(response) -> dict | None``.

    The dict may hold ``endpoint``, ``params``, ``data``, ``json`` and ``headers``, merged into
    the previous request as ``HttpOperator`` does: ``endpoint`` replaces the URL (joined to
    ``base_url`` the way HttpHook joins it, or resolved against the page URL when ``base_url`` is
    None); mappings are merged with ``dict.update``; for a GET, ``data`` is the query, as in
    HttpHook. A falsy result ends the stream. ``cursor_headers`` names headers the function sets
    that must survive in a cursor (credential-like names are refused).
    """

    fn: Callable[[Any], Any]
    _: KW_ONLY
    items: JsonPath | None = None
    base_url: str | None = None
    cursor_headers: Collection[str] = ()

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConfigurationError("fn must be callable", field="pagination_function")
        object.__setattr__(self, "items", _check_path(self.items, "items", optional=True))
        if isinstance(self.cursor_headers, str):
            raise ConfigurationError(
                "cursor_headers must be a list of names", field="cursor_headers"
            )
        names = frozenset(str(name).lower() for name in self.cursor_headers)
        secret = sorted(name for name in names if _is_credential(name))
        if secret:
            raise ConfigurationError(
                f"{secret} look like credentials and never go into a cursor; the adapter "
                "sends credentials with every request",
                field="cursor_headers",
            )
        object.__setattr__(self, "cursor_headers", names)

    def prepare(self, request: PageRequest) -> PageRequest:
        return request

    def page_items(self, response: PageResponse) -> list[Any]:
        return _items_at(response, self.items)

    def next_request(
        self, request: PageRequest, response: PageResponse, items: Sequence[Any]
    ) -> PageRequest | None:
        result = self.fn(response)
        if not result:
            return None
        if not isinstance(result, Mapping):
            raise ConfigurationError(
                f"the pagination function must return a dict or None, got {type(result).__name__}",
                field="pagination_function",
            )
        unknown = set(result) - _FUNCTION_KEYS
        if unknown:
            raise ConfigurationError(
                f"the pagination function returned unsupported keys {sorted(map(str, unknown))}; "
                f"supported: {sorted(_FUNCTION_KEYS)} (set transport options on the adapter)",
                field="pagination_function",
            )
        url = request.url
        endpoint = result.get("endpoint")
        if endpoint:
            if not isinstance(endpoint, str):
                raise _bad_result("endpoint", endpoint)
            url = _next_url(request.url, endpoint, self._join)
        params = dict(request.params)
        params.update(_mapping(result, "params"))
        data, json = request.data, request.json
        new_data = result.get("data")
        if new_data and request.method == "GET" and isinstance(new_data, Mapping):
            params.update(new_data)  # HttpHook sends a GET's data as its query
        elif isinstance(new_data, Mapping) and isinstance(data, Mapping):
            data = {**data, **new_data}
        elif new_data:
            data = new_data
        new_json = result.get("json")
        if isinstance(new_json, Mapping) and isinstance(json, Mapping):
            json = {**json, **new_json}
        elif new_json is not None:
            json = new_json
        new_headers = _mapping(result, "headers")
        if not all(isinstance(value, str) for value in new_headers.values()):
            raise _bad_result("headers", new_headers)
        headers = {**request.headers, **new_headers}
        keep = request.cursor_headers | {
            name.lower() for name in new_headers if name.lower() in self.cursor_headers
        }
        return replace(
            request,
            url=url,
            params=params,
            headers=headers,
            data=data,
            json=json,
            cursor_headers=frozenset(keep),
        )

    def _join(self, current: str, endpoint: str) -> str:
        if urlsplit(endpoint).scheme or self.base_url is None:
            return urljoin(current, endpoint)
        # HttpHook's rule: base URL + "/" + endpoint unless one of them has the slash already.
        if self.base_url and not self.base_url.endswith("/") and not endpoint.startswith("/"):
            return f"{self.base_url}/{endpoint}"
        return self.base_url + endpoint


def _mapping(result: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = result.get(key) or {}
    if not isinstance(value, Mapping) or not all(isinstance(name, str) for name in value):
        raise _bad_result(key, value)
    return value


def _bad_result(key: str, value: Any) -> ConfigurationError:
    return ConfigurationError(
        f"the pagination function returned {key}={value!r:.80}, which is not usable here",
        field="pagination_function",
    )


# --------------------------------------------------------------------------------------------
# The page stream


class _CachedResponse:
    """Decodes the body once for both strategy calls; everything else goes to the response."""

    def __init__(self, response: PageResponse) -> None:
        self._response = response
        self._body: Any = _MISSING

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def url(self) -> str:
        return self._response.url

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    def json(self) -> Any:
        if self._body is _MISSING:
            self._body = self._response.json()
        return self._body

    def __getattr__(self, name: str) -> Any:
        # A pagination_function written for requests.Response reads status_code, text, ...
        return getattr(self._response, name)


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int | None

    def __str__(self) -> str:
        return f"{self.scheme}://{_host_port(self.host, self.port, self.scheme)}"


def _host_port(host: str, port: int | None, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{shown}:{port}"


class _HostGuard:
    """Refuses a page URL outside the first page's origin and ``allowed_hosts``."""

    def __init__(self, first_url: str, allowed_hosts: Collection[str] | None) -> None:
        parts = urlsplit(first_url)
        scheme, host = parts.scheme.lower(), parts.hostname
        if not scheme or not host:
            raise ConfigurationError(
                f"the first page URL must be absolute, got {redact(first_url)!r}", field="url"
            )
        try:
            port = parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError as exc:
            raise ConfigurationError(f"bad port in {redact(first_url)!r}", field="url") from exc
        self.origin = _Origin(scheme, host, port)
        self.any_port: set[str] = set()
        self.with_port: set[tuple[str, int]] = set()
        if isinstance(allowed_hosts, str):
            raise ConfigurationError(
                f"allowed_hosts must be a list of host names, got the string {allowed_hosts!r}; "
                f"write allowed_hosts=[{allowed_hosts!r}]",
                field="allowed_hosts",
            )
        for entry in allowed_hosts or ():
            self._allow(entry)

    def _allow(self, entry: Any) -> None:
        problem = f"not a host or host:port: {entry!r}"
        if not isinstance(entry, str) or not entry or any(c in entry for c in "/@?# "):
            raise ConfigurationError(problem, field="allowed_hosts")
        try:
            parts = urlsplit("//" + entry)
            host, port = parts.hostname, parts.port
        except ValueError:
            raise ConfigurationError(problem, field="allowed_hosts") from None
        if not host:
            raise ConfigurationError(problem, field="allowed_hosts")
        if port is None:
            self.any_port.add(host)
        else:
            self.with_port.add((host, port))

    def check(self, url: str) -> None:
        origin = self.origin
        try:
            parts = urlsplit(url)
            scheme, host = parts.scheme.lower(), parts.hostname
            port = parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError:
            raise PaginationRefused(
                f"Refusing to fetch the next page: {redact(url)!r} is not a valid URL", url=url
            ) from None
        if origin.scheme == "https" and scheme != "https":
            raise PaginationRefused(
                f"Refusing to fetch the next page at {redact(url)}: the first page was https and "
                f"this link switches to {scheme or 'no scheme'}. hookbridge never follows a link "
                "that drops TLS; if the API really does this, report it to its provider.",
                url=url,
            )
        if scheme not in (origin.scheme, "https") or not host:
            raise PaginationRefused(
                f"Refusing to fetch the next page at {redact(url)}: only {origin.scheme} links "
                "are followed.",
                url=url,
            )
        if _Origin(scheme, host, port) == origin or host in self.any_port:
            return
        if port is not None and (host, port) in self.with_port:
            return
        suggestion = _host_port(host, port, scheme)
        raise PaginationRefused(
            f"Refusing to fetch the next page at {redact(url)}: it is not on {origin}, where "
            f"pagination started. If you trust that host, pass allowed_hosts=[{suggestion!r}].",
            url=url,
        )


def _check_limit(value: int | None, name: str) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigurationError(f"{name} must be a positive integer or None, got {value!r}")


async def paginate(
    fetch: Callable[[PageRequest], Awaitable[PageResponse]],
    first: PageRequest,
    strategy: Strategy,
    *,
    max_pages: int | None = None,
    max_items: int | None = None,
    allowed_hosts: Collection[str] | None = None,
    cursor: Mapping[str, Any] | None = None,
) -> AsyncGenerator[Page[Any], None]:
    """Fetch pages one at a time (no background task) and yield them with their cursors.

    ``cursor`` (a ``Page.cursor``) resumes right after that page; ``first`` is still needed: its
    origin is where links may lead (plus ``allowed_hosts``: names, or ``host:port``), and its
    headers are sent again (a cursor holds none). Every URL is checked before it is fetched.
    ``max_items`` cuts the last page (its cursor then resumes inside it); ``max_pages`` stops
    after that many pages.
    """
    _check_limit(max_pages, "max_pages")
    _check_limit(max_items, "max_items")
    guard = _HostGuard(first.url, allowed_hosts)
    if cursor is None:
        request, skip = strategy.prepare(first), 0
    else:
        request, skip = _parse_cursor(cursor)
        own = {name.lower() for name in request.headers}
        headers = {k: v for k, v in first.headers.items() if k.lower() not in own}
        request = replace(request, headers={**headers, **request.headers})
    number = delivered = 0
    while True:
        guard.check(request.url)
        response = _CachedResponse(await fetch(request))
        items = strategy.page_items(response)
        following = strategy.next_request(request, response, items)
        number += 1
        shown, start, skip = items[skip:], skip, 0
        page_url = _url(response) or request.url
        if max_items is not None and delivered + len(shown) >= max_items:
            take = max_items - delivered
            if take < len(shown):
                # Cut inside this page: resuming refetches it and skips what was delivered.
                position: dict[str, Any] | None = request.to_cursor(skip=start + take)
            else:
                position = following.to_cursor() if following is not None else None
            yield Page(number, shown[:take], response.status, page_url, position)
            return
        position = following.to_cursor() if following is not None else None
        yield Page(number, shown, response.status, page_url, position)
        delivered += len(shown)
        if following is None or (max_pages is not None and number >= max_pages):
            return
        if following._identity() == request._identity():
            raise MalformedResponse(
                "the server sent the same page request as the next one again; stopping instead "
                "of looping forever (check the pagination strategy, or use max_pages)",
                url=page_url,
            )
        request = following


async def iter_items(pages: AsyncIterable[Page[T]]) -> AsyncGenerator[T, None]:
    """Yield the items of every page; closing this iterator closes ``pages``."""
    try:
        async for page in pages:
            for item in page.items:
                yield item
    finally:
        await _aclose(pages)


async def _aclose(source: object) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await aclose()


class _Failure:
    """What the producer hands to the consumer: the error that ended the page stream."""

    error: BaseException | None = None


class _PageStream(ObjectReceiveStream[T]):
    """The receiving end of ``prefetch``: after the last page, raises the producer's error."""

    def __init__(self, inner: MemoryObjectReceiveStream[T], failure: _Failure) -> None:
        self._inner = inner
        self._failure = failure

    async def receive(self) -> T:
        try:
            return await self._inner.receive()
        except anyio.EndOfStream:
            error, self._failure.error = self._failure.error, None
            if error is None:
                raise
        # Raised outside the except block, so the error does not chain to EndOfStream.
        raise error

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def prefetch(
    pages: AsyncIterator[Page[T]] | Callable[[], AsyncIterator[Page[T]]], n: int
) -> AsyncIterator[ObjectReceiveStream[Page[T]]]:
    """Fetch up to ``n`` pages ahead of the consumer in a task this context manager owns.

    At most ``n + 1`` fetched pages wait for the consumer (``n`` buffered, one being handed
    over). An error that ends the stream is raised, unchanged, by the receive that follows the
    last good page; a consumer that stops early never sees errors of pages it did not ask for.
    Leaving the block cancels the producer and closes the page source.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ConfigurationError(f"prefetch must be an integer >= 0, got {n!r}", field="prefetch")
    send, receive = anyio.create_memory_object_stream[Page[T]](max_buffer_size=n)
    failure = _Failure()

    async def produce() -> None:
        # The source is iterated and closed only in this task: an async generator must not
        # straddle the task group boundary.
        source = pages() if callable(pages) else pages
        try:
            with send:
                async for page in source:
                    try:
                        await send.send(page)
                    except anyio.BrokenResourceError:
                        return  # the consumer closed its end: nobody wants more pages
        except Exception as exc:
            failure.error = exc
        finally:
            await _aclose(source)

    unwrapped: BaseException | None = None
    with send, receive:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                try:
                    yield _PageStream(receive, failure)
                finally:
                    tg.cancel_scope.cancel()
        except EXCEPTION_GROUP as group:
            unwrapped = single_leaf(group)
            if unwrapped is None:
                raise
    if unwrapped is not None:
        # Raised outside the except block so that the traceback does not show the group.
        raise unwrapped
