"""Pagination: every strategy end to end over an in-memory fetch, cursors, host guard, prefetch."""

from __future__ import annotations

import json
import string
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookbridge._errors import (
    ConfigurationError,
    MalformedResponse,
    PaginationRefused,
    RemoteStatusError,
)
from hookbridge._pagination import (
    CursorToken,
    HostPolicy,
    ItemStream,
    LinkHeader,
    NextLink,
    OffsetLimit,
    Page,
    PageNumber,
    PageRequest,
    PageStream,
    Strategy,
    iter_items,
    paginate,
    prefetch,
)
from hookbridge._pagination._json import _MISSING, _lookup
from hookbridge._pagination._json import parse_link_header as _parse_link_header
from hookbridge.adapters.http import PaginationFunction

pytestmark = pytest.mark.anyio

API = "https://api.example.com"
NOT_JSON = object()


# --------------------------------------------------------------------------------------------
# An in-memory page source. Not a network mock: the module under test only ever sees `fetch`.


def key(url: str, params: Mapping[str, Any] | None = None, cont: str | None = None) -> str:
    query = urlencode(sorted((k, str(v)) for k, v in (params or {}).items()))
    text = url + (("&" if "?" in url else "?") + query if query else "")
    return text + (f"|cont={cont}" if cont else "")


@dataclass
class Reply:
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    error: Exception | None = None
    hang: bool = False


@dataclass
class FakeResponse:
    status: int
    url: str
    headers: Mapping[str, str]
    body: Any

    def json(self) -> Any:
        if self.body is NOT_JSON:
            raise ValueError("Expecting value: line 1 column 1 (char 0)")
        return self.body


class Server:
    """Serves replies keyed by URL + params; records what was fetched and how far ahead."""

    def __init__(self, routes: dict[str, Reply]) -> None:
        self.routes = routes
        self.calls: list[str] = []
        self.requests: list[PageRequest] = []
        #: The task that fetched each page.
        self.tasks: list[int] = []
        self.consumed = 0
        self.max_ahead = 0
        self.hung_cancelled = False
        self.hanging = anyio.Event()

    async def fetch(self, request: PageRequest) -> FakeResponse:
        name = key(request.url, request.params, request.headers.get("X-Continuation"))
        self.calls.append(name)
        self.requests.append(request)
        self.tasks.append(anyio.get_current_task().id)
        self.max_ahead = max(self.max_ahead, len(self.calls) - self.consumed)
        await anyio.lowlevel.checkpoint()
        reply = self.routes.get(name)
        assert reply is not None, f"unexpected fetch of {name}"
        if reply.hang:
            self.hanging.set()
            try:
                await anyio.sleep_forever()
            finally:
                self.hung_cancelled = True
        if reply.error is not None:
            raise reply.error
        url = name.split("|")[0]
        return FakeResponse(reply.status, url, reply.headers, reply.body)


async def collect(pages: AsyncGenerator[Page[Any], None]) -> list[Page[Any]]:
    async with aclosing(pages):
        return [page async for page in pages]


def flat(pages: list[Page[Any]]) -> list[Any]:
    return [item for page in pages for item in page.items]


def roundtrip(cursor: dict[str, Any] | None) -> dict[str, Any]:
    assert cursor is not None
    loaded: dict[str, Any] = json.loads(json.dumps(cursor))
    return loaded


@dataclass
class Scenario:
    routes: dict[str, Reply]
    first: PageRequest
    strategy: Strategy
    items: list[Any]
    calls: list[str]


def odata() -> Scenario:
    base = f"{API}/v1/users"
    routes = {
        key(base, {"$top": 2}): Reply({"value": [1, 2], "@odata.nextLink": f"{base}?$skiptoken=a"}),
        # A link relative to the host, then one that is only a query.
        f"{base}?$skiptoken=a": Reply(
            {"value": [3, 4], "@odata.nextLink": "/v1/users?$skiptoken=b"}
        ),
        f"{base}?$skiptoken=b": Reply({"value": [5], "@odata.nextLink": "?$skiptoken=c"}),
        f"{base}?$skiptoken=c": Reply({"value": [6], "@odata.nextLink": None}),
    }
    return Scenario(
        routes,
        PageRequest(base, params={"$top": 2}, headers={"Authorization": "Bearer s3cr3t-token"}),
        NextLink(),
        [1, 2, 3, 4, 5, 6],
        list(routes),
    )


def nested_link() -> Scenario:
    base = f"{API}/api/list"
    routes = {
        base: Reply({"result.v1": {"rows": ["a"]}, "meta": {"next.url": "page2"}}),
        f"{API}/api/page2": Reply({"result.v1": {"rows": ["b", "c"]}, "meta": {"next.url": ""}}),
    }
    strategy = NextLink(link=("meta", "next.url"), items=["result.v1", "rows"])
    return Scenario(routes, PageRequest(base), strategy, ["a", "b", "c"], list(routes))


def link_header() -> Scenario:
    base = f"{API}/repos"
    routes = {
        base: Reply(
            [1, 2],
            {"Link": f'<{base}?page=2>; rel="next", <{base}?page=3>; rel="last"'},
        ),
        f"{base}?page=2": Reply(
            [3, 4],
            {"link": '</repos?page=1> ; rel = "prev first",  </repos?page=3>;rel=next'},
        ),
        f"{base}?page=3": Reply([5], {"LINK": '</repos?page=2>; rel="prev"'}),
    }
    return Scenario(routes, PageRequest(base), LinkHeader(), [1, 2, 3, 4, 5], list(routes))


def page_number() -> Scenario:
    base = f"{API}/things"
    routes = {
        key(base, {"page": 1, "per_page": 2}): Reply({"data": ["a", "b"]}),
        key(base, {"page": 2, "per_page": 2}): Reply({"data": ["c", "d"]}),
        key(base, {"page": 3, "per_page": 2}): Reply({"data": ["e"]}),
    }
    strategy = PageNumber(size_param="per_page", size=2, items="data")
    return Scenario(routes, PageRequest(base), strategy, list("abcde"), list(routes))


def page_number_total() -> Scenario:
    base = f"{API}/things"
    routes = {
        key(base, {"p": 0}): Reply({"rows": [1, 2], "meta": {"pages": 3}}),
        key(base, {"p": 1}): Reply({"rows": [3, 4], "meta": {"pages": 3}}),
        key(base, {"p": 2}): Reply({"rows": [5, 6], "meta": {"pages": "3"}}),
    }
    strategy = PageNumber(param="p", start=0, items="rows", total_pages="meta.pages")
    return Scenario(routes, PageRequest(base), strategy, [1, 2, 3, 4, 5, 6], list(routes))


