"""HttpAdapter pagination: every strategy through items(), prefetch, cursors, hosts, fan-out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from hookbridge import (
    CursorToken,
    LinkHeader,
    NextLink,
    OffsetLimit,
    PageNumber,
    PaginationRefused,
    Strategy,
    UsageError,
)
from hookbridge.adapters.http import HttpAdapter, PaginationFunction, Response
from hookbridge.testing._http_server import HTTPTestServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

Connect = Callable[..., str]
TOTAL = 1234  # not a multiple of any page size below: the last page is short


def _operator_style(response: Response) -> dict[str, Any] | None:
    """An HttpOperator pagination_function: reads requests-style attributes, returns a call."""
    body = response.json()
    if response.status_code != 200 or body["page"] >= body["total_pages"]:
        return None
    return {"endpoint": "paged/page", "data": {"page": body["page"] + 1}}


STYLES: list[tuple[str, str, dict[str, Any], Strategy]] = [
    ("nextlink", "/paged/nextlink", {"size": 100}, NextLink()),
    ("nextlink-relative", "/paged/nextlink", {"size": 100, "relative": 1}, NextLink()),
    ("link-header", "/paged/link", {"size": 100}, LinkHeader()),
    (
        "page-number",
        "/paged/page",
        {},
        PageNumber(size_param="size", size=100, items="items", total_pages="total_pages"),
    ),
    ("offset-limit", "/paged/offset", {}, OffsetLimit(limit=100, items="items", total="total")),
    ("cursor", "/paged/cursor", {"size": 100}, CursorToken(token="next_cursor", items="items")),
    (
        "pagination-function",
        "/paged/page",
        {"size": 100},
        PaginationFunction(_operator_style, items="items"),
    ),
]


@pytest.mark.parametrize(
    ("style", "endpoint", "params", "strategy"), STYLES, ids=[s[0] for s in STYLES]
)
async def test_every_style_yields_every_item_exactly_once(
    connect: Connect,
    http_server: HTTPTestServer,
    style: str,
    endpoint: str,
    params: dict[str, Any],
    strategy: Strategy,
) -> None:
    async with HttpAdapter(connect()) as api:
        ids = [
            item["id"]
            async for item in api.items(
                endpoint, strategy=strategy, params={**params, "total": TOTAL}
            )
        ]
    assert ids == list(range(TOTAL))
    assert http_server.count(endpoint) == 13  # 12 full pages and a short one


async def test_pages_carry_number_status_and_a_resumable_cursor(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    strategy = CursorToken(token="next_cursor", items="items")
    params = {"size": 100, "total": 250}
    async with HttpAdapter(connect()) as api:
        pages = [
            page async for page in api.pages("/paged/cursor", strategy=strategy, params=params)
        ]
        assert [(p.number, len(p.items), p.status) for p in pages] == [
            (1, 100, 200),
            (2, 100, 200),
            (3, 50, 200),
        ]
        assert pages[-1].cursor is None
        # A cursor survives JSON (a trigger stores it) and resumes right after its page.
        cursor = json.loads(json.dumps(pages[0].cursor))
        rest = [
            item["id"]
            async for item in api.items(
                "/paged/cursor", strategy=strategy, params=params, cursor=cursor
            )
        ]
    assert rest == list(range(100, 250))


async def test_max_items_and_max_pages(connect: Connect) -> None:
    async with HttpAdapter(connect()) as api:
        first = [i async for i in api.items("/paged/nextlink", strategy=NextLink(), max_items=150)]
        pages = [p async for p in api.pages("/paged/nextlink", strategy=NextLink(), max_pages=2)]
    assert [item["id"] for item in first] == list(range(150))
    assert len(pages) == 2
    assert pages[-1].cursor is not None


async def test_prefetch_needs_the_async_with_form(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    async with HttpAdapter(connect()) as api:
        stream = api.items("/paged/link", strategy=LinkHeader(), prefetch=2)
        with pytest.raises(UsageError, match="async with"):
            async for _ in stream:
                pass
        async with api.items("/paged/link", strategy=LinkHeader(), prefetch=2) as items:
            ids = [item["id"] async for item in items]
        assert ids == list(range(1000))
        async with api.pages("/paged/link", strategy=LinkHeader(), prefetch=3) as pages:
            async for page in pages:
                assert page.number == 1
                break  # leaving early cancels the prefetching task
        # The plain form also works as a block (no background work).
        async with api.pages("/paged/link", strategy=LinkHeader()) as pages:
            assert len([page async for page in pages]) == 10


async def test_a_link_to_another_host_is_refused_unless_allowed(connect: Connect) -> None:
    params = {"size": 100, "host": "other", "total": 300}
    async with HttpAdapter(connect()) as api:
        with pytest.raises(PaginationRefused, match="allowed_hosts"):
            async for _ in api.items("/paged/nextlink", strategy=NextLink(), params=params):
                pass
        allowed = api.items(
            "/paged/nextlink", strategy=NextLink(), params=params, allowed_hosts=["localhost"]
        )
        assert len([item async for item in allowed]) == 300
    async with HttpAdapter(connect(hookbridge={"allowed_hosts": ["localhost"]})) as api:
        items = api.items("/paged/nextlink", strategy=NextLink(), params=params)
        assert len([item async for item in items]) == 300


async def test_items_feed_a_bounded_fan_out(connect: Connect, http_server: HTTPTestServer) -> None:
    async def detail(item: dict[str, Any]) -> str:
        return str((await api.get(f"/items/{item['id']}")).json()["name"])

    async with HttpAdapter(connect()) as api:
        ids = api.items("/paged/nextlink", strategy=NextLink(), params={"size": 50})
        async with api.map(detail, ids, max_at_once=20) as names:
            received = [name async for name in names]
    assert received == [f"item-{i}" for i in range(1000)]
    assert http_server.count("/items/") == 1000
