"""Graph paging: query and headers on every page, prefetch, cursors, refused links, long streams."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from hookbridge import HostRefused, PaginationRefused
from hookbridge.adapters.msgraph import MSGraphAdapter
from hookbridge.testing import GraphTestServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

Connect = Callable[..., str]
WaitUntil = Callable[[Callable[[], bool], str], Awaitable[None]]
EVENTUAL = {"ConsistencyLevel": "eventual"}


async def test_select_filter_count_and_headers_on_every_page(
    graph: GraphTestServer, connect: Connect
) -> None:
    query = {
        "$select": "displayName,department",
        "$filter": "department eq 'Finance' and accountEnabled eq true",
        "$count": "true",
        "$top": 20,
    }
    async with MSGraphAdapter(connect()) as api:
        users = [user async for user in api.items("users", query=query, headers=EVENTUAL)]
    expected = [f"u-{i:06d}" for i in range(1000) if i % 5 == 2 and i % 7 != 0]
    assert [user["id"] for user in users] == expected
    assert all(set(user) == {"id", "displayName", "department"} for user in users)
    pages = graph.matching("/v1.0/users")
    assert len(pages) == -(-len(expected) // 20) > 5
    for page in pages:
        # The emulator refuses a page whose skip token's query or header went missing.
        assert page.status == 200
        assert page.headers["consistencylevel"] == "eventual"
        assert page.query["$filter"] == query["$filter"]
        assert page.query["$select"] == query["$select"]
        assert page.token in graph.issued_tokens
    assert "$skiptoken" not in pages[0].query and all("$skiptoken" in p.query for p in pages[1:])


async def test_pages_cursor_resumes_exactly_after_a_page(
    graph: GraphTestServer, connect: Connect
) -> None:
    query = {"$top": 30, "$select": "id"}
    async with MSGraphAdapter(connect()) as api:
        first: list[Any] = []
        cursor = None
        async for page in api.pages("users", query=query, headers=EVENTUAL, max_pages=4):
            first.extend(page.items)
            cursor = page.cursor
        stored = json.loads(json.dumps(cursor))  # what a trigger would store
        rest = [
            user async for user in api.items("users", query=query, headers=EVENTUAL, cursor=stored)
        ]
    ids = [user["id"] for user in first + rest]
    assert ids == [f"u-{i:06d}" for i in range(1000)]
    resumed = graph.requests[4]
    assert "$skiptoken" in resumed.query and resumed.headers["consistencylevel"] == "eventual"


async def test_max_items_cuts_inside_a_page_and_resumes_there(connect: Connect) -> None:
    async with MSGraphAdapter(connect()) as api:
        pages = [page async for page in api.pages("users", query={"$top": 50}, max_items=75)]
        assert sum(len(page.items) for page in pages) == 75
        cursor = pages[-1].cursor
        rest = [u["id"] async for u in api.items("users", query={"$top": 50}, cursor=cursor)]
    assert rest[0] == "u-000075" and len(rest) == 925


async def test_prefetch_fetches_ahead_while_the_consumer_holds_a_page(
    graph: GraphTestServer, connect: Connect, wait_until: WaitUntil
) -> None:
    async with MSGraphAdapter(connect()) as api:
        async with api.items("users", query={"$top": 100}, prefetch=2) as items:
            first = await items.__anext__()
            assert first["id"] == "u-000000"
            # Prefetching starts once the first item is out (not part of its wait; a consumer
            # that takes one item and leaves costs no second request).
            await anyio.sleep(0.05)
            assert len(graph.requests) == 1
            second = await items.__anext__()
            assert second["id"] == "u-000001"
            # While this consumer does nothing, pages 2 and 3 (prefetch 2) plus the one being
            # handed over arrive; then the producer waits for room.
            await wait_until(lambda: len(graph.requests) >= 4, "pages fetched ahead")
            await anyio.sleep(0.05)
            assert len(graph.requests) == 4
            rest = [item async for item in items]
        assert len(rest) == 998
        with pytest.raises(Exception, match="needs a block"):
            async for _ in api.items("users", prefetch=1):
                pass


@pytest.mark.parametrize("prefetch", [0, 2])
async def test_prefetch_numbers_pages_and_keeps_the_limits(
    graph: GraphTestServer, connect: Connect, prefetch: int
) -> None:
    query = {"$top": 40, "$select": "id"}
    async with MSGraphAdapter(connect()) as api:
        async with api.pages("users", query=query, max_items=100, prefetch=prefetch) as pages:
            cut = [page async for page in pages]
        assert [(page.number, len(page.items)) for page in cut] == [(1, 40), (2, 40), (3, 20)]
        assert len(graph.requests) == 3  # nothing fetched beyond the limit
        graph.clear()
        async with api.pages("users", query=query, max_pages=2, prefetch=prefetch) as pages:
            two = [page async for page in pages]
        assert [page.number for page in two] == [1, 2] and len(graph.requests) == 2
        # The cut page's cursor resumes inside page 3, numbered from 1 again.
        async with api.pages(
            "users", query=query, cursor=cut[-1].cursor, prefetch=prefetch
        ) as pages:
            rest = [page async for page in pages]
    ids = [user["id"] for page in cut + rest for user in page.items]
    assert ids == [f"u-{i:06d}" for i in range(1000)]
    assert [page.number for page in rest] == list(range(1, len(rest) + 1))


@pytest.mark.parametrize("prefetch", [0, 2])
async def test_a_refused_link_on_page_one_comes_after_its_items(
    graph: GraphTestServer, connect: Connect, prefetch: int
) -> None:
    graph.link_origin = graph.url.replace("127.0.0.1", "localhost")
    seen: list[Any] = []
    async with MSGraphAdapter(connect(allowed_hosts="127.0.0.1,localhost")) as api:

        async def consume() -> None:
            async with api.items("users", query={"$top": 10}, prefetch=prefetch) as items:
                async for user in items:
                    seen.append(user)

        with pytest.raises(PaginationRefused, match="allowed_hosts"):
            await consume()
    assert [user["id"] for user in seen] == [f"u-{i:06d}" for i in range(10)]
    assert len(graph.requests) == 1


async def test_a_foreign_next_link_is_refused(graph: GraphTestServer, connect: Connect) -> None:
    graph.link_origin = graph.url.replace("127.0.0.1", "localhost")
    async with MSGraphAdapter(connect(allowed_hosts="127.0.0.1,localhost")) as api:
        seen: list[Any] = []

        async def consume() -> None:
            async for user in api.items("users", query={"$top": 10}):
                seen.append(user)

        with pytest.raises(PaginationRefused, match="allowed_hosts") as error:
            await consume()
        assert len(seen) == 10
        assert "localhost" in str(error.value)
        assert len(graph.requests) == 1  # nothing, and no token, went to the other host
        allowed = [
            u async for u in api.items("users", query={"$top": 500}, allowed_hosts=["localhost"])
        ]
        assert len(allowed) == 1000
    # A host the adapter allows but the connection does not: the provider would send no token.
    async with MSGraphAdapter(connect("strict"), allowed_hosts=["localhost"]) as api:
        with pytest.raises(HostRefused, match="withholds the token"):
            async for _ in api.items("users", query={"$top": 500}):
                pass


async def test_a_stream_of_2000_pages_outlives_several_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with GraphTestServer(users=2000, token_lifetime=1) as graph:
        monkeypatch.setenv("AIRFLOW_CONN_LONG", json.dumps(graph.airflow_connection()))
        count = 0
        query = {"$top": 1, "$select": "id"}
        async with (
            MSGraphAdapter("long") as api,
            api.items("users", query=query, prefetch=2) as items,
        ):
            async for user in items:
                assert user["id"] == f"u-{count:06d}"
                count += 1
        assert count == 2000 and graph.request_count >= 2000
        used = {record.token for record in graph.requests if record.status == 200}
        assert len(used) >= 2, "the stream should have needed more than one token"
        assert len(graph.token_requests) >= 2


async def test_cancellation_leaves_no_open_connection(
    graph: GraphTestServer, connect: Connect, wait_until: WaitUntil
) -> None:
    async with MSGraphAdapter(connect()) as api:
        for prefetch in (0, 3):
            with anyio.move_on_after(0.05):
                async with api.items("users", query={"$top": 1}, prefetch=prefetch) as items:
                    async for _ in items:
                        pass
            stats = api.statistics()
            assert stats.limits.in_flight == 0 and stats.holding == 0
        assert (await api.get("users/u-000001"))["id"] == "u-000001"
    await wait_until(lambda: graph.open_connections == 0, "every connection closed")
