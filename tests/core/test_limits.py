"""Limits: GCRA rate, FIFO fairness, shared cool-down, concurrency cap, on virtual time."""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookbridge._errors import ConfigurationError
from hookbridge._limits import Limits, LimitsStatistics, Rate

pytestmark = pytest.mark.anyio

EPS = 1e-5  # looptime (asyncio) moves its clock in 1 µs ticks


# -- Rate.parse -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("100/s", 100, 1),
        ("100/sec", 100, 1),
        ("100/second", 100, 1),
        ("100/seconds", 100, 1),
        ("6000/min", 6000, 60),
        ("6000/minute", 6000, 60),
        ("3600/h", 3600, 3600),
        ("3600/hour", 3600, 3600),
        ("10/5s", 10, 5),
        ("10/2.5min", 10, 150),
        ("2.5/s", 2.5, 1),
        ("  100 / s  ", 100, 1),
        ("10 / 5 s", 10, 5),
        ("100/S", 100, 1),
        (".5/s", 0.5, 1),
    ],
)
def test_rate_parse_accepts(text: str, limit: float, period: float) -> None:
    rate = Rate.parse(text)
    assert rate == Rate(limit, period)
    assert Rate.parse(str(rate)) == rate


@pytest.mark.parametrize(
    "text",
    [
        "",
        "100",
        "100/",
        "/s",
        "s/100",
        "100/d",
        "100/m",
        "100/ms",
        "0/s",
        "-5/s",
        "100/0s",
        "100//s",
        "abc",
        "100 per second",
        "1e400/s",
        "inf/s",
        "nan/s",
        "100/s/s",
    ],
)
def test_rate_parse_rejects(text: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Rate.parse(text)
    assert info.value.field == "rate"
    message = str(info.value)
    assert "'rate'" in message
    for example in ("'100/s'", "'6000/min'", "'3600/h'", "'10/5s'"):
        assert example in message


def test_rate_rejects_non_text_and_bad_numbers() -> None:
    with pytest.raises(ConfigurationError, match="rate must be text"):
        Rate.parse(100)  # type: ignore[arg-type]
    for limit, period in [(0, 1), (1, 0), (-1, 1), (math.inf, 1), (True, 1)]:
        with pytest.raises(ConfigurationError) as info:
            Rate(limit, period)
        assert info.value.field == "rate"


def test_rate_text_round_trips() -> None:
    for rate in [Rate(100, 1), Rate(6000, 60), Rate(1, 3600), Rate(10, 5), Rate(1 / 3, 0.7)]:
        assert Rate.parse(str(rate)) == rate
    assert str(Rate(100, 1)) == "100/s"
    assert str(Rate(10, 150)) == "10/150s"
    assert Rate(100, 1).interval == pytest.approx(0.01)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": 100}, "rate"),
        ({"rate": "fast"}, "rate"),
        ({"rate": "10/s", "burst": 0}, "burst"),
        ({"rate": "10/s", "burst": True}, "burst"),
        ({"rate": "10/s", "burst": 2.5}, "burst"),
        ({"burst": 5}, "burst"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": "3"}, "max_concurrency"),
        ({"name": 3}, "name"),
    ],
)
def test_limits_rejects_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Limits(**kwargs)
    assert info.value.field == field


def test_limits_repr_and_spec() -> None:
    limits = Limits(rate="100/s", burst=10, max_concurrency=5, name="api")
    assert repr(limits) == "Limits(rate='100/s', burst=10, max_concurrency=5, name='api')"
    assert repr(Limits()) == "Limits()"
    spec = limits.to_spec()
    assert spec == {"rate": "100/s", "burst": 10, "max_concurrency": 5, "name": "api"}
    again = Limits.from_spec(spec)
    assert repr(again) == repr(limits)
    assert Limits.from_spec(Limits().to_spec()).rate is None
    with pytest.raises(ConfigurationError, match="not a limits spec"):
        Limits.from_spec({"rate": "1/s", "colour": "red"})


