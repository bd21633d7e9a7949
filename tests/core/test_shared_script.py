"""The Redis GCRA script against the in-process Limits, on a fake clock (hypothesis).

The script takes ``now`` from its caller when given one (production passes nothing and it reads
Redis TIME), so the same schedule of requests can be played to both: the in-process limiter on
trio's MockClock, the script in a real redis-server at the same virtual instants.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Any

import anyio
import pytest
import redis
import trio.testing
from anyio.abc import TaskStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookbridge._limits import Limits, Rate
from hookbridge._shared_script import (
    CONFIRM,
    RESERVE,
    SCRIPT,
    THROTTLE,
    Reply,
    key_for,
    script_args,
)
from hookbridge.testing import RedisTestServer

BASE_US = 1.7e15  # a Redis TIME of 2023 in µs: the precision the script really works at
_keys = itertools.count()
FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


class Script:
    """The script on one fresh key, called with an explicit now (seconds from BASE_US)."""

    def __init__(self, client: redis.Redis, rate: Rate, burst: int) -> None:
        self._run = client.register_script(SCRIPT)
        self._key = key_for(f"property-{next(_keys)}")
        self._interval_us = rate.interval * 1e6
        self._burst = burst

    def __call__(self, op: str, now: float, **kwargs: Any) -> Reply:
        args = script_args(
            op,
            interval_us=self._interval_us,
            burst=self._burst,
            grace_us=60e6,
            now_us=BASE_US + now * 1e6,
            **kwargs,
        )
        return Reply.read(self._run(keys=[self._key], args=args))

    @staticmethod
    def seconds(value: str) -> float:
        return (float(value) - BASE_US) / 1e6


@pytest.fixture
def client(redis_server: RedisTestServer) -> Any:
    with redis.Redis(
        host=redis_server.host, port=redis_server.port, password=redis_server.password
    ) as client:
        yield client


def local_grants(rate: Rate, burst: int, arrivals: list[tuple[float, int]]) -> list[float]:
    """When the in-process Limits grants each request, on trio's virtual clock."""
    limits = Limits(rate=rate, burst=burst)
    grants: list[float] = [math.nan] * len(arrivals)

    async def caller(index: int, tokens: int, start: float, *, task_status: TaskStatus) -> None:
        task_status.started()  # the reservation is made before acquire() first yields
        await limits.acquire(tokens)
        grants[index] = anyio.current_time() - start

    async def main() -> None:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for index, (at, tokens) in enumerate(arrivals):
                await anyio.sleep_until(start + at)
                await tg.start(caller, index, tokens, start)

    clock = trio.testing.MockClock(autojump_threshold=0)
    anyio.run(main, backend="trio", backend_options={"clock": clock})
    return grants