def page_number_empty() -> Scenario:
    base = f"{API}/things"
    routes = {
        key(base, {"page": 1}): Reply([1, 2, 3]),
        key(base, {"page": 2}): Reply([4]),
        key(base, {"page": 3}): Reply([]),
    }
    return Scenario(routes, PageRequest(base), PageNumber(), [1, 2, 3, 4], list(routes))


def offset_limit() -> Scenario:
    base = f"{API}/rows"
    routes = {
        key(base, {"offset": 0, "limit": 2, "q": "x"}): Reply([1, 2]),
        key(base, {"offset": 2, "limit": 2, "q": "x"}): Reply([3, 4]),
        key(base, {"offset": 4, "limit": 2, "q": "x"}): Reply([5]),
    }
    first = PageRequest(base, params={"q": "x"})
    return Scenario(routes, first, OffsetLimit(limit=2), [1, 2, 3, 4, 5], list(routes))


def offset_total() -> Scenario:
    base = f"{API}/rows"
    routes = {
        key(base, {"offset": 0, "limit": 2}): Reply({"items": [1, 2], "total": 4}),
        key(base, {"offset": 2, "limit": 2}): Reply({"items": [3, 4], "total": 4}),
    }
    strategy = OffsetLimit(limit=2, items="items", total="total")
    return Scenario(routes, PageRequest(base), strategy, [1, 2, 3, 4], list(routes))


def cursor_token() -> Scenario:
    base = f"{API}/events"
    routes = {
        base: Reply({"items": [1], "meta": {"next": "t1"}}),
        key(base, {"cursor": "t1"}): Reply({"items": [2, 3], "meta": {"next": "t2"}}),
        key(base, {"cursor": "t2"}): Reply({"items": [4], "meta": {"next": None}}),
    }
    strategy = CursorToken(token="meta.next")
    return Scenario(routes, PageRequest(base), strategy, [1, 2, 3, 4], list(routes))


def function_get() -> Scenario:
    """An HttpOperator pagination_function: for a GET, `data` is the query."""
    base = f"{API}/search"

    def next_page(response: Any) -> dict[str, Any] | None:
        body = response.json()
        if not body["more"]:
            return None
        return {"data": {"page": body["page"] + 1}}

    routes = {
        key(base, {"q": "x"}): Reply({"page": 1, "more": True, "hits": [1, 2]}),
        key(base, {"q": "x", "page": 2}): Reply({"page": 2, "more": True, "hits": [3]}),
        key(base, {"q": "x", "page": 3}): Reply({"page": 3, "more": False, "hits": [4]}),
    }
    first = PageRequest(base, params={"q": "x"})
    strategy = PaginationFunction(next_page, items="hits")
    return Scenario(routes, first, strategy, [1, 2, 3, 4], list(routes))


def function_endpoint_headers() -> Scenario:
    """endpoint joined to base_url as HttpHook does; a continuation header kept in the cursor."""

    def next_page(response: Any) -> dict[str, Any] | None:
        body = response.json()
        if body.get("continuation") is None:
            return None
        return {"endpoint": "v2/items", "headers": {"X-Continuation": body["continuation"]}}

    routes = {
        f"{API}/v1/items": Reply({"continuation": "c1", "rows": [1]}),
        f"{API}/v2/items|cont=c1": Reply({"continuation": "c2", "rows": [2]}),
        f"{API}/v2/items|cont=c2": Reply({"continuation": None, "rows": [3]}),
    }
    strategy = PaginationFunction(
        next_page, items="rows", base_url=API, cursor_headers=["X-Continuation"]
    )
    first = PageRequest(f"{API}/v1/items", headers={"Authorization": "Basic c2VjcmV0"})
    return Scenario(routes, first, strategy, [1, 2, 3], list(routes))


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    f.__name__: f
    for f in (
        odata,
        nested_link,
        link_header,
        page_number,
        page_number_total,
        page_number_empty,
        offset_limit,
        offset_total,
        cursor_token,
        function_get,
        function_endpoint_headers,
    )
}


# --------------------------------------------------------------------------------------------
# Strategies end to end


@pytest.mark.parametrize("name", SCENARIOS)
async def test_strategy_end_to_end(name: str) -> None:
    scenario = SCENARIOS[name]()
    server = Server(scenario.routes)
    pages = await collect(paginate(server.fetch, scenario.first, scenario.strategy))
    assert flat(pages) == scenario.items
    assert server.calls == scenario.calls
    assert [page.number for page in pages] == list(range(1, len(pages) + 1))
    assert pages[-1].cursor is None
    assert all(page.cursor is not None for page in pages[:-1])
    assert all(page.status == 200 for page in pages)
    # Cursors are JSON and never hold a credential.
    for page in pages[:-1]:
        text = json.dumps(page.cursor)
        assert "s3cr3t" not in text
        assert "c2VjcmV0" not in text
        assert "uthorization" not in text


async def test_the_callers_headers_go_with_every_page() -> None:
    scenario = odata()
    server = Server(scenario.routes)
    await collect(paginate(server.fetch, scenario.first, scenario.strategy))
    assert all(r.headers["Authorization"] == "Bearer s3cr3t-token" for r in server.requests)
    # The next link carries its own query: the first request's params are not repeated.
    assert [dict(r.params) for r in server.requests] == [{"$top": 2}, {}, {}, {}]


async def test_a_pagination_function_gets_a_response_like_requests() -> None:
    seen: list[Any] = []

    def next_page(response: Any) -> None:
        seen.append((response.status_code, response.url, response.json()))

    class RequestsLike(FakeResponse):
        @property
        def status_code(self) -> int:
            return self.status

    async def fetch(request: PageRequest) -> RequestsLike:
        return RequestsLike(200, request.url, {}, [1])

    pages = await collect(paginate(fetch, PageRequest(API), PaginationFunction(next_page)))
    assert flat(pages) == [1]
    assert seen == [(200, API, [1])]


