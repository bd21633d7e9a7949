"""HttpAdapter under faults: Retry-After, the shared cool-down, drops, cancellation, streaming."""

from __future__ import annotations

import functools
import hashlib
import tracemalloc
from collections.abc import Callable

import anyio
import pytest

from hookbridge import HookBridgeError, Limits, RemoteStatusError, Retry, Throttled, TransportError
from hookbridge.adapters.http import HttpAdapter
from hookbridge.testing._http_server import (
    HTTPTestServer,
    expected_sha256,
    pattern_bytes,
    retry_after_date,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

Connect = Callable[..., str]
NO_WAIT = Retry(attempts=3, backoff=0.0)


# -- Retry-After and the shared cool-down (virtual time: looptime; sockets stay real) ----------


async def test_retry_after_seconds_is_honoured(
    connect: Connect, http_server: HTTPTestServer, mock_clock: None
) -> None:
    http_server.throttle(1, 429, "2", path_prefix="/items")
    async with HttpAdapter(connect(), retry=NO_WAIT) as api:
        started = anyio.current_time()
        assert (await api.get("/items/1")).json()["id"] == 1
        elapsed = anyio.current_time() - started
        assert api.statistics().throttled == 1
    first, second = http_server.matching("/items/1")
    assert (first.status, second.status) == (429, 200)
    assert second.loop_time - first.loop_time >= 2.0
    assert 2.0 <= elapsed < 2.5


async def test_retry_after_http_date_is_honoured(
    connect: Connect, http_server: HTTPTestServer, mock_clock: None
) -> None:
    # An HTTP-date has whole seconds and is rounded up: the wait is between 3 and 4 s.
    http_server.throttle(1, 503, retry_after_date(3), path_prefix="/items")
    async with HttpAdapter(connect(), retry=NO_WAIT) as api:
        assert (await api.get("/items/2")).status == 200
    first, second = http_server.matching("/items/2")
    assert first.status == 503
    assert 2.9 <= second.loop_time - first.loop_time <= 4.1


async def test_a_retry_after_above_the_cap_is_raised_not_waited(
    connect: Connect, http_server: HTTPTestServer, mock_clock: None
) -> None:
    http_server.throttle(1, 429, "3600")
    async with HttpAdapter(connect(), retry=Retry(max_retry_after=60)) as api:
        started = anyio.current_time()
        with pytest.raises(Throttled) as info:
            await api.get("/items/1")
        assert anyio.current_time() - started < 1
    assert info.value.retry_after == 3600


async def test_one_429_pauses_all_100_callers(
    connect: Connect, http_server: HTTPTestServer, mock_clock: None
) -> None:
    """100 concurrent callers, one 429 with Retry-After 2: nobody reaches the server for 2 s."""
    http_server.throttle(1, 429, "2", path_prefix="/items")
    async with HttpAdapter(connect(), limits=Limits(rate="100/s"), retry=NO_WAIT) as api:
        async with api.map(api.get, [f"/items/{i}" for i in range(100)], max_at_once=100) as out:
            statuses = [response.status async for response in out]
        assert statuses == [200] * 100
        assert api.statistics().throttled == 1
    log = http_server.matching("/items/")
    assert len(log) == 101  # 100 requests and the one retry
    throttled = [record for record in log if record.status == 429]
    assert len(throttled) == 1
    t0 = throttled[0].loop_time
    # Nothing arrives inside the cool-down; everything after the 429 waits for its end.
    assert not [r for r in log if t0 < r.loop_time < t0 + 2.0]
    later = [r for r in log if r.loop_time >= t0 + 2.0]
    assert len(later) == 100  # 99 that had not started yet, and the retry
    # After the cool-down the rate holds again: 100 requests at 100/s take about a second.
    assert max(r.loop_time for r in later) - t0 >= 2.9


# -- dropped connections -------------------------------------------------------------------------


async def test_dropped_connections_are_retried_for_get_not_for_post(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    async with HttpAdapter(connect(), retry=NO_WAIT) as api:
        # aiohttp itself re-sends an idempotent request once after a disconnect: two drops make
        # one aiohttp attempt fail, and the adapter's retry policy sends the third.
        http_server.drop_next(2, path_prefix="/items", method="GET")
        assert (await api.get("/items/1")).status == 200
        assert http_server.count("/items/1", "GET") == 3
        assert api.statistics().retries == 1

        http_server.drop_next(1, path_prefix="/items", method="POST")
        with pytest.raises(TransportError, match="closed the connection"):
            await api.post("/items/1", json={"n": 1})
        assert http_server.count("/items/1", "POST") == 1  # may have been processed: not re-sent

        http_server.drop_next(1, path_prefix="/items", method="POST")
        assert (await api.post("/items/1", json={}, retry_non_idempotent=True)).status == 200
        assert http_server.count("/items/1", "POST") == 3


async def test_a_body_cut_off_is_a_transport_error(connect: Connect) -> None:
    async with HttpAdapter(connect(), retry=NO_WAIT) as api:
        with pytest.raises(TransportError):
            await api.get("/drop", params={"after_bytes": 1000})
        async with api.stream("GET", "/drop?after_bytes=1000") as body:
            with pytest.raises(TransportError, match="cut off"):
                async for _ in body.iter_chunks():
                    pass


async def test_timeout_is_a_transport_error(connect: Connect, http_server: HTTPTestServer) -> None:
    async with HttpAdapter(connect(), retry=Retry.none()) as api:
        with pytest.raises(TransportError, match="timeout"):
            await api.get("/slow", params={"delay": 10}, timeout=0.2)
    async with HttpAdapter(connect(hookbridge={"timeout": 0.2}), retry=Retry.none()) as api:
        with pytest.raises(TransportError, match="timeout"):
            await api.get("/slow", params={"delay": 10})


# -- cancellation ----------------------------------------------------------------------------


async def test_cancelling_1000_in_flight_requests_leaves_no_connection(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    async with HttpAdapter(connect(), max_connections=1000) as api:
        async with anyio.create_task_group() as tg:
            for _ in range(1000):
                tg.start_soon(functools.partial(api.get, "/slow", params={"delay": 60}))
            with anyio.fail_after(30):
                while http_server.count("/slow") < 1000:  # noqa: ASYNC110 - no event to wait on
                    await anyio.sleep(0.01)
            assert http_server.open_connections == 1000
            tg.cancel_scope.cancel()
        stats = api.statistics()
        assert stats.pool.in_use == 0
        assert stats.succeeded == 0
        # The pool is still good for new work.
        assert (await api.get("/items/1")).status == 200
    with anyio.fail_after(10):
        while http_server.open_connections:  # noqa: ASYNC110 - no event to wait on
            await anyio.sleep(0.01)


# -- streaming -------------------------------------------------------------------------------


async def test_streaming_200_mb_keeps_memory_flat(connect: Connect) -> None:
    size = 200 * 1024 * 1024
    digest = hashlib.sha256()
    received = 0
    async with HttpAdapter(connect()) as api:
        tracemalloc.start()
        try:
            async with api.stream("GET", f"/bytes/{size}") as body:
                assert body.status == 200
                assert body.content_length == size
                async for chunk in body.iter_chunks(256 * 1024):
                    digest.update(chunk)
                    received += len(chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert received == size
    assert digest.hexdigest() == expected_sha256(size)
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while streaming 200 MiB"


async def test_stream_releases_or_closes_its_connection(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    async with HttpAdapter(connect()) as api:
        async with api.stream("GET", "/bytes/100") as body:
            assert await body.read() == pattern_bytes(100)
        pool = api.statistics().pool
        assert (pool.in_use, pool.idle) == (0, 1)  # read to the end: back to the pool

        async with api.stream("GET", "/bytes/10000000") as body:
            first = await body.iter_chunks(1000).__anext__()
        assert len(first) <= 1000
        pool = api.statistics().pool
        assert (pool.in_use, pool.idle) == (0, 0)  # half-read: closed, not pooled
        with pytest.raises(HookBridgeError, match="after its"):
            await body.iter_chunks().__anext__()

        with anyio.CancelScope() as scope:
            async with api.stream("GET", "/slow/stream?chunks=1000&interval=0.01") as body:
                async for _ in body.iter_chunks():
                    scope.cancel()
                    await anyio.sleep(1)
        assert scope.cancelled_caught
        assert api.statistics().pool.in_use == 0

        with pytest.raises(RemoteStatusError) as info:
            async with api.stream("GET", "/status/404"):
                pass
        assert info.value.status == 404
        async with api.stream("GET", "/status/404", raise_for_status=False) as body:
            assert body.status == 404