schedules = st.lists(
    st.tuples(st.floats(0.0, 0.3, allow_subnormal=False), st.integers(1, 10)),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(
    limit=st.integers(1, 1000),
    period=st.sampled_from([0.1, 1.0, 2.5, 60.0]),
    burst=st.integers(1, 10),
    gaps=schedules,
)
def test_script_grants_what_the_local_gcra_grants(
    client: redis.Redis, limit: int, period: float, burst: int, gaps: list[tuple[float, int]]
) -> None:
    rate = Rate(limit, period)
    times = _times(gaps)
    arrivals = [(at, min(tokens, burst)) for at, (_, tokens) in zip(times, gaps, strict=True)]
    expected = local_grants(rate, burst, arrivals)
    script = Script(client, rate, burst)
    # Arrivals and, as callers woken on time make them, confirmations, in time order.
    queue = [(at, index, None) for index, (at, _) in enumerate(arrivals)]
    heapq.heapify(queue)
    while queue:
        now, index, slot = heapq.heappop(queue)
        tokens, grant = arrivals[index][1], expected[index]
        if slot is None:
            reply = script(RESERVE, now, tokens=tokens)
            # The same slot (µs rounding aside), and a wait that ends on it: the slot and the
            # wait are each rounded to whole µs, so the wait may end up to a few µs off it.
            assert Script.seconds(reply.at) == pytest.approx(grant, abs=2e-6)
            assert now + reply.wait == pytest.approx(grant, abs=5e-6)
        else:
            reply = script(CONFIRM, now, a=slot[0], b=slot[1], tokens=tokens)
            assert reply.wait == 0, "a caller on time is granted"
        if reply.wait > 0:
            heapq.heappush(queue, (now + reply.wait, index, (reply.at, reply.shift)))


def _times(gaps: list[tuple[float, int]]) -> list[float]:
    return list(itertools.accumulate(gap for gap, _ in gaps))


events = st.lists(
    st.tuples(
        st.floats(0.0, 0.5, allow_subnormal=False),  # time since the previous event
        st.sampled_from(["acquire", "acquire", "throttle"]),
        st.integers(1, 10),  # tokens, or the cool-down in tenths of a second
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(limit=st.integers(1, 100), burst=st.integers(1, 5), script_events=events)
def test_cooldowns_move_waiters_and_keep_the_bound(
    client: redis.Redis, limit: int, burst: int, script_events: list[tuple[float, str, int]]
) -> None:
    """Callers reserve, sleep until their slot and confirm (as SharedLimits does)."""
    rate = Rate(limit, 1.0)
    script = Script(client, rate, burst)
    # (time, order, what): confirmations are replayed in time order among the other events.
    queue: list[tuple[float, int, tuple[Any, ...]]] = []
    order = itertools.count()
    times = _times([(gap, 0) for gap, _, _ in script_events])
    for at, (_, kind, n) in zip(times, script_events, strict=True):
        heapq.heappush(queue, (at, next(order), (kind, n)))
    grants: list[tuple[float, int]] = []
    cooldowns: list[tuple[float, float]] = []
    while queue:
        now, _, what = heapq.heappop(queue)
        if what[0] == "throttle":
            script(THROTTLE, now, throttle_us=what[1] / 10 * 1e6)
            cooldowns.append((now, now + what[1] / 10))
            continue
        if what[0] == "acquire":
            tokens = min(what[1], burst)
            reply = script(RESERVE, now, tokens=tokens)
        else:
            _, tokens, at, shift = what
            reply = script(CONFIRM, now, a=at, b=shift, tokens=tokens)
        if reply.wait == 0:
            grants.append((now, tokens))
        else:
            heapq.heappush(
                queue, (now + reply.wait, next(order), ("confirm", tokens, reply.at, reply.shift))
            )
    assert sum(n for _, n in grants) == sum(
        min(n, burst) for _, kind, n in script_events if kind == "acquire"
    )
    for start, end in cooldowns:
        inside = [t for t, _ in grants if start + 1e-6 < t < end - 1e-6]
        assert inside == [], "granted during a cool-down"
    # The window bound, to the script's rounding: a wait under 1 µs is granted at once and a
    # double holds Redis TIME in µs to 1/4 µs, so a grant may come up to ~1.25 µs early.
    assert excess(grants, limit, burst) <= 2e-6 * limit + 1e-9


def excess(grants: list[tuple[float, int]], limit: float, burst: int) -> float:
    """The most tokens granted in any closed window [t_i, t_j] beyond burst + rate * (t_j - t_i)
    (rate in tokens per second)."""
    worst = -math.inf
    ordered = sorted(grants)
    for i, (t_i, _) in enumerate(ordered):
        tokens = 0
        for t_j, n in ordered[i:]:
            tokens += n
            worst = max(worst, tokens - (burst + limit * (t_j - t_i)))
    return worst


late_callers = st.lists(
    st.tuples(
        st.floats(0.0, 3.0, allow_subnormal=False),  # intervals since the previous arrival
        st.integers(1, 3),  # tokens
        # How late the caller wakes for its slot, in intervals, each time it sleeps for one
        # (cycled): often on time, sometimes by a little, sometimes by more than the burst.
        st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.3, 2.0, 6.0, 25.0]), min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=80, deadline=None, suppress_health_check=FIXTURES)
@given(limit=st.integers(5, 200), burst=st.integers(1, 6), callers=late_callers)
def test_late_callers_never_crowd_a_window(
    client: redis.Redis, limit: int, burst: int, callers: list[tuple[float, int, list[float]]]
) -> None:
    """Callers that wake late for their slots (a loaded process) are granted no more than the
    rate allows on the script's clock; each is granted in the end, and refused only when
    granting it would have broken the bound."""
    rate = Rate(limit, 1.0)
    script = Script(client, rate, burst)
    queue: list[tuple[float, int, tuple[Any, ...]]] = []
    order = itertools.count()
    interval = rate.interval
    arrivals = _times([(gap * interval, 0) for gap, _, _ in callers])
    for at, (_, tokens, lateness) in zip(arrivals, callers, strict=True):
        late = itertools.cycle([n * interval for n in lateness])
        heapq.heappush(queue, (at, next(order), (None, min(tokens, burst), late)))
    grants: list[tuple[float, int]] = []
    while queue:
        now, _, (slot, tokens, lateness) = heapq.heappop(queue)
        if slot is None:
            reply = script(RESERVE, now, tokens=tokens)
        else:
            reply = script(CONFIRM, now, a=slot[0], b=slot[1], tokens=tokens)
            if reply.wait > 0 and reply.end != "0":
                # Refused only when granting now would have broken the bound (the script
                # refuses a grant due in 1 µs or more; doubles hold its µs to 1/4 µs).
                assert excess([*grants, (now, tokens)], limit, burst) > 0
        if reply.wait == 0:
            grants.append((now, tokens))
        else:
            wake = now + reply.wait + next(lateness)
            heapq.heappush(queue, (wake, next(order), ((reply.at, reply.shift), tokens, lateness)))
    assert sum(n for _, n in grants) == sum(min(n, burst) for _, n, _ in callers)
    assert excess(grants, limit, burst) <= 2e-6 * limit + 1e-9


def test_a_newcomer_takes_the_rate_late_callers_leave_unused(client: redis.Redis) -> None:
    """Slots whose callers do not come (a stalled process) do not waste the rate: a queued caller
    granted after them finds the rate they left unused, and as much goes to the next newcomer,
    at once; the late callers, waking, are granted within the bound or queue again."""
    rate, burst = Rate(10, 1.0), 2  # an interval of 0.1 s
    script = Script(client, rate, burst)
    assert [script(RESERVE, 0.0).wait for _ in range(2)] == [0.0, 0.0]  # the burst
    queued = [script(RESERVE, 0.0) for _ in range(4)]
    assert [Script.seconds(reply.at) for reply in queued] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    # A newcomer queues behind them (nothing was lost yet).
    assert script(RESERVE, 0.05).wait == pytest.approx(0.45)
    # The callers of 0.1 s and 0.2 s stall; the one of 0.3 s comes on time: the rate of one
    # token was lost (the burst allowance was full from 0.2 s on).
    third = queued[2]
    assert script(CONFIRM, 0.3, a=third.at, b=third.shift).wait == 0.0
    # So one newcomer is granted at once, ahead of the queue; the next one queues.
    assert script(RESERVE, 0.3).wait == 0.0
    assert Script.seconds(script(RESERVE, 0.3).at) == pytest.approx(0.6)
    # The stalled callers wake at 0.31 s: the rate has no room left, so they queue again, behind
    # everyone, instead of crowding the window.
    for late, slot in zip(queued[:2], [0.7, 0.8], strict=True):
        again = script(CONFIRM, 0.31, a=late.at, b=late.shift)
        assert again.wait > 0 and again.end != "0"
        assert Script.seconds(again.at) == pytest.approx(slot)
    grants = [(0.0, 1), (0.0, 1), (0.3, 1), (0.3, 1)]
    assert excess(grants, 10, burst) <= 0
    assert excess([*grants, (0.31, 1)], 10, burst) > 0  # granting one would have crowded it
