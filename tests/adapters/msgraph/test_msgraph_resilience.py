"""Throttling under hookbridge's Retry alone, one shared cool-down, and 401s in mid-stream."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from hookbridge import Limits, PermissionDenied, Retry, Throttled
from hookbridge.adapters.msgraph import MSGraphAdapter
from hookbridge.testing import GraphTestServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

Connect = Callable[..., str]


async def test_kiota_does_not_retry_under_hookbridge(
    graph: GraphTestServer, connect: Connect
) -> None:
    graph.throttle(3, 503, 0)
    async with MSGraphAdapter(connect(), retry=Retry(attempts=1)) as api:
        with pytest.raises(Throttled) as error:
            await api.get("users/u-000001")
        assert error.value.status == 503 and error.value.retry_after == 0
        # kiota's RetryHandler would have sent it 4 times (503 is one of its statuses).
        assert len(graph.requests) == 1
        graph.clear_faults()
        graph.throttle(2, 429, 0)
    async with MSGraphAdapter(connect(), retry=Retry(attempts=3, backoff=0.0)) as api:
        assert (await api.get("users/u-000001"))["id"] == "u-000001"
        assert api.statistics().throttled == 2
    assert [r.status for r in graph.requests[1:]] == [429, 429, 200]


async def test_1000_concurrent_gets_share_one_cool_down(
    graph: GraphTestServer, connect: Connect
) -> None:
    concurrency = 50
    limits = Limits(max_concurrency=concurrency)
    async with MSGraphAdapter(connect(), limits=limits, retry=Retry(attempts=3)) as api:
        await api.get("users/u-000000")  # the token, outside the crowd
        graph.clear()
        graph.throttle(1, 429, 1)
        ids: list[str] = []

        async def one(index: int) -> None:
            ids.append(
                (await api.get(f"users/u-{index % 1000:06d}", query={"$select": "id"}))["id"]
            )

        async with anyio.create_task_group() as tg:
            for index in range(1000):
                tg.start_soon(one, index)
    assert len(ids) == 1000
    log = graph.requests
    assert len(log) == 1001 and [r.status for r in log].count(429) == 1
    throttled_at = next(r.time for r in log if r.status == 429)
    during = [r for r in log if throttled_at < r.time < throttled_at + 1.0]
    # Only requests already on their way when the 429 reached the client arrive during the
    # cool-down: at most the other slots' worth. No new request starts before it ends.
    assert len(during) <= concurrency - 1
    after = [r for r in log if r.time >= throttled_at + 1.0]
    assert len(after) >= 1000 - concurrency


async def test_a_401_mid_stream_gets_one_new_token(
    graph: GraphTestServer, connect: Connect
) -> None:
    async with MSGraphAdapter(connect()) as api:
        count = 0
        async for _ in api.items("users", query={"$top": 50}):
            count += 1
            if count == 120:
                graph.revoke_tokens()
            if count == 520:
                graph.expire_tokens()
        assert count == 1000
        assert (await api.get("users/u-000001"))["id"] == "u-000001"
    statuses = [r.status for r in graph.requests]
    assert statuses.count(401) == 2 and statuses.count(200) == 21
    assert len(graph.token_requests) == 3 and len({r.token for r in graph.requests}) == 3


async def test_a_refused_fresh_token_is_a_clear_error_naming_the_conn_id(
    graph: GraphTestServer, connect: Connect
) -> None:
    async with MSGraphAdapter(connect("rotated")) as api:
        seen = 0

        async def consume() -> None:
            nonlocal seen
            async for _ in api.items("users", query={"$top": 100}):
                seen += 1
                if seen == 150:
                    graph.revoke_tokens()
                    graph.login.client_secret = "a-rotated-secret-value"

        with pytest.raises(PermissionDenied) as error:
            await consume()
        assert seen == 200  # two pages, then the refresh was refused
    message = str(error.value)
    assert "conn_id 'rotated'" in message and "AADSTS7000215" in message
    assert [r.status for r in graph.token_requests] == [200, 401]


async def test_a_revoked_token_refused_twice_is_permission_denied(
    graph: GraphTestServer, connect: Connect
) -> None:
    async with MSGraphAdapter(connect("revoked")) as api:
        await api.get("users/u-000001")
        # Graph refuses every token now, new ones too: the refresh does not help.
        graph.login.accepting = False
        with pytest.raises(PermissionDenied) as error:
            await api.get("users/u-000002")
    message = str(error.value)
    assert "conn_id 'revoked'" in message and "fresh token" in message
    assert [r.status for r in graph.requests] == [200, 401, 401]