async def test_tokens_are_checked() -> None:
    limits = Limits(rate="10/s", burst=3)
    with pytest.raises(ConfigurationError, match="raise burst to at least 4") as info:
        await limits.acquire(4)
    assert info.value.field == "tokens"
    for bad in (0, -1, 1.5, 2.0):
        with pytest.raises(ConfigurationError) as info:
            await limits.acquire(bad)  # type: ignore[arg-type]
        assert info.value.field == "tokens"
    await limits.acquire(3)
    assert limits.statistics().granted == 3


# -- rate -------------------------------------------------------------------------------------


async def test_rate_accuracy(mock_clock: None) -> None:
    limits = Limits(rate="1000/s", burst=10)
    grants: list[float] = []
    start = anyio.current_time()
    for _ in range(1010):
        await limits.acquire()
        grants.append(anyio.current_time() - start)
    assert grants[9] == 0.0  # the burst, at once
    assert grants[10] == pytest.approx(0.001, abs=EPS)
    assert grants[-1] == pytest.approx(1.0, abs=EPS)  # (N - burst) / rate
    assert limits.statistics().granted == 1010


async def test_rate_accuracy_concurrent(mock_clock: None) -> None:
    limits = Limits(rate="100/s", burst=5)
    grants: list[float] = []

    async def worker() -> None:
        await limits.acquire()
        grants.append(anyio.current_time())

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(205):
            tg.start_soon(worker)
    assert max(grants) - start == pytest.approx(2.0, abs=EPS)
    # Per 100 ms of virtual time (after the start-up burst): exactly 10 grants.
    for k in range(20):
        lo, hi = start + k * 0.1 + EPS, start + (k + 1) * 0.1 + EPS
        assert sum(lo < g <= hi for g in grants) == 10


async def test_no_start_up_burst_beyond_burst(mock_clock: None) -> None:
    limits = Limits(rate="1000/min", burst=3)
    grants: list[float] = []

    async def worker() -> None:
        await limits.acquire()
        grants.append(anyio.current_time())

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(worker)
    at_once = [g for g in grants if g - start < EPS]
    assert len(at_once) == 3
    ordered = sorted(grants)[2:]
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert all(gap == pytest.approx(0.06, abs=EPS) for gap in gaps)


async def test_uncontended_acquire_does_not_yield() -> None:
    limits = Limits(rate="1000000/s", burst=100, max_concurrency=10)
    unlimited = Limits()
    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        for _ in range(50):
            await limits.acquire()
            await unlimited.acquire()
            async with limits():
                pass
            async with unlimited.slot():
                pass
        assert not ran, "acquire() yielded to the event loop on its fast path"
    assert ran


