"""Fuzzing every parser of remote data: only declared hookbridge errors ever come out.

Pagination strategies fed arbitrary JSON bodies and Link headers, the RFC 8288 parser,
``parse_retry_after``, resume cursors, ``PaginationFunction`` results, whole ``paginate`` runs
over hostile pages, and the HTTP adapter's error-status and body decoding. A KeyError, TypeError,
RecursionError (or any other undeclared exception) escaping any of them fails the test.

Examples per test: the ``hookbridge-fuzz`` profile (tests/reliability/conftest.py): few and
derandomized in CI, ``HOOKBRIDGE_FUZZ=long`` for many.
"""

from __future__ import annotations

import contextlib
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from hookbridge import (
    ConfigurationError,
    CursorToken,
    HookBridgeError,
    LinkHeader,
    MalformedResponse,
    NextLink,
    OffsetLimit,
    PageNumber,
    PageRequest,
    RemoteStatusError,
    Throttled,
    paginate,
    parse_retry_after,
)
from hookbridge.adapter import excerpt, parse_link_header, redact
from hookbridge.adapters.http import PaginationFunction, Response
from hookbridge.adapters.http._translate import status_error

FUZZ = settings.get_profile("hookbridge-fuzz")
API = "https://api.example.com"
NOW = 1_750_000_000.0

# -- what remote data looks like ------------------------------------------------------------------

KEYS = st.sampled_from(
    ["value", "items", "data", "@odata.nextLink", "next", "next_cursor", "total", "meta", "links"]
) | st.text(max_size=6)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", "/p/2", "?page=2", "https://evil.example/", "http://[::1", "//x", "5"])
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=20,
)
URLISH = st.text(alphabet=string.printable, max_size=40) | st.sampled_from(
    [
        f"{API}/v1/x?page=2",
        "/v1/x?page=3",
        "https://u:p@api.example.com/",
        "http://api.example.com/",
        "https://api.example.com:99999/",
        "https://[::1/",
        "javascript:alert(1)",
    ]
)
LINK_HEADER = st.text(max_size=80) | st.lists(
    st.tuples(URLISH, st.sampled_from(['rel="next"', "rel=next", 'rel="prev next"', "rel", ";;"])),
    max_size=4,
).map(lambda links: ", ".join(f"<{url}>; {param}" for url, param in links))
HEADERS = st.dictionaries(
    st.sampled_from(["Link", "link", "Content-Type", "X-Other"]), LINK_HEADER, max_size=3
)


class Unparsable(Exception):
    """What a body that is not JSON raises in the response object (a parser's own error)."""


@dataclass
class FuzzResponse:
    """A page as a strategy sees it: status, URL, headers, and a body that may not parse."""

    status: int
    url: str
    headers: Mapping[str, str]
    body: Any
    raises: BaseException | None = None

    def json(self) -> Any:
        if self.raises is not None:
            raise self.raises
        return self.body