async def test_a_pagination_function_merges_json_and_data_for_post() -> None:
    def next_page(response: Any) -> dict[str, Any] | None:
        body = response.json()
        if body["next"] is None:
            return None
        return {"json": {"after": body["next"]}, "data": None, "params": {"v": "2"}}

    requests: list[PageRequest] = []

    async def fetch(request: PageRequest) -> FakeResponse:
        requests.append(request)
        after = request.json.get("after")
        body = {"rows": [after or "first"], "next": None if after else "k1"}
        return FakeResponse(200, request.url, {}, body)

    first = PageRequest(f"{API}/query", json={"q": "x", "size": 10}, method="post")
    pages = await collect(paginate(fetch, first, PaginationFunction(next_page, items="rows")))
    assert flat(pages) == ["first", "k1"]
    assert requests[1].method == "POST"
    assert requests[1].json == {"q": "x", "size": 10, "after": "k1"}
    assert dict(requests[1].params) == {"v": "2"}


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ({"extra_options": {"timeout": 1}}, "unsupported keys"),
        ("page=2", "must return a dict"),
        ({"params": ["page", 2]}, "not usable"),
    ],
)
async def test_a_pagination_function_returning_nonsense_is_a_configuration_error(
    returned: Any, message: str
) -> None:
    async def fetch(request: PageRequest) -> FakeResponse:
        return FakeResponse(200, request.url, {}, [1])

    strategy = PaginationFunction(lambda response: returned)
    with pytest.raises(ConfigurationError, match=message) as info:
        await collect(paginate(fetch, PageRequest(API), strategy))
    assert info.value.field == "pagination_function"


# --------------------------------------------------------------------------------------------
# Limits and resuming


async def test_max_pages_stops_and_its_cursor_resumes() -> None:
    scenario = page_number()
    server = Server(scenario.routes)
    pages = await collect(paginate(server.fetch, scenario.first, scenario.strategy, max_pages=2))
    assert flat(pages) == list("abcd")
    assert len(server.calls) == 2
    assert pages[-1].cursor is not None


async def test_max_items_cuts_the_last_page() -> None:
    scenario = page_number()
    server = Server(scenario.routes)
    pages = await collect(paginate(server.fetch, scenario.first, scenario.strategy, max_items=3))
    assert [list(page.items) for page in pages] == [["a", "b"], ["c"]]
    assert len(server.calls) == 2


@pytest.mark.parametrize("name", SCENARIOS)
async def test_resuming_after_any_page_yields_exactly_the_rest(name: str) -> None:
    scenario = SCENARIOS[name]()
    for stop in range(1, len(scenario.calls)):
        server = Server(scenario.routes)
        before = await collect(
            paginate(server.fetch, scenario.first, scenario.strategy, max_pages=stop)
        )
        cursor = roundtrip(before[-1].cursor)
        after = await collect(
            paginate(server.fetch, scenario.first, scenario.strategy, cursor=cursor)
        )
        assert flat(before) + flat(after) == scenario.items
        assert server.calls == scenario.calls  # nothing fetched twice
        assert after[0].number == 1


@pytest.mark.parametrize("name", SCENARIOS)
async def test_resuming_after_max_items_yields_exactly_the_rest(name: str) -> None:
    scenario = SCENARIOS[name]()
    for limit in range(1, len(scenario.items)):
        server = Server(scenario.routes)
        before = await collect(
            paginate(server.fetch, scenario.first, scenario.strategy, max_items=limit)
        )
        assert flat(before) == scenario.items[:limit]
        cursor = roundtrip(before[-1].cursor)
        after = await collect(
            paginate(server.fetch, scenario.first, scenario.strategy, cursor=cursor)
        )
        assert flat(before) + flat(after) == scenario.items


async def test_a_resumed_stream_sends_the_callers_headers_again() -> None:
    scenario = function_endpoint_headers()
    server = Server(scenario.routes)
    first_page = await collect(
        paginate(server.fetch, scenario.first, scenario.strategy, max_pages=1)
    )
    cursor = roundtrip(first_page[0].cursor)
    assert cursor["headers"] == {"X-Continuation": "c1"}
    await collect(paginate(server.fetch, scenario.first, scenario.strategy, cursor=cursor))
    assert server.requests[1].headers == {
        "Authorization": "Basic c2VjcmV0",
        "X-Continuation": "c1",
    }


async def test_limits_are_validated() -> None:
    server = Server({})
    for bad in ({"max_pages": 0}, {"max_items": -1}, {"max_items": True}):
        with pytest.raises(ConfigurationError):
            await collect(paginate(server.fetch, PageRequest(API), NextLink(), **bad))
    assert server.calls == []


# --------------------------------------------------------------------------------------------
# Cursors


def test_a_cursor_survives_json_and_holds_no_credentials() -> None:
    request = PageRequest(
        f"{API}/x",
        params={"page": 3, "tags": ["a", "b"]},
        headers={"Authorization": "Bearer abc123", "X-Continuation": "k", "Cookie": "s=1"},
        json={"filter": {"n": 1.5, "ok": True}},
        method="post",
        cursor_headers=frozenset({"x-continuation", "cookie", "authorization"}),
    )
    cursor = roundtrip(request.to_cursor())
    assert "abc123" not in json.dumps(cursor)
    assert cursor["headers"] == {"X-Continuation": "k"}
    back = PageRequest.from_cursor(cursor)
    assert back == PageRequest(
        f"{API}/x",
        params={"page": 3, "tags": ["a", "b"]},
        headers={"X-Continuation": "k"},
        json={"filter": {"n": 1.5, "ok": True}},
        method="POST",
        cursor_headers=frozenset({"x-continuation"}),
    )
    assert "abc123" not in repr(request)


@pytest.mark.parametrize(
    "request_",
    [
        PageRequest(API, data=b"raw bytes"),
        PageRequest(API, json={"x": float("nan")}),
        PageRequest(API, json={1: "int key"}),
        PageRequest(API, params={"when": object()}),
        PageRequest("https://user:pw@api.example.com/x"),
    ],
)
def test_a_request_that_cannot_be_a_cursor_says_so(request_: PageRequest) -> None:
    with pytest.raises(ConfigurationError) as info:
        request_.to_cursor()
    assert info.value.field == "cursor"
    assert "pw" not in str(info.value)


GOOD_CURSOR = {"v": 1, "method": "GET", "url": f"{API}/x", "params": {}, "json": None, "data": None}


