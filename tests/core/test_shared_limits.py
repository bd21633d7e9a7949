"""Limits(shared=...): one rate and one cool-down for every process, in a real redis-server.

These run on real time (the script reads Redis TIME); the algorithm itself is checked against
the in-process GCRA on a fake clock in test_shared_script.py. Every test runs on asyncio (the
asyncio client) and on trio (the sync client in a worker thread).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import pytest
import redis

import hookbridge
from hookbridge import ConfigurationError, Limits
from hookbridge._config import read_settings
from hookbridge._shared_limits import SharedLimit, SharedLimits
from hookbridge._shared_script import key_for
from hookbridge.testing import RedisTestServer

pytestmark = pytest.mark.anyio

SECRET = "redis-test-secret"


def shared_limits(url: str, key: str = "api", **options: Any) -> SharedLimits:
    policy = {k: options.pop(k) for k in ("on_failure", "local_share", "timeout") if k in options}
    limits = Limits(shared=SharedLimit(key=key, redis_url=url, **policy), **options)
    assert isinstance(limits, SharedLimits)
    return limits


def evalsha_calls(server: RedisTestServer) -> int:
    client = redis.Redis(host=server.host, port=server.port, password=server.password)
    try:
        stats = client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    finally:
        client.close()


def sync_client(server: RedisTestServer) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, password=server.password)


# -- configuration (no Redis needed) ----------------------------------------------------------


def test_shared_limits_are_limits() -> None:
    limits = Limits(
        rate="100/s", burst=5, max_concurrency=3, shared={"key": "api", "redis_conn_id": "r"}
    )
    assert type(limits) is SharedLimits and isinstance(limits, Limits)
    assert limits.rate == hookbridge.Rate(100, 1) and limits.max_concurrency == 3
    assert limits.try_admit() is False  # every grant is Redis's: callers take the async path
    assert limits.statistics().in_flight == 0
    assert limits.statistics().mode == "shared"
    assert Limits(rate="1/s").statistics().mode == "local"
    spec = limits.to_spec()
    assert spec == {
        "rate": "100/s",
        "burst": 5,
        "max_concurrency": 3,
        "shared": {"key": "api", "redis_conn_id": "r"},
    }
    json.dumps(spec)
    again = Limits.from_spec(spec)
    assert type(again) is SharedLimits and repr(again) == repr(limits)
    assert repr(limits) == (
        "Limits(rate='100/s', burst=5, max_concurrency=3, "
        "shared=SharedLimit(key='api', redis_conn_id='r'))"
    )


def test_password_stays_out_of_repr_and_spec() -> None:
    url = f"redis://:{SECRET}@127.0.0.1:6379/0"
    limits = Limits(rate="10/s", shared={"key": "api", "redis_url": url})
    assert SECRET not in repr(limits) and SECRET not in repr(limits.shared)  # type: ignore[attr-defined]
    assert "redis://***@127.0.0.1:6379/0" in repr(limits)
    with pytest.raises(ConfigurationError, match="redis_conn_id instead") as info:
        limits.to_spec()
    assert SECRET not in str(info.value)
    # Without a password the URL is no secret and travels in the spec.
    plain = Limits(rate="10/s", shared={"key": "api", "redis_url": "redis://cache:6379/1"})
    assert plain.to_spec()["shared"] == {"key": "api", "redis_url": "redis://cache:6379/1"}


@pytest.mark.parametrize(
    ("shared", "field", "hint"),
    [
        ("redis://x", "shared", "SharedLimit or a dict"),
        ({"redis_url": "redis://x"}, "shared.key", "key is missing"),
        ({"key": "", "redis_url": "redis://x"}, "shared.key", "non-empty"),
        ({"key": "a"}, "shared", "exactly one of redis_url"),
        ({"key": "a", "redis_url": "redis://x", "redis_conn_id": "r"}, "shared.redis_url", "one"),
        ({"key": "a", "redis_conn_id": "r", "colour": 1}, "shared.colour", "valid keys"),
        ({"key": "a", "redis_conn_id": "r", "on_failure": "open"}, "shared.on_failure", "wait"),
        (
            {"key": "a", "redis_conn_id": "r", "on_failure": "fallback_local"},
            "shared.local_share",
            "1 / the number of processes",
        ),
        (
            {"key": "a", "redis_conn_id": "r", "on_failure": "fallback_local", "local_share": 2},
            "shared.local_share",
            "0 < local_share <= 1",
        ),
        ({"key": "a", "redis_conn_id": "r", "local_share": 0.5}, "shared.local_share", "only"),
        ({"key": "a", "redis_conn_id": "r", "timeout": 0}, "shared.timeout", "positive"),
        ({"key": "a", "redis_url": 5}, "shared.redis_url", "non-empty text"),
    ],
)
def test_bad_shared_options_name_the_field(shared: Any, field: str, hint: str) -> None:
    with pytest.raises(ConfigurationError, match=hint) as info:
        Limits(rate="10/s", shared=shared)
    assert info.value.field == field


def test_connection_extra_shares_the_limit_under_the_conn_id() -> None:
    extra = {
        "hookbridge": {
            "rate": "100/s",
            "burst": 10,
            "shared": {
                "redis_conn_id": "redis_default",
                "on_failure": "fallback_local",
                "local_share": 0.25,
            },
        }
    }
    limits = read_settings(extra, conn_id="my_api").limits
    assert isinstance(limits, SharedLimits)
    assert limits.shared.key == "my_api"  # every process opening my_api shares one budget
    assert limits.shared.on_failure == "fallback_local" and limits.shared.local_share == 0.25
    own_key = {"hookbridge": {"rate": "1/s", "shared": {"key": "k", "redis_conn_id": "r"}}}
    assert read_settings(own_key, conn_id="x").limits.shared.key == "k"  # type: ignore[union-attr]
    bad = {"hookbridge": {"rate": "1/s", "shared": {"redis_conn_id": "r", "on_failure": "x"}}}
    with pytest.raises(ConfigurationError) as info:
        read_settings(bad, conn_id="my_api")
    assert info.value.conn_id == "my_api" and info.value.field == "hookbridge.shared.on_failure"


# -- against redis-server ---------------------------------------------------------------------


async def test_two_limiters_on_one_key_share_the_rate(redis_server: RedisTestServer) -> None:
    # Two Limits objects stand for two processes (test_shared_limits_processes.py runs real ones).
    a = shared_limits(redis_server.url, rate="50/s", burst=5)
    b = shared_limits(redis_server.url, rate="50/s", burst=5)
    other = shared_limits(redis_server.url, key="other", rate="50/s", burst=5)
    grants: list[float] = []

    async def take(limits: Limits, n: int) -> None:
        for _ in range(n):
            async with limits():
                grants.append(anyio.current_time())

    await other.acquire(5)  # another key's budget is its own
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for limits in (a, b):
            for _ in range(5):
                tg.start_soon(take, limits, 6)
    elapsed = anyio.current_time() - start
    # 60 grants, 5 at once then 50/s: 1.1 s, whichever object asked.
    assert 1.1 - 0.02 <= elapsed < 1.1 + 0.5
    assert a.statistics().granted + b.statistics().granted == 60
    assert a.statistics().mode == "shared" and a.statistics().waiting == 0
    for limits in (a, b, other):
        await limits.aclose()


async def test_one_round_trip_per_uncontended_acquire(redis_server: RedisTestServer) -> None:
    limits = shared_limits(redis_server.url, rate="100000/s", burst=1000, max_concurrency=5)
    await limits.acquire()  # loads the script (NOSCRIPT, SCRIPT LOAD, EVALSHA) once
    before = evalsha_calls(redis_server)
    for _ in range(20):
        await limits.acquire()
        async with limits():
            pass
    assert evalsha_calls(redis_server) - before == 40
    await limits.aclose()


async def test_script_is_loaded_again_after_a_flush(redis_server: RedisTestServer) -> None:
    limits = shared_limits(redis_server.url, rate="1000/s", burst=10)
    await limits.acquire()
    with sync_client(redis_server) as client:
        client.script_flush()
    await limits.acquire()  # NOSCRIPT: loaded again, then the call goes through
    assert limits.statistics().granted == 2
    await limits.aclose()


async def test_cooldown_is_shared_and_moves_waiters(redis_server: RedisTestServer) -> None:
    a = shared_limits(redis_server.url, rate="10/s", burst=1)
    b = shared_limits(redis_server.url, rate="10/s", burst=1)
    await b.acquire()  # the burst is spent: b's next caller waits for 0.1 s
    granted_at: list[float] = []

    async def waiter() -> None:
        await b.acquire()
        granted_at.append(anyio.current_time())

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.03)
        a.throttled(0.5)  # a saw a 429 with Retry-After: 0.5
        await a.share_cooldown()  # type: ignore[attr-defined]
        assert a.statistics().cooldown_remaining == pytest.approx(0.5, abs=0.05)
    # b's waiter had a slot at 0.1 s: the cool-down (0.53 s) moved it.
    assert granted_at[0] - start >= 0.53 - 0.01
    assert b.statistics().cooldown_remaining == 0.0
    before = anyio.current_time()
    await b.acquire()  # then the rate again, one at a time
    assert anyio.current_time() - before >= 0.09
    for limits in (a, b):
        await limits.aclose()


async def test_throttled_reaches_redis_with_the_next_call(redis_server: RedisTestServer) -> None:
    a = shared_limits(redis_server.url, rate="1000/s", burst=10)
    b = shared_limits(redis_server.url, rate="1000/s", burst=10)
    await a.acquire()
    a.throttled(0.4)  # synchronous: Redis hears of it with a's next script call
    assert a.statistics().cooldown_remaining > 0.3
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.acquire)
        await anyio.sleep(0.05)
        await b.acquire()
    assert anyio.current_time() - start >= 0.4 - 0.01
    for limits in (a, b):
        await limits.aclose()


async def test_cancelled_waiter_gives_its_slot_back(redis_server: RedisTestServer) -> None:
    limits = shared_limits(redis_server.url, rate="2/s")
    await limits.acquire()
    start = anyio.current_time()
    with anyio.move_on_after(0.1):
        await limits.acquire()  # slot at 0.5 s, cancelled at 0.1 s
        pytest.fail("the cancelled acquire returned")
    assert limits.statistics().waiting == 0
    await limits.acquire()  # takes the slot given back (0.5 s), not the next one (1.0 s)
    assert 0.5 - 0.01 <= anyio.current_time() - start < 0.8
    await limits.aclose()


async def test_key_is_namespaced_and_expires_when_idle(redis_server: RedisTestServer) -> None:
    limits = shared_limits(redis_server.url, key="idle-api", rate="100/s", burst=2)
    limits._set_idle_grace(0.1)  # 0.1 s after the TAT (IDLE_GRACE is 5 s)
    await limits.acquire(2)
    key = key_for("idle-api")
    assert key == "hookbridge:limit:{idle-api}"
    with sync_client(redis_server) as client:
        assert client.type(key) == b"hash"
        assert 0 < client.pttl(key) <= 20 + 100 + 5  # TAT (2 tokens at 100/s) + grace
        await anyio.sleep(0.25)
        assert client.exists(key) == 0
        assert client.dbsize() == 0
    await limits.acquire()  # an expired key is a fresh budget
    await limits.aclose()


async def test_credentials_from_an_airflow_connection(
    redis_server: RedisTestServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AIRFLOW_CONN_SHARED_REDIS", json.dumps(redis_server.airflow_connection()))
    limits = Limits(rate="100/s", shared={"key": "api", "redis_conn_id": "shared_redis"})
    await limits.acquire()
    assert limits.statistics().mode == "shared"
    await limits.aclose()  # type: ignore[attr-defined]
    monkeypatch.setenv("AIRFLOW_CONN_NOT_REDIS", json.dumps({"conn_type": "http", "host": "x"}))
    wrong = Limits(rate="1/s", shared={"key": "api", "redis_conn_id": "not_redis"})
    with pytest.raises(ConfigurationError, match="of type 'redis'") as info:
        await wrong.acquire()
    assert info.value.conn_id == "not_redis"
    missing = Limits(rate="1/s", shared={"key": "api", "redis_conn_id": "nowhere"})
    with pytest.raises(ConfigurationError, match="AIRFLOW_CONN_NOWHERE"):
        await missing.acquire()
    assert SECRET not in caplog.text


async def test_wrong_password_is_a_clear_error_without_secrets(
    redis_server: RedisTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-redis-password"
    url = f"redis://:{wrong}@{redis_server.host}:{redis_server.port}/0"
    limits = shared_limits(url, rate="1/s")
    with pytest.raises(ConfigurationError, match="refused the shared limit 'api'") as info:
        await limits.acquire()
    assert info.value.field == "shared"
    for text in (str(info.value), repr(info.value), caplog.text, repr(limits)):
        assert wrong not in text and SECRET not in text
    await limits.aclose()


async def test_fan_out_does_not_know_the_backend(redis_server: RedisTestServer) -> None:
    limits = shared_limits(redis_server.url, rate="200/s", burst=10, max_concurrency=4)
    running = peak = 0

    async def call(item: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.001)
        running -= 1
        return item * 2

    start = anyio.current_time()
    async with hookbridge.amap(call, range(50), max_at_once=10, limits=limits) as results:
        assert [value async for value in results] == [i * 2 for i in range(50)]
    assert anyio.current_time() - start >= (50 - 10) / 200 - 0.01
    assert peak <= 4  # the concurrency cap stays per process
    assert limits.statistics().granted == 50
    await limits.aclose()


def test_a_limits_object_serves_successive_loops(redis_server: RedisTestServer) -> None:
    limits = shared_limits(redis_server.url, rate="1000/s", burst=5)

    async def twice() -> None:
        await limits.acquire()
        await limits.acquire()

    # One client per event loop; each is closed when its loop ends (no unclosed-socket warning).
    for backend in ["asyncio", "trio", "asyncio"]:
        anyio.run(twice, backend=backend)
    assert limits.statistics().granted == 6


async def test_trio_runs_the_sync_client_in_a_thread(
    redis_server: RedisTestServer, anyio_backend: Any
) -> None:
    limits = shared_limits(redis_server.url, rate="1000/s")
    await limits.acquire()
    transport = limits._transport
    assert transport is not None
    on_trio = (anyio_backend if isinstance(anyio_backend, str) else anyio_backend[0]) == "trio"
    assert (transport._sync is not None) is on_trio
    assert (len(transport._async) == 1) is not on_trio
    await limits.aclose()
    start = time.monotonic()
    await limits.acquire()  # reconnects after aclose()
    assert time.monotonic() - start < 1
    await limits.aclose()


async def test_without_a_rate_only_the_cooldown_is_shared(redis_server: RedisTestServer) -> None:
    shared = {"key": "cooldown-only", "redis_url": redis_server.url}
    a, b = Limits(shared=shared), Limits(shared=shared)
    await b.acquire()
    before = anyio.current_time()
    for _ in range(20):
        await b.acquire()  # no rate: nothing to wait for
    assert anyio.current_time() - before < 0.5
    a.throttled(0.3)
    await a.share_cooldown()  # type: ignore[attr-defined]
    await b.acquire()
    assert anyio.current_time() - before >= 0.3 - 0.01
    for limits in (a, b):
        await limits.aclose()  # type: ignore[attr-defined]


def test_a_limits_subclass_cannot_be_shared() -> None:
    class Mine(Limits):
        pass

    with pytest.raises(ConfigurationError, match="not the subclass Mine"):
        Mine(rate="1/s", shared={"key": "a", "redis_conn_id": "r"})