async def test_fifo_a_large_request_is_not_overtaken(mock_clock: None) -> None:
    limits = Limits(rate="10/s", burst=5)
    await limits.acquire(5)  # the burst is spent: everyone below has to wait
    calls: list[int] = []
    grants: list[tuple[int, float]] = []

    async def worker(index: int, tokens: int, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        calls.append(index)
        await limits.acquire(tokens)
        grants.append((index, anyio.current_time()))

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        await tg.start(worker, 0, 1)
        await tg.start(worker, 1, 5)
        for index in range(2, 12):
            await tg.start(worker, index, 1)
            await anyio.sleep(0.01)
    assert [index for index, _ in grants] == calls == list(range(12))
    times = dict(grants)
    # The 5-token caller gets its tokens when 5 have accrued after the caller before it.
    assert times[1] - start == pytest.approx(0.6, abs=EPS)
    assert times[2] - start == pytest.approx(0.7, abs=EPS)


async def test_fifo_holds_for_equal_slot_times(mock_clock: None) -> None:
    # After a cool-down, up to `burst` queued callers share the same slot time: the order of
    # grants must still be the order of calls.
    limits = Limits(rate="10/s", burst=8)
    limits.throttled(1.0)
    calls: list[int] = []
    grants: list[int] = []

    async def worker(index: int, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        calls.append(index)
        await limits.acquire()
        grants.append(index)

    async with anyio.create_task_group() as tg:
        for index in range(30):
            await tg.start(worker, index)
    assert grants == calls == list(range(30))


async def _collect_grants(
    limits: Limits, count: int, grants: list[float], *, task_status: TaskStatus[None]
) -> None:
    async def worker() -> None:
        await limits.acquire()
        grants.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(worker)
        task_status.started()


# -- cool-down --------------------------------------------------------------------------------


@pytest.mark.parametrize("waiters_arrive", ["before", "during"])
async def test_cooldown_stops_everyone_then_resumes_at_rate(
    mock_clock: None, waiters_arrive: str
) -> None:
    limits = Limits(rate="100/s", burst=5)
    grants: list[float] = []
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        if waiters_arrive == "before":
            await tg.start(_collect_grants, limits, 50, grants)
            await anyio.sleep(0.025)  # the burst and two more have gone
            throttled_at = anyio.current_time()
            limits.throttled(2.0)
        else:
            throttled_at = start
            limits.throttled(2.0)
            await tg.start(_collect_grants, limits, 50, grants)
        stats = limits.statistics()
        assert stats.throttles == 1
        assert stats.cooldown_remaining == pytest.approx(2.0, abs=EPS)
        await anyio.sleep(1.0)
        assert limits.statistics().cooldown_remaining == pytest.approx(1.0, abs=EPS)
    end = throttled_at + 2.0
    before = [g for g in grants if g < end - EPS]
    after = sorted(g for g in grants if g >= end - EPS)
    assert all(g <= throttled_at + EPS for g in before)  # nothing during the cool-down
    assert len(before) == (7 if waiters_arrive == "before" else 0)
    assert len(before) + len(after) == 50
    # After the cool-down: never more than `burst` at once, then 1 per 10 ms (100/s).
    at_end = [g for g in after if g - end < EPS]
    assert len(at_end) == (1 if waiters_arrive == "before" else 5)
    for k in range(1, 4):
        in_slice = [g for g in after if end + (k - 1) * 0.01 + EPS < g <= end + k * 0.01 + EPS]
        assert len(in_slice) == 1
    assert after[-1] - end == pytest.approx((len(after) - len(at_end)) * 0.01, abs=EPS)
    assert limits.statistics().cooldown_remaining == 0.0


async def test_cooldown_extends_and_applies_to_unlimited(mock_clock: None) -> None:
    limits = Limits()
    start = anyio.current_time()
    limits.throttled(1.0)
    limits.throttled(0.5)  # a shorter one does not shorten it
    async with anyio.create_task_group() as tg:
        tg.start_soon(limits.acquire)
        await anyio.sleep(0.5)
        limits.throttled(1.5)  # ...a longer one extends it, for those already waiting too
        assert limits.statistics().waiting == 1
    assert anyio.current_time() - start == pytest.approx(2.0, abs=EPS)
    assert limits.statistics().throttles == 3
    before = anyio.current_time()
    await limits.acquire()
    assert anyio.current_time() == before


@pytest.mark.parametrize("retry_after", [-1.0, math.inf, math.nan, "3"])
async def test_throttled_rejects_bad_values(retry_after: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        Limits().throttled(retry_after)
    assert info.value.field == "retry_after"


# -- concurrency ------------------------------------------------------------------------------


async def test_max_concurrency_is_never_exceeded(mock_clock: None) -> None:
    limits = Limits(rate="1000/s", burst=20, max_concurrency=3)
    in_flight = peak = 0
    calls: list[int] = []
    entered: dict[int, float] = {}

    async def worker(index: int, *, task_status: TaskStatus[None]) -> None:
        nonlocal in_flight, peak
        task_status.started()
        calls.append(index)
        async with limits():
            entered[index] = anyio.current_time()
            in_flight += 1
            peak = max(peak, in_flight)
            # A freed slot is handed straight to the next waiter, which may not have run yet.
            assert in_flight <= limits.statistics().in_flight <= 3
            await anyio.sleep(0.01 * (index % 4 + 1))
            in_flight -= 1

    async with anyio.create_task_group() as tg:
        for index in range(40):
            await tg.start(worker, index)
        assert limits.statistics().waiting == 37
    assert peak == 3
    # FIFO: nobody enters after a later caller (slots freed at the same instant are handed
    # over in order, but the new holders may then run in any order).
    times = [entered[index] for index in calls]
    assert times == sorted(times)
    assert times[-1] > times[0]
    stats = limits.statistics()
    assert (stats.in_flight, stats.waiting, stats.granted) == (0, 0, 40)


async def test_slot_without_cap_counts_in_flight() -> None:
    limits = Limits()
    async with limits.slot(), limits():
        assert limits.statistics().in_flight == 2
    assert limits.statistics().in_flight == 0


# -- cancellation -----------------------------------------------------------------------------


async def test_cancelled_waiter_gives_its_reservation_back(mock_clock: None) -> None:
    limits = Limits(rate="1/s")
    await limits.acquire()
    start = anyio.current_time()
    with anyio.move_on_after(0.3) as scope:
        await limits.acquire()
        pytest.fail("the cancelled acquire returned")
    assert scope.cancelled_caught
    assert limits.statistics().waiting == 0
    await limits.acquire()  # takes the slot the cancelled caller gave back
    assert anyio.current_time() - start == pytest.approx(1.0, abs=EPS)
    assert limits.statistics().granted == 2


@pytest.mark.parametrize("cancelled", [["b"], ["a", "b"], ["b", "a"]])
async def test_cancelled_newest_reservations_are_given_back(
    mock_clock: None, cancelled: list[str]
) -> None:
    limits = Limits(rate="1/s")
    await limits.acquire()
    start = anyio.current_time()
    scopes: dict[str, anyio.CancelScope] = {}

    async def waiter(name: str, *, task_status: TaskStatus[None]) -> None:
        with anyio.CancelScope() as scopes[name]:
            task_status.started()
            await limits.acquire()

    async with anyio.create_task_group() as tg:
        await tg.start(waiter, "a")  # slot at 1.0
        await tg.start(waiter, "b")  # slot at 2.0
        for name in cancelled:
            await anyio.sleep(0.1)
            scopes[name].cancel()
        await anyio.sleep(0.1)
        assert limits.statistics().waiting == 2 - len(cancelled)
        await limits.acquire()  # takes the first slot nobody is waiting for any more
        taken = anyio.current_time() - start
    assert taken == pytest.approx(3.0 - len(cancelled), abs=EPS)


async def test_cancelled_waiters_in_the_middle_do_not_break_the_queue(mock_clock: None) -> None:
    limits = Limits(rate="10/s")
    await limits.acquire()
    grants: dict[str, float] = {}

    async def worker(name: str, *, task_status: TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            await limits.acquire()
            grants[name] = anyio.current_time()

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        await tg.start(worker, "a")
        b = await tg.start(worker, "b")
        c = await tg.start(worker, "c")
        await tg.start(worker, "d")
        await anyio.sleep(0.05)
        b.cancel()
        c.cancel()
        await anyio.sleep(0.01)
        assert limits.statistics().waiting == 2
    assert set(grants) == {"a", "d"}
    # b's and c's slots stay as gaps: d keeps its place in the schedule.
    assert grants["a"] - start == pytest.approx(0.1, abs=EPS)
    assert grants["d"] - start == pytest.approx(0.4, abs=EPS)
    # The cancelled reservations left the queue with their waiters; the limiter works on.
    assert limits.statistics().waiting == 0
    await limits.acquire()
    assert anyio.current_time() - start == pytest.approx(0.5, abs=EPS)


async def test_giving_back_after_a_cooldown_keeps_the_cooldown(mock_clock: None) -> None:
    limits = Limits(rate="1/s")
    await limits.acquire()
    start = anyio.current_time()
    with anyio.move_on_after(0.2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(limits.acquire)  # slot at 1.0, moved to 10.1 by the cool-down
            await anyio.sleep(0.1)
            limits.throttled(10.0)
            await anyio.sleep_forever()
    assert limits.statistics().waiting == 0
    await limits.acquire()  # the queue is empty again, but the cool-down still holds
    assert anyio.current_time() - start == pytest.approx(10.1, abs=EPS)
    await limits.acquire()  # ... and then the rate: no burst beyond 1
    assert anyio.current_time() - start == pytest.approx(11.1, abs=EPS)


async def test_cancellation_propagates_from_every_wait(mock_clock: None) -> None:
    limits = Limits(rate="1/min", max_concurrency=1)
    cancelled = anyio.get_cancelled_exc_class()
    outcomes: list[str] = []

    async def admitted() -> None:
        async with limits():
            pass

    async def slot_only() -> None:
        async with limits.slot():
            pass

    async def waiter(fn: Callable[[], Awaitable[None]], *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        try:
            await fn()
        except cancelled:
            outcomes.append("cancelled")
            raise
        outcomes.append("returned")

    start = anyio.current_time()
    await limits.acquire()
    limits.throttled(10)
    async with limits.slot():  # the only slot
        async with anyio.create_task_group() as tg:
            await tg.start(waiter, admitted)  # waits for a slot
            await tg.start(waiter, slot_only)  # waits for a slot
            await tg.start(waiter, limits.acquire)  # waits for the cool-down, then the rate
            await anyio.sleep(1)
            assert limits.statistics().waiting == 3
            tg.cancel_scope.cancel()
        assert outcomes == ["cancelled"] * 3
        stats = limits.statistics()
        assert (stats.in_flight, stats.waiting) == (1, 0)
    assert limits.statistics().in_flight == 0
    # Nothing is stuck: the slot is free and the rate slot given back is the next one.
    async with limits():
        assert anyio.current_time() - start == pytest.approx(60.0, abs=EPS)
    assert limits.statistics().granted == 2


async def test_slot_handed_over_in_order_after_cancellations(mock_clock: None) -> None:
    limits = Limits(max_concurrency=1)
    order: list[str] = []

    async def user(name: str, hold: float, *, task_status: TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            async with limits.slot():
                order.append(name)
                await anyio.sleep(hold)

    async with anyio.create_task_group() as tg:
        await tg.start(user, "a", 1.0)
        b = await tg.start(user, "b", 1.0)
        await tg.start(user, "c", 1.0)
        b.cancel()
    assert order == ["a", "c"]
    assert limits.statistics().in_flight == 0


# -- clocks -----------------------------------------------------------------------------------


def _run_virtual(fn: Callable[[], Awaitable[Any]], backend: str) -> Any:
    if backend == "trio":
        import trio.testing

        options: dict[str, Any] = {"clock": trio.testing.MockClock(autojump_threshold=0)}
    else:
        import looptime

        options = {"loop_factory": partial(looptime.new_event_loop, start=1000.0)}
    return anyio.run(fn, backend=backend, backend_options=options)


def test_one_limits_object_serves_successive_event_loops() -> None:
    limits = Limits(rate="1/s")

    async def two_grants() -> float:
        start = anyio.current_time()
        await limits.acquire()
        await limits.acquire()
        return anyio.current_time() - start

    # Each loop has its own clock (looptime starts at 1000, trio's MockClock at 0): the state
    # read on one must not make the next wait.
    for backend in ["asyncio", "trio", "asyncio", "asyncio", "trio"]:
        assert _run_virtual(two_grants, backend) == pytest.approx(1.0, abs=EPS)
    assert limits.statistics().granted == 10


# -- property ---------------------------------------------------------------------------------


def _max_window_excess(
    grants: list[tuple[float, int]], burst: int, rate: float, slack: float
) -> float:
    """The largest (tokens in [t_i, t_j]) - (burst + rate * (t_j - t_i)) over all windows."""
    grants = sorted(grants)
    worst = -math.inf
    for i, (t_i, _) in enumerate(grants):
        tokens = 0
        for t_j, n in grants[i:]:
            tokens += n
            worst = max(worst, tokens - (burst + rate * (t_j - t_i) + slack))
    return worst


arrivals = st.lists(st.tuples(st.floats(0.0, 0.5), st.integers(1, 10)), min_size=1, max_size=40)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(1, 1000),
    period=st.sampled_from([0.1, 1.0, 2.5, 60.0]),
    burst=st.integers(1, 10),
    pattern=arrivals,
)
def test_no_window_holds_more_than_burst_plus_rate(
    backend: str, limit: int, period: float, burst: int, pattern: list[tuple[float, int]]
) -> None:
    limits = Limits(rate=Rate(limit, period), burst=burst)
    rate = limit / period
    grants: list[tuple[float, int]] = []

    async def caller(delay: float, tokens: int) -> None:
        await anyio.sleep(delay)
        await limits.acquire(tokens)
        grants.append((anyio.current_time(), tokens))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for delay, tokens in pattern:
                tg.start_soon(caller, delay, min(tokens, burst))

    _run_virtual(main, backend)
    assert len(grants) == len(pattern)
    # looptime rounds its clock to 1 µs ticks, so a grant may land a tick after its slot.
    resolution = 1e-6 if backend == "asyncio" else 0.0
    assert _max_window_excess(grants, burst, rate, 1e-9 + 2 * rate * resolution) <= 0


events = st.lists(
    st.tuples(
        st.floats(0.0, 2.0),  # when
        st.sampled_from(["acquire", "cancelled", "throttle"]),
        st.integers(1, 10),  # tokens, or the cool-down in tenths of a second
    ),
    min_size=1,
    max_size=30,
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limit=st.integers(1, 100), burst=st.integers(1, 5), script=events)
def test_cooldowns_and_cancellations_keep_every_promise(
    backend: str, limit: int, burst: int, script: list[tuple[float, str, int]]
) -> None:
    limits = Limits(rate=Rate(limit, 1.0), burst=burst)
    grants: list[tuple[float, int]] = []
    cooldowns: list[tuple[float, float]] = []

    async def acquire(delay: float, tokens: int, cancel_after: float | None) -> None:
        await anyio.sleep(delay)
        with anyio.move_on_after(math.inf if cancel_after is None else cancel_after):
            await limits.acquire(tokens)
            grants.append((anyio.current_time(), tokens))

    async def throttle(delay: float, tenths: int) -> None:
        await anyio.sleep(delay)
        now = anyio.current_time()
        limits.throttled(tenths / 10)
        cooldowns.append((now, now + tenths / 10))

    async def main() -> None:
        with anyio.fail_after(10_000):
            async with anyio.create_task_group() as tg:
                for when, kind, n in script:
                    if kind == "throttle":
                        tg.start_soon(throttle, when, n)
                    else:
                        cancel_after = 0.05 * n if kind == "cancelled" else None
                        tg.start_soon(acquire, when, min(n, burst), cancel_after)
        stats = limits.statistics()
        assert (stats.waiting, stats.in_flight) == (0, 0)
        await limits.acquire()  # still works

    _run_virtual(main, backend)
    assert len(grants) >= sum(kind == "acquire" for _, kind, _ in script)
    for start, end in cooldowns:
        assert not [t for t, _ in grants if start + 1e-9 < t < end - 1e-9], "granted in a cool-down"
    resolution = 1e-6 if backend == "asyncio" else 0.0
    assert _max_window_excess(grants, burst, limit, 1e-9 + 2 * limit * resolution) <= 0


def test_unlimited_and_statistics_outside_an_event_loop() -> None:
    assert Limits.unlimited(name="x").to_spec() == {"name": "x"}
    stats = Limits(rate="5/s").statistics()
    assert stats == LimitsStatistics(
        granted=0, waiting=0, in_flight=0, throttles=0, cooldown_remaining=0.0
    )