@pytest.mark.parametrize(
    "cursor",
    [
        None,
        "https://api.example.com/x",
        [],
        {},
        {**GOOD_CURSOR, "v": 2},
        {**GOOD_CURSOR, "extra": 1},
        {**GOOD_CURSOR, "url": "/relative"},
        {**GOOD_CURSOR, "url": "https://u:p@api.example.com/"},
        {**GOOD_CURSOR, "url": "http://[::1"},
        {**GOOD_CURSOR, "method": "GET /"},
        {**GOOD_CURSOR, "params": ["page", 1]},
        {**GOOD_CURSOR, "headers": {"Authorization": "Bearer x"}},
        {**GOOD_CURSOR, "headers": {"X-A": 1}},
        {**GOOD_CURSOR, "skip": -1},
        {**GOOD_CURSOR, "skip": True},
        {**GOOD_CURSOR, "json": {"x": {1, 2}}},
    ],
)
def test_a_damaged_cursor_is_a_configuration_error(cursor: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        PageRequest.from_cursor(cursor)
    assert info.value.field == "cursor"
    assert "Page.cursor" in str(info.value)


def test_a_good_cursor_parses() -> None:
    assert PageRequest.from_cursor(GOOD_CURSOR) == PageRequest(f"{API}/x")


# --------------------------------------------------------------------------------------------
# Host guard and loops


def one_link(link: str) -> dict[str, Reply]:
    return {
        f"{API}/start": Reply({"value": [1], "@odata.nextLink": link}),
        link: Reply({"value": [2]}),
    }


@pytest.mark.parametrize(
    ("link", "hint"),
    [
        ("https://evil.example.com/start", "allowed_hosts=['evil.example.com']"),
        ("https://api.example.com:8443/start", "allowed_hosts=['api.example.com:8443']"),
        ("https://API.example.com.evil.net/x", "allowed_hosts=['api.example.com.evil.net']"),
        ("http://api.example.com/start", "drops TLS"),
        ("ftp://api.example.com/start", "drops TLS"),
    ],
)
async def test_a_link_to_another_origin_is_refused_before_it_is_fetched(
    link: str, hint: str
) -> None:
    server = Server(one_link(link))
    got: list[Page[Any]] = []

    async def consume() -> None:
        async with aclosing(paginate(server.fetch, PageRequest(f"{API}/start"), NextLink())) as it:
            async for page in it:
                got.append(page)

    with pytest.raises(PaginationRefused) as info:
        await consume()
    assert server.calls == [f"{API}/start"]
    assert flat(got) == [1]  # the page before the refusal was delivered
    assert hint in str(info.value)
    assert info.value.url == link


@pytest.mark.parametrize(
    ("link", "allowed"),
    [
        ("https://cdn.example.com/p2", ["cdn.example.com"]),
        ("https://cdn.example.com:8443/p2", ["CDN.example.com"]),
        ("https://api.example.com:8443/p2", ["api.example.com:8443"]),
        ("https://[::1]:9000/p2", ["[::1]:9000"]),
    ],
)
async def test_allowed_hosts_lets_a_link_through(link: str, allowed: list[str]) -> None:
    server = Server(one_link(link))
    pages = await collect(
        paginate(server.fetch, PageRequest(f"{API}/start"), NextLink(), allowed_hosts=allowed)
    )
    assert flat(pages) == [1, 2]


@pytest.mark.parametrize(
    ("link", "allowed"),
    [
        ("https://api.example.com:9443/p2", ["api.example.com:8443"]),
        ("http://cdn.example.com/p2", ["cdn.example.com"]),
    ],
)
async def test_allowed_hosts_is_not_a_blank_cheque(link: str, allowed: list[str]) -> None:
    server = Server(one_link(link))
    with pytest.raises(PaginationRefused):
        await collect(
            paginate(server.fetch, PageRequest(f"{API}/start"), NextLink(), allowed_hosts=allowed)
        )
    assert len(server.calls) == 1


async def test_a_cursor_to_another_host_is_refused_before_it_is_fetched() -> None:
    server = Server({})
    cursor = {**GOOD_CURSOR, "url": "https://evil.example.com/x"}
    with pytest.raises(PaginationRefused):
        await collect(paginate(server.fetch, PageRequest(API), NextLink(), cursor=cursor))
    assert server.calls == []


@pytest.mark.parametrize("allowed", ["cdn.example.com", ["a/b"], ["user@h"], [""], [5]])
async def test_bad_allowed_hosts_is_a_configuration_error(allowed: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        await collect(
            paginate(Server({}).fetch, PageRequest(API), NextLink(), allowed_hosts=allowed)
        )
    assert info.value.field == "allowed_hosts"


async def test_a_next_link_to_the_same_page_is_detected() -> None:
    server = Server({f"{API}/start": Reply({"value": [1], "@odata.nextLink": "start"})})
    with pytest.raises(MalformedResponse, match="same page"):
        # max_pages makes a missing loop check fail fast instead of hanging.
        await collect(paginate(server.fetch, PageRequest(f"{API}/start"), NextLink(), max_pages=9))
    assert len(server.calls) == 1


async def test_a_repeated_cursor_token_is_detected() -> None:
    routes = {
        f"{API}/e": Reply({"items": [1], "next_cursor": "t"}),
        key(f"{API}/e", {"cursor": "t"}): Reply({"items": [2], "next_cursor": "t"}),
    }
    server = Server(routes)
    with pytest.raises(MalformedResponse, match="same page"):
        await collect(paginate(server.fetch, PageRequest(f"{API}/e"), CursorToken(), max_pages=9))
    assert len(server.calls) == 2


# --------------------------------------------------------------------------------------------
# Malformed pages


@pytest.mark.parametrize(
    ("strategy", "reply", "message"),
    [
        (NextLink(), Reply({"items": []}), "expected a list of items at 'value', found nothing"),
        (NextLink(), Reply({"value": {"a": 1}}), "found a dict"),
        (NextLink(), Reply({"value": None}), "found null"),
        (NextLink(), Reply([1, 2]), "no object"),
        (NextLink(), Reply({"value": [], "@odata.nextLink": 5}), "is a int, not a URL"),
        (NextLink(), Reply({"value": [], "@odata.nextLink": "http://[::1"}), "not a URL"),
        (NextLink(), Reply({"value": [], "@odata.nextLink": "https://u:p@x/"}), "password"),
        (NextLink(), Reply(NOT_JSON), "not JSON"),
        (LinkHeader(), Reply([], {"Link": "<https://api.example.com/2"}), "Link header"),
        (LinkHeader(), Reply([], {"Link": 'https://x; rel="next"'}), "Link header"),
        (LinkHeader(items="data"), Reply({"data": "abc"}), "found a str"),
        (PageNumber(total_pages="pages"), Reply({"x": 1}), "found a dict"),
        (PageNumber(items="r", total_pages="n"), Reply({"r": [1], "n": "many"}), "integer"),
        (PageNumber(items="r", total_pages="n"), Reply({"r": [1]}), "found nothing"),
        (OffsetLimit(limit=1, total="t"), Reply({"x": 1}), "found a dict"),
        (OffsetLimit(limit=1, items="r", total="t"), Reply({"r": [1], "t": 2.5}), "integer"),
        (CursorToken(), Reply({"items": [1], "next_cursor": {"a": 1}}), "not a string"),
        (CursorToken(token="m.next"), Reply({"items": [1], "m": [1]}), "no object"),
    ],
)
async def test_a_malformed_page_raises_malformed_response(
    strategy: Strategy, reply: Reply, message: str
) -> None:
    server = Server({key(f"{API}/x", strategy.prepare(PageRequest(f"{API}/x")).params): reply})
    with pytest.raises(MalformedResponse, match=message) as info:
        await collect(paginate(server.fetch, PageRequest(f"{API}/x"), strategy))
    assert info.value.url is not None
    assert "p@" not in str(info.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: NextLink(link=""),
        lambda: NextLink(items=[]),
        lambda: NextLink(items=["a", 1]),  # type: ignore[list-item]
        lambda: LinkHeader(rel=""),
        lambda: PageNumber(start=-1),
        lambda: PageNumber(size=0),
        lambda: PageNumber(size_param="per_page"),
        lambda: OffsetLimit(limit=0),
        lambda: OffsetLimit(offset_param="x", limit_param="x"),
        lambda: CursorToken(param=""),
        lambda: PaginationFunction("not callable"),  # type: ignore[arg-type]
        lambda: PaginationFunction(print, cursor_headers=["X-Auth-Token"]),
        lambda: PaginationFunction(print, cursor_headers="X-Continuation"),
    ],
)
def test_strategy_arguments_are_validated(make: Callable[[], Any]) -> None:
    with pytest.raises(ConfigurationError):
        make()


async def test_a_conflicting_page_size_is_a_configuration_error() -> None:
    first = PageRequest(API, params={"limit": 50})
    with pytest.raises(ConfigurationError, match="set it in one place") as info:
        await collect(paginate(Server({}).fetch, first, OffsetLimit(limit=100)))
    assert info.value.field == "limit"


# --------------------------------------------------------------------------------------------
# prefetch


def many_pages(count: int) -> dict[str, Reply]:
    routes = {key(f"{API}/n", {"page": i}): Reply([i]) for i in range(1, count + 1)}
    routes[key(f"{API}/n", {"page": count + 1})] = Reply([])
    return routes


@pytest.mark.parametrize("n", [0, 1, 3])
async def test_prefetch_holds_at_most_n_plus_one_pages(n: int) -> None:
    server = Server(many_pages(10))
    got: list[int] = []
    with anyio.fail_after(10):
        async with prefetch(paginate(server.fetch, PageRequest(f"{API}/n"), PageNumber()), n) as s:
            while True:
                # A slow consumer: the producer gets every chance to run ahead. It is also never
                # found waiting, so a page counts as consumed the moment it leaves the stream.
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
                try:
                    page = await s.receive()
                except anyio.EndOfStream:
                    break
                server.consumed += 1
                got.extend(page.items)
    assert got == list(range(1, 11))
    assert server.max_ahead == n + 1


async def test_prefetch_takes_a_function_that_makes_the_pages() -> None:
    server = Server(many_pages(3))
    with anyio.fail_after(10):
        async with prefetch(
            lambda: paginate(server.fetch, PageRequest(f"{API}/n"), PageNumber()), 1
        ) as stream:
            got = [item async for item in iter_items(stream)]
    assert got == [1, 2, 3]


@pytest.mark.parametrize("slow", [False, True])
async def test_prefetch_raises_the_fetch_error_itself_after_the_good_pages(slow: bool) -> None:
    routes = many_pages(5)
    routes[key(f"{API}/n", {"page": 3})] = Reply(
        None, error=RemoteStatusError("boom", status=500, url=f"{API}/n")
    )
    server = Server(routes)
    got: list[int] = []

    async def drain(stream: AsyncIterator[Page[int]]) -> None:
        async for page in stream:
            got.extend(page.items)
            for _ in range(20 if slow else 0):
                await anyio.lowlevel.checkpoint()

    with anyio.fail_after(10):
        async with prefetch(paginate(server.fetch, PageRequest(f"{API}/n"), PageNumber()), 2) as s:
            with pytest.raises(RemoteStatusError, match="boom"):
                await drain(s)
            with pytest.raises(anyio.EndOfStream):
                await s.receive()
    assert got == [1, 2]


async def test_prefetch_lets_the_consumers_own_error_through_unwrapped() -> None:
    server = Server(many_pages(5))

    async def consume() -> None:
        async with prefetch(paginate(server.fetch, PageRequest(f"{API}/n"), PageNumber()), 1) as s:
            await s.receive()
            raise KeyError("mine")

    with anyio.fail_after(10), pytest.raises(KeyError, match="mine"):
        await consume()


async def test_a_consumer_that_stops_early_leaves_nothing_running() -> None:
    server = Server(many_pages(50))
    pages = paginate(server.fetch, PageRequest(f"{API}/n"), PageNumber())
    with anyio.fail_after(10):
        async with prefetch(pages, 2) as stream:
            await stream.receive()
    assert pages.ag_frame is None  # type: ignore[attr-defined]  # the generator was closed
    assert len(server.calls) <= 4


async def test_cancelling_the_consumer_mid_stream_cancels_the_fetch() -> None:
    routes = many_pages(5)
    routes[key(f"{API}/n", {"page": 3})] = Reply(None, hang=True)
    server = Server(routes)
    pages = paginate(server.fetch, PageRequest(f"{API}/n"), PageNumber())
    got: list[int] = []
    with anyio.fail_after(10):
        with anyio.CancelScope() as scope:
            async with prefetch(pages, 4) as stream:
                async for page in stream:
                    got.extend(page.items)
                    if len(got) == 2:
                        await server.hanging.wait()
                        scope.cancel()
        assert scope.cancelled_caught
    assert got == [1, 2]
    assert server.hung_cancelled
    assert pages.ag_frame is None  # type: ignore[attr-defined]


async def test_prefetch_validates_n() -> None:
    with pytest.raises(ConfigurationError):
        async with prefetch(paginate(Server({}).fetch, PageRequest(API), NextLink()), -1):
            pass


async def test_iter_items_flattens_and_closes_its_source() -> None:
    server = Server(many_pages(5))
    pages = paginate(server.fetch, PageRequest(f"{API}/n"), PageNumber())
    got = []
    async with aclosing(iter_items(pages)) as items:
        async for item in items:
            got.append(item)
            if item == 2:
                break
    assert got == [1, 2]
    assert pages.ag_frame is None  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# PageStream with prefetch: page 1 in the consumer's task, the rest from the prefetching task


def triples(count: int) -> dict[str, Reply]:
    """Pages 1..count of three items each (page i holds 3i-2..3i), then an empty page."""
    routes = {
        key(f"{API}/n", {"page": i}): Reply([3 * i - 2, 3 * i - 1, 3 * i])
        for i in range(1, count + 1)
    }
    routes[key(f"{API}/n", {"page": count + 1})] = Reply([])
    return routes


def numbered(server: Server, prefetch: int, **options: Any) -> PageStream[Any]:
    return PageStream(
        server.fetch, lambda: PageRequest(f"{API}/n"), PageNumber(), prefetch=prefetch, **options
    )


async def drain(iterator: AsyncIterator[Any], into: list[Any]) -> None:
    async for value in iterator:
        into.append(value)


async def read_all(stream: PageStream[Any]) -> list[Page[Any]]:
    with anyio.fail_after(10):
        async with stream as pages:
            return [page async for page in pages]


async def test_prefetch_fetches_page_one_in_the_consumers_own_task() -> None:
    server = Server(many_pages(4))
    me = anyio.get_current_task().id
    with anyio.fail_after(10):
        async with numbered(server, 2) as pages:
            first = await pages.__anext__()
            # No task start and no handoff before the first page: this task fetched it.
            assert server.tasks == [me]
            rest = [page async for page in pages]
    assert [page.number for page in [first, *rest]] == [1, 2, 3, 4, 5]
    producer = set(server.tasks[1:])
    assert len(producer) == 1 and me not in producer


async def test_prefetch_fetches_page_two_while_the_consumer_holds_page_one() -> None:
    server = Server(many_pages(4))
    with anyio.fail_after(10):
        async with numbered(server, 1) as pages:
            first = await pages.__anext__()
            # Not asking for more: the prefetching task started as page 1 arrived.
            while len(server.calls) < 3:
                await anyio.lowlevel.checkpoint()
            assert first.items == [1]
            assert [page.items async for page in pages] == [[2], [3], [4], []]


class Recording:
    """A strategy that counts the next links it was asked to work out."""

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.asked = 0

    def prepare(self, request: PageRequest) -> PageRequest:
        return self.inner.prepare(request)

    def page_items(self, response: Any) -> list[Any]:
        return self.inner.page_items(response)

    def next_request(self, request: PageRequest, response: Any, items: Any) -> PageRequest | None:
        self.asked += 1
        return self.inner.next_request(request, response, items)


def linked(count: int, size: int = 2) -> dict[str, Reply]:
    """Pages 1..count of ``size`` items each, joined by @odata.nextLink."""
    return {
        f"{API}/p{i}": Reply(
            {
                "value": [f"{i}.{j}" for j in range(size)],
                **({"@odata.nextLink": f"{API}/p{i + 1}"} if i < count else {}),
            }
        )
        for i in range(1, count + 1)
    }


@pytest.mark.parametrize("prefetch", [0, 2])
async def test_the_first_item_does_not_wait_for_the_next_link(prefetch: int) -> None:
    # The next link is read, resolved and checked when the next page is wanted, and with
    # prefetch the prefetching task starts once the first item is out: neither is part of the
    # first item's wait. Prefetching still overlaps the consumer's work on page 1.
    server = Server(linked(3))
    strategy = Recording(NextLink())
    stream = PageStream(server.fetch, lambda: PageRequest(f"{API}/p1"), strategy, prefetch=prefetch)
    with anyio.fail_after(10):
        async with ItemStream(stream) as items:
            first = await items.__anext__()
            await anyio.wait_all_tasks_blocked()
            assert (first, strategy.asked, len(server.calls)) == ("1.0", 0, 1)
            second = await items.__anext__()
            await anyio.wait_all_tasks_blocked()
            assert second == "1.1"
            assert len(server.calls) == (3 if prefetch else 1)  # page 1 still being read
            rest = [item async for item in items]
    assert rest == ["2.0", "2.1", "3.0", "3.1"]
    assert strategy.asked == 3


async def test_a_page_works_out_its_cursor_when_it_is_read() -> None:
    server = Server(linked(2))
    strategy = Recording(NextLink())
    pages = await collect(paginate(server.fetch, PageRequest(f"{API}/p1"), strategy, max_pages=1))
    assert strategy.asked == 0  # max_pages: the stream ended without reading the next link
    assert pages[0].cursor == PageRequest(f"{API}/p2").to_cursor()
    assert strategy.asked == 1
    assert pages[0].cursor == PageRequest(f"{API}/p2").to_cursor()
    assert strategy.asked == 1  # once
    with pytest.raises(AttributeError, match="read-only"):
        pages[0].number = 2  # type: ignore[misc]


async def test_a_bad_next_link_read_through_the_cursor_is_redacted_too() -> None:
    server = Server({f"{API}/1": Reply({"value": [1], "@odata.nextLink": "https://x:tok3n/"})})
    stream = PageStream(
        server.fetch,
        lambda: PageRequest(f"{API}/1"),
        NextLink(),
        hosts=HostPolicy(API, secrets=["tok3n"]),
    )
    async with stream as pages:
        page = await pages.__anext__()
        with pytest.raises(MalformedResponse, match="not a URL") as error:
            page.cursor  # noqa: B018 - reading it works it out
        assert "tok3n" not in str(error.value)
        with pytest.raises(MalformedResponse) as again:
            await pages.__anext__()
        assert again.value is error.value  # worked out once


async def test_a_one_page_stream_with_prefetch_starts_no_task() -> None:
    server = Server({f"{API}/one": Reply({"value": [1, 2]})})
    stream = PageStream(server.fetch, lambda: PageRequest(f"{API}/one"), NextLink(), prefetch=2)
    pages = await read_all(stream)
    assert [(page.number, page.items, page.cursor) for page in pages] == [(1, [1, 2], None)]
    assert server.tasks == [anyio.get_current_task().id]


@pytest.mark.parametrize("n", [1, 3])
async def test_a_page_stream_holds_at_most_n_plus_one_pages(n: int) -> None:
    server = Server(many_pages(10))
    got: list[int] = []
    with anyio.fail_after(10):
        async with numbered(server, n) as pages:
            while True:
                for _ in range(20):  # a slow consumer (see the prefetch() test above)
                    await anyio.lowlevel.checkpoint()
                try:
                    page = await pages.__anext__()
                except StopAsyncIteration:
                    break
                server.consumed += 1
                got.extend(page.items)
    assert got == list(range(1, 11))
    assert server.max_ahead == n + 1


async def test_a_cancelled_first_receive_leaves_page_one_to_the_next() -> None:
    server = Server(many_pages(2))
    scope = anyio.CancelScope()

    async def fetch(request: PageRequest) -> FakeResponse:
        if not server.calls:
            server.calls.append("cancelled")
            scope.cancel()
            await anyio.sleep_forever()
        return await server.fetch(request)

    stream = PageStream(fetch, lambda: PageRequest(f"{API}/n"), PageNumber(), prefetch=2)
    with anyio.fail_after(10):
        async with stream as pages:
            with scope:
                await pages.__anext__()
            assert scope.cancelled_caught
            got = [page async for page in pages]
    assert [(page.number, page.items) for page in got] == [(1, [1]), (2, [2]), (3, [])]
    assert server.calls[:2] == ["cancelled", key(f"{API}/n", {"page": 1})]


@pytest.mark.parametrize(
    "limits",
    [
        {},
        {"max_pages": 1},
        {"max_pages": 2},
        {"max_items": 2},  # cut inside page 1
        {"max_items": 3},  # the end of page 1
        {"max_items": 4},  # cut inside page 2, which the prefetching task fetched
        {"max_items": 9},
        {"max_pages": 2, "max_items": 5},
        {"max_pages": 3, "max_items": 12},
    ],
)
@pytest.mark.parametrize("prefetch", [1, 2])
async def test_prefetch_numbers_and_limits_pages_as_without_it(
    limits: dict[str, int], prefetch: int
) -> None:
    plain = Server(triples(4))
    expected = await collect(
        paginate(plain.fetch, PageRequest(f"{API}/n"), PageNumber(), **limits)  # type: ignore[arg-type]
    )
    server = Server(triples(4))
    pages = await read_all(numbered(server, prefetch, **limits))
    seen = [(page.number, list(page.items), page.cursor) for page in pages]
    assert seen == [(page.number, list(page.items), page.cursor) for page in expected]
    assert [page.number for page in pages] == list(range(1, len(pages) + 1))
    if "max_items" in limits:
        assert len(flat(pages)) == min(limits["max_items"], 3 * limits.get("max_pages", 5))
    assert server.calls == plain.calls  # the prefetching task fetches nothing beyond the limits


async def test_prefetch_after_a_cut_page_resumes_inside_it() -> None:
    server = Server(triples(4))
    pages = await read_all(numbered(server, 2, max_items=4))
    assert [page.items for page in pages] == [[1, 2, 3], [4]]
    rest = await read_all(numbered(Server(triples(4)), 2, cursor=roundtrip(pages[-1].cursor)))
    # Page 2 again (skipping what was delivered), 3, 4 and the empty page, numbered from 1.
    assert [page.number for page in rest] == [1, 2, 3, 4]
    assert flat(rest) == list(range(5, 13))


@pytest.mark.parametrize("prefetch", [0, 2])
async def test_an_error_on_page_one_is_raised_by_the_first_receive(prefetch: int) -> None:
    routes = many_pages(3)
    routes[key(f"{API}/n", {"page": 1})] = Reply(
        None, error=RemoteStatusError("boom", status=500, url=f"{API}/n")
    )
    server = Server(routes)
    with anyio.fail_after(10):
        async with numbered(server, prefetch) as pages:
            with pytest.raises(RemoteStatusError, match="boom"):
                await pages.__anext__()
            with pytest.raises(StopAsyncIteration):
                await pages.__anext__()
    assert len(server.calls) == 1


@pytest.mark.parametrize("prefetch", [0, 1, 2])
async def test_an_error_on_page_two_comes_after_page_one(prefetch: int) -> None:
    routes = many_pages(3)
    routes[key(f"{API}/n", {"page": 2})] = Reply(
        None, error=RemoteStatusError("boom", status=500, url=f"{API}/n")
    )
    server = Server(routes)
    got: list[Page[Any]] = []
    with anyio.fail_after(10):
        async with numbered(server, prefetch) as pages:
            with pytest.raises(RemoteStatusError, match="boom"):
                await drain(pages, got)
            with pytest.raises(StopAsyncIteration):
                await pages.__anext__()
    assert [(page.number, page.items) for page in got] == [(1, [1])]
    assert len(server.calls) == 2


@pytest.mark.parametrize("prefetch", [0, 1, 2])
@pytest.mark.parametrize(
    ("routes", "pages", "message"),
    [
        # Page 1 links to itself: found by the prefetching task, from page 1's request.
        ({"a": "a"}, 1, "same page request as the next one again after page 1"),
        # Page 2 links back to page 1.
        ({"a": "b", "b": "a"}, 2, "same page request of page 1 again after page 2"),
        ({"a": "b", "b": "c", "c": "a"}, 3, "of page 1 again after page 3"),
    ],
)
async def test_a_loop_back_to_page_one_is_found_with_prefetch(
    routes: dict[str, str], pages: int, message: str, prefetch: int
) -> None:
    server = Server(
        {f"{API}/{at}": Reply({"value": [at], "@odata.nextLink": to}) for at, to in routes.items()}
    )
    stream = PageStream(
        server.fetch, lambda: PageRequest(f"{API}/a"), NextLink(), prefetch=prefetch, max_pages=9
    )
    got: list[Page[Any]] = []
    with anyio.fail_after(10):
        async with stream as iterator:
            with pytest.raises(MalformedResponse, match=message):
                await drain(iterator, got)
    assert [page.number for page in got] == list(range(1, pages + 1))
    assert len(server.calls) == pages


@pytest.mark.parametrize("prefetch", [0, 2])
@pytest.mark.parametrize("bad_page", [1, 2])
async def test_prefetch_redacts_secrets_in_page_errors(prefetch: int, bad_page: int) -> None:
    bad = {"value": [bad_page], "@odata.nextLink": "https://x:s3cret-token/"}
    routes = {
        f"{API}/1": Reply({"value": [1], "@odata.nextLink": f"{API}/2"}),
        f"{API}/2": Reply({"value": [2]}),
        f"{API}/{bad_page}": Reply(bad),
    }
    server = Server(routes)
    stream = PageStream(
        server.fetch,
        lambda: PageRequest(f"{API}/1"),
        NextLink(),
        hosts=HostPolicy(API, secrets=["s3cret-token"]),
        prefetch=prefetch,
    )
    got: list[Any] = []
    with anyio.fail_after(10):
        async with ItemStream(stream) as items:
            with pytest.raises(MalformedResponse, match="not a URL") as error:
                await drain(items, got)
    # The page whose next link is bad is delivered (its items are good); the error comes when
    # the page after it is wanted.
    assert got == list(range(1, bad_page + 1))
    assert "s3cret" not in str(error.value) and "***" in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__


@pytest.mark.parametrize("fails", [False, True])
async def test_leaving_a_prefetching_stream_cancels_its_fetch(fails: bool) -> None:
    routes = many_pages(5)
    routes[key(f"{API}/n", {"page": 2})] = Reply(None, hang=True)
    server = Server(routes)

    async def consume() -> None:
        async with numbered(server, 2) as pages:
            assert (await pages.__anext__()).items == [1]
            await server.hanging.wait()
            if fails:
                raise KeyError("mine")

    with anyio.fail_after(10):
        if fails:
            # The consumer's own error leaves the block unwrapped (no exception group).
            with pytest.raises(KeyError, match="mine"):
                await consume()
        else:
            await consume()
    assert server.hung_cancelled
    assert len(server.calls) == 2


# --------------------------------------------------------------------------------------------
# Parsers: properties


def test_a_verbatim_key_wins_over_dots() -> None:
    body = {"@odata.nextLink": "x", "@odata": {"nextLink": "y"}, "a": {"b.c": 1, "b": {"c": 2}}}
    assert _lookup(body, "@odata.nextLink") == "x"
    assert _lookup(body, ["@odata", "nextLink"]) == "y"
    assert _lookup(body, "a.b.c") == 1
    assert _lookup(body, "a.b.d") is _MISSING
    assert _lookup({"a": None}, "a.b") is _MISSING
    with pytest.raises(TypeError):
        _lookup({"a": [1]}, "a.b")


KEYS = st.text(alphabet="ab.@_", max_size=4)


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(keys=st.lists(KEYS, min_size=1, max_size=5), value=st.integers())
def test_lookup_finds_a_value_by_its_keys_or_its_dotted_path(keys: list[str], value: int) -> None:
    body: Any = value
    for name in reversed(keys):
        body = {name: body}
    assert _lookup(body, keys) == value
    assert _lookup(body, ".".join(keys)) == value


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["value", "items", "data", "next", "meta", "total", "a.b", "a"])
            | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=15,
)


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(body=JSON, path=st.text(alphabet="ab.", min_size=1, max_size=6) | st.lists(KEYS, min_size=1))
def test_lookup_on_any_json_returns_or_raises_type_error(body: Any, path: Any) -> None:
    with suppress(TypeError):
        _lookup(body, path)


TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1)
URI = st.text(alphabet=string.ascii_letters + string.digits + "/:?&=,;.-_~%+\"' ", max_size=30).map(
    lambda text: text.strip()
)
PARAM_VALUE = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
LINKS = st.lists(
    st.tuples(
        URI,
        st.dictionaries(TOKEN.map(str.lower), PARAM_VALUE, max_size=4),
    ),
    max_size=5,
)
SPACE = st.sampled_from(["", " ", "  ", "\t", " \t "])


def format_links(draw: Callable[..., Any], links: list[tuple[str, dict[str, str]]]) -> str:
    values = []
    for uri, params in links:
        text = f"<{draw(SPACE)}{uri}{draw(SPACE)}>"
        for name, value in params.items():
            shown_name = draw(st.sampled_from([name, name.upper()]))
            token_safe = value and all(
                c in string.ascii_letters + string.digits + "-._~" for c in value
            )
            if token_safe and draw(st.booleans()):
                shown = value
            else:
                shown = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            eq = f"{draw(SPACE)}={draw(SPACE)}"
            text += f"{draw(SPACE)};{draw(SPACE)}{shown_name}{eq}{shown}"
        values.append(text)
        if draw(st.integers(0, 4)) == 0:
            values.append(draw(SPACE))  # empty list elements are allowed in #rule lists
    return ",".join(f"{draw(SPACE)}{value}{draw(SPACE)}" for value in values)


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(data=st.data(), links=LINKS)
def test_link_header_round_trip(
    data: st.DataObject, links: list[tuple[str, dict[str, str]]]
) -> None:
    header = format_links(data.draw, links)
    assert _parse_link_header(header) == links


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(text=st.text(max_size=60))
def test_link_header_parser_raises_only_value_error(text: str) -> None:
    try:
        links = _parse_link_header(text)
    except ValueError:
        return
    assert all(isinstance(uri, str) and isinstance(params, dict) for uri, params in links)


