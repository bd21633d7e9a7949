"""Protocol-neutral pagination strategies: next link, Link header, page number, offset, cursor."""

from __future__ import annotations

from collections.abc import (
    Callable,
    Sequence,
)
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from .._errors import (
    ConfigurationError,
    HookBridgeError,
    MalformedResponse,
)
from ._json import _MISSING, _lookup, _show_path, check_path, parse_link_header
from ._request import JsonPath, PageRequest, PageResponse

__all__ = [
    "CursorToken",
    "ItemsAt",
    "LinkHeader",
    "NextLink",
    "OffsetLimit",
    "PageNumber",
    "Strategy",
    "items_at",
    "next_url",
]

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


def items_at(response: PageResponse, path: JsonPath | None) -> list[Any]:
    """The list of items at ``path`` in a page body (the whole body when None)."""
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
    return replace(request, url=next_url(_url(response) or request.url, link, urljoin), params={})


def next_url(base: str, link: str, join: Callable[[str, str], str]) -> str:
    """``link`` resolved against ``base`` by ``join``; MalformedResponse when it is no URL."""
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


class ItemsAt:
    """A strategy's common half: the items are at the ``items`` JSON path (None: the body).

    ``prepare`` sends the first request as given; strategies that set query parameters on it
    override it. Subclass it for a strategy of your own (a frozen dataclass with ``items``).
    """

    items: JsonPath | None

    def prepare(self, request: PageRequest) -> PageRequest:
        return request

    def page_items(self, response: PageResponse) -> list[Any]:
        return items_at(response, self.items)


@dataclass(frozen=True, kw_only=True)
class NextLink(ItemsAt):
    """The body holds the URL of the next page (``@odata.nextLink``, ``links.next``, ...).

    The link may be relative to the page's URL; it carries the query, so the request's own
    params are dropped. A missing, null or empty link ends the stream.
    """

    link: JsonPath = "@odata.nextLink"
    items: JsonPath | None = "value"

    def __post_init__(self) -> None:
        object.__setattr__(self, "link", check_path(self.link, "link", optional=False))
        object.__setattr__(self, "items", check_path(self.items, "items", optional=True))

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
class LinkHeader(ItemsAt):
    """An RFC 8288 ``Link`` response header names the next page (``rel="next"``), as on GitHub.

    ``items`` is the JSON path of the list, or None when the body is the list.
    """

    rel: str = "next"
    items: JsonPath | None = None

    def __post_init__(self) -> None:
        _check_name(self.rel, "rel")
        object.__setattr__(self, "items", check_path(self.items, "items", optional=True))

    def next_request(
        self, request: PageRequest, response: PageResponse, items: Sequence[Any]
    ) -> PageRequest | None:
        # A multi-valued header may come as repeated keys (multidict) or one comma-joined value.
        values = [str(v) for k, v in response.headers.items() if str(k).lower() == "link"]
        try:
            links = parse_link_header(",".join(values))
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
class PageNumber(ItemsAt):
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
        object.__setattr__(self, "items", check_path(self.items, "items", optional=True))
        object.__setattr__(
            self, "total_pages", check_path(self.total_pages, "total_pages", optional=True)
        )

    def prepare(self, request: PageRequest) -> PageRequest:
        params = dict(request.params)
        params[self.param] = _int_param(request, self.param, self.start)
        if self.size_param is not None and self.size is not None:
            _set_fixed(params, self.size_param, self.size)
        return replace(request, params=params)

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
class OffsetLimit(ItemsAt):
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
        object.__setattr__(self, "items", check_path(self.items, "items", optional=True))
        object.__setattr__(self, "total", check_path(self.total, "total", optional=True))

    def prepare(self, request: PageRequest) -> PageRequest:
        params = dict(request.params)
        params[self.offset_param] = _int_param(request, self.offset_param, 0)
        _set_fixed(params, self.limit_param, self.limit)
        return replace(request, params=params)

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
class CursorToken(ItemsAt):
    """The body holds an opaque token that goes into a query parameter for the next page.

    A missing, null or empty token ends the stream.
    """

    token: JsonPath = "next_cursor"
    param: str = "cursor"
    items: JsonPath | None = "items"

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", check_path(self.token, "token", optional=False))
        _check_name(self.param, "param")
        object.__setattr__(self, "items", check_path(self.items, "items", optional=True))

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