BODY_ERRORS = st.none() | st.sampled_from(
    [
        ValueError("Expecting value"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        RecursionError("maximum recursion depth exceeded"),
        Unparsable("garbage"),
    ]
)

STRATEGIES = [
    NextLink(),
    NextLink(link="links.next", items="data"),
    NextLink(link=["meta", "next"], items=None),
    LinkHeader(),
    LinkHeader(rel="last", items="value"),
    PageNumber(),
    PageNumber(size_param="size", size=2, items="items", total_pages="meta.total"),
    OffsetLimit(limit=2, items="data", total="total"),
    OffsetLimit(limit=1),
    CursorToken(),
    CursorToken(token="meta.next", items=None),
]


def _check_next(following: PageRequest | None) -> None:
    if following is None:
        return
    assert isinstance(following, PageRequest)
    try:
        cursor = following.to_cursor()
    except ConfigurationError:
        return  # e.g. a next link with a password in it: refused, not stored
    again = PageRequest.from_cursor(json.loads(json.dumps(cursor)))
    assert again._identity() == following._identity()


# -- pagination strategies ----------------------------------------------------------------------


@FUZZ
@given(
    index=st.integers(0, len(STRATEGIES) - 1),
    body=JSON,
    headers=HEADERS,
    raises=BODY_ERRORS,
    url=st.sampled_from([f"{API}/v1/x?page=1", "", f"{API}/"]),
)
def test_strategies_on_any_page_return_a_request_or_raise_malformed_response(
    index: int, body: Any, headers: dict[str, str], raises: BaseException | None, url: str
) -> None:
    strategy = STRATEGIES[index]
    response = FuzzResponse(200, url, headers, body, raises)
    request = strategy.prepare(PageRequest(f"{API}/v1/x", params={"q": "y"}))
    try:
        items = strategy.page_items(response)
        assert isinstance(items, list)
        following = strategy.next_request(request, response, items)
    except MalformedResponse as exc:
        error: Exception = exc
    else:
        _check_next(following)
        return
    assert str(error)


@FUZZ
@given(headers=st.lists(st.tuples(st.sampled_from(["Link", "LINK"]), st.text(max_size=60))))
def test_link_header_strategy_on_repeated_and_arbitrary_headers(
    headers: list[tuple[str, str]],
) -> None:
    response = FuzzResponse(200, f"{API}/x", CIMultiDictProxy(CIMultiDict(headers)), [])
    request = PageRequest(f"{API}/x")
    with contextlib.suppress(MalformedResponse):
        _check_next(LinkHeader().next_request(request, response, []))


# -- RFC 8288 Link header -----------------------------------------------------------------------


@FUZZ
@given(
    value=st.text(max_size=120)
    | st.lists(st.sampled_from(["<", ">", ";", ",", "=", '"', "\\", " ", "rel", "a", "\t"])).map(
        "".join
    )
)
def test_link_header_parser_returns_pairs_or_raises_value_error(value: str) -> None:
    try:
        links = parse_link_header(value)
    except ValueError:
        return
    for target, params in links:
        assert isinstance(target, str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
        assert all(k == k.lower() for k in params)


# -- Retry-After --------------------------------------------------------------------------------

DAYS = st.sampled_from(["Mon", "Tue", "Sun", "Xyz", "", "Monday"])
MONTHS = st.sampled_from(["Jan", "Feb", "Dec", "Foo", "", "13"])
HTTP_DATES = st.builds(
    lambda d, n, m, y, h, mi, s, z: f"{d}, {n} {m} {y} {h}:{mi}:{s} {z}",
    DAYS,
    st.integers(-5, 99),
    MONTHS,
    st.integers(-1, 100_000),
    st.integers(-1, 99),
    st.integers(-1, 99),
    st.integers(-1, 99),
    st.sampled_from(["GMT", "UTC", "+0000", "-0000", "+9999", "XYZ", ""]),
)
RETRY_AFTER = (
    st.text(max_size=40)
    | HTTP_DATES
    | st.integers(-(10**400), 10**400).map(str)
    | st.floats().map(str)
    | st.sampled_from(["-0", "+5", "1e9", "0x10", " 7 ", "\u0663", "nan", "inf", "-inf"])
)


@FUZZ
@given(value=RETRY_AFTER)
def test_parse_retry_after_gives_none_or_a_non_negative_number(value: str) -> None:
    seconds = parse_retry_after(value, now=NOW)
    assert seconds is None or seconds >= 0.0  # never NaN, never negative


# -- the HTTP adapter's reading of an error answer ----------------------------------------------


@FUZZ
@given(
    status=st.integers(400, 599),
    retry_after=st.none() | RETRY_AFTER,
    body=st.binary(max_size=300),
    reason=st.none() | st.text(max_size=20),
)
def test_an_error_answer_becomes_a_remote_status_error(
    status: int, retry_after: str | None, body: bytes, reason: str | None
) -> None:
    headers = CIMultiDict()
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    error = status_error(status, reason, "GET", f"{API}/x", CIMultiDictProxy(headers), body)
    assert isinstance(error, RemoteStatusError)
    assert error.status == status
    if isinstance(error, Throttled) and error.retry_after is not None:
        assert error.retry_after >= 0.0
    assert isinstance(str(error), str)


CHARSETS = st.sampled_from(["utf-8", "latin-1", "utf-16", "ascii", "bogus", "utf-7", "", '"'])


@FUZZ
@given(
    body=st.binary(max_size=200),
    charset=CHARSETS,
    # No letters: letters can spell a codec that refuses errors="replace" ("undefined", which
    # the long profile finds): that known bug is the strict xfail below.
    extra=st.text(alphabet=string.digits + string.punctuation + " \t", max_size=20),
)
def test_a_response_body_decodes_with_any_declared_charset(
    body: bytes, charset: str, extra: str
) -> None:
    headers = CIMultiDictProxy(
        CIMultiDict({"Content-Type": f"text/plain; charset={charset}{extra}"})
    )
    response = Response(
        status=200, reason="OK", headers=headers, url=f"{API}/x", content=body, method="GET"
    )
    assert isinstance(response.text, str)


@pytest.mark.parametrize("charset", ["idna", "undefined", "punycode", "utf-8\x00"])
def test_a_hostile_charset_does_not_break_response_text(charset: str) -> None:
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": f"text/plain; charset={charset}"}))
    response = Response(
        status=200, reason="OK", headers=headers, url=f"{API}/x", content=b"\xff", method="GET"
    )
    assert isinstance(response.text, str)


@FUZZ
@given(body=st.binary(max_size=2000) | st.text(max_size=2000), secret=st.text(max_size=12))
def test_excerpt_and_redact_take_any_body(body: bytes | str, secret: str) -> None:
    shown = excerpt(body)
    assert isinstance(shown, str)
    redacted = redact(shown, [secret])
    if len(secret) >= 3:
        assert secret not in redacted


# -- resume cursors -----------------------------------------------------------------------------

GOOD_CURSOR = PageRequest(
    f"{API}/v1/x", params={"page": 2}, json={"q": [1, 2]}, headers={"X-Cont": "c"},
    cursor_headers=frozenset({"x-cont"}),
).to_cursor(skip=1)  # fmt: skip


@FUZZ
@given(
    cursor=JSON
    | st.fixed_dictionaries(
        {},
        optional={
            "v": st.sampled_from([1, 2, "1", None, True]),
            "method": st.sampled_from(["GET", "POST", "G T", "", 5]) | st.text(max_size=5),
            "url": URLISH | SCALARS,
            "params": JSON,
            "json": JSON,
            "data": JSON,
            "headers": JSON,
            "skip": SCALARS,
        },
    )
    | st.builds(
        lambda key, value: {**GOOD_CURSOR, key: value}, st.sampled_from(sorted(GOOD_CURSOR)), JSON
    )
)
def test_a_cursor_parses_or_is_a_configuration_error(cursor: Any) -> None:
    try:
        request = PageRequest.from_cursor(cursor)
    except ConfigurationError as exc:
        error = exc
    else:
        assert PageRequest.from_cursor(request.to_cursor()) == request
        return
    assert error.field == "cursor"


def test_a_deeply_nested_cursor_is_a_configuration_error_not_recursion() -> None:
    nested: Any = 1
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(ConfigurationError, match="nested too deeply"):
        PageRequest.from_cursor({**GOOD_CURSOR, "json": nested})


# -- HttpOperator pagination functions ----------------------------------------------------------

FUNCTION_RESULTS = (
    JSON
    | st.fixed_dictionaries(
        {},
        optional={
            "endpoint": URLISH | SCALARS,
            "params": JSON,
            "data": JSON,
            "json": JSON,
            "headers": JSON | st.dictionaries(st.text(max_size=8), st.text(max_size=8)),
        },
    )
    | st.dictionaries(st.text(max_size=8), JSON, max_size=3)
)


@FUZZ
@given(
    result=FUNCTION_RESULTS,
    method=st.sampled_from(["GET", "POST"]),
    base_url=st.sampled_from([None, API, f"{API}/v1", ""]),
)
def test_a_pagination_function_result_is_a_request_or_a_declared_error(
    result: Any, method: str, base_url: str | None
) -> None:
    strategy = PaginationFunction(lambda response: result, base_url=base_url)
    request = PageRequest(f"{API}/v1/x", params={"a": 1}, json={"k": 1}, method=method)
    try:
        following = strategy.next_request(request, FuzzResponse(200, f"{API}/v1/x", {}, {}), [])
    except (ConfigurationError, MalformedResponse) as exc:
        error = exc
    else:
        _check_next(following)
        return
    assert str(error)


# -- whole page streams over hostile pages ------------------------------------------------------


@FUZZ
@given(
    index=st.integers(0, len(STRATEGIES) - 1),
    pages=st.lists(st.tuples(JSON, HEADERS), min_size=1, max_size=6),
)
def test_paginate_over_hostile_pages_ends_or_raises_a_hookbridge_error(
    index: int, pages: list[tuple[Any, dict[str, str]]]
) -> None:
    strategy = STRATEGIES[index]
    served = 0

    async def fetch(request: PageRequest) -> FuzzResponse:
        nonlocal served
        body, headers = pages[served % len(pages)]
        served += 1
        return FuzzResponse(200, request.url, headers, body)

    async def run() -> None:
        async for page in paginate(fetch, PageRequest(f"{API}/v1/x"), strategy, max_pages=20):
            assert isinstance(page.items, list)

    with contextlib.suppress(HookBridgeError):
        anyio.run(run)
    assert served <= 20