def test_link_header_first_rel_wins_and_rel_lists_match() -> None:
    links = _parse_link_header('<a>; REL="prev next"; rel=last; title="x, y; z", <b>;rel=last')
    assert links == [("a", {"rel": "prev next", "title": "x, y; z"}), ("b", {"rel": "last"})]


STRATEGIES: list[Strategy] = [
    NextLink(),
    NextLink(link="links.next", items="data.items"),
    LinkHeader(),
    LinkHeader(rel="last", items="value"),
    PageNumber(),
    PageNumber(size_param="size", size=2, items="items", total_pages="meta.total"),
    OffsetLimit(limit=2, items="data", total="total"),
    CursorToken(),
    CursorToken(token="meta.next", items=None),
    PaginationFunction(
        lambda r: (
            {"endpoint": r.json()["next"]}
            if isinstance(r.json(), dict) and isinstance(r.json().get("next"), str)
            else None
        ),
        items="items",
    ),
]


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    data=st.data(),
    body=JSON,
    index=st.integers(0, len(STRATEGIES) - 1),
    link=st.text(max_size=40) | LINKS,
)
def test_strategies_on_any_json_return_well_typed_results_or_malformed_response(
    data: st.DataObject, body: Any, index: int, link: Any
) -> None:
    strategy = STRATEGIES[index]
    header = link if isinstance(link, str) else format_links(data.draw, link)
    response = FakeResponse(200, f"{API}/v1/x?page=1", {"Link": header}, body)
    request = strategy.prepare(PageRequest(f"{API}/v1/x", params={"q": "y"}))
    error: MalformedResponse | None = None
    try:
        items = strategy.page_items(response)
        following = strategy.next_request(request, response, items)
    except MalformedResponse as exc:
        error = exc
    if error is not None:
        assert error.url == response.url
        return
    assert isinstance(items, list)
    if following is not None:
        assert isinstance(following, PageRequest)
        back = PageRequest.from_cursor(roundtrip(following.to_cursor()))
        assert back == following
