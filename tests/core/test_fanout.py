"""amap: order, bounds on concurrency and memory, laziness, errors, early exit, progress."""

from __future__ import annotations

import gc
import itertools
import logging
import random
import re
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookbridge._errors import BatchError, ConfigurationError
from hookbridge._fanout import Outcome, Progress, amap

pytestmark = pytest.mark.anyio


class Boom(Exception):
    """What the mapped function raises for the items a test makes fail."""


class Meter:
    """Wraps an async function: counts calls started, finished and cancelled, and peak overlap."""

    def __init__(
        self,
        delay: Callable[[Any], float] = lambda item: 0.0,
        fail: Callable[[Any], bool] = lambda item: False,
    ) -> None:
        self.delay = delay
        self.fail = fail
        self.started: list[Any] = []
        self.finished: list[Any] = []
        self.cancelled: list[Any] = []
        self.running = 0
        self.peak = 0

    async def __call__(self, item: Any) -> Any:
        self.started.append(item)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if self.delay(item):
                await anyio.sleep(self.delay(item))
            else:
                await anyio.lowlevel.checkpoint()
            if self.fail(item):
                raise Boom(f"item {item} failed")
            self.finished.append(item)
            return item * 10
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(item)
            raise
        finally:
            self.running -= 1


class CountingLimiter:
    """Implements what amap needs from Limits (``async with limits():``) and counts the calls."""

    def __init__(self) -> None:
        self.entered = 0
        self.active = 0

    def __call__(self) -> AbstractAsyncContextManager[None]:
        return self._slot()

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        self.entered += 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


async def collect_all(results: AsyncIterator[Any] | Any) -> list[Any]:
    return [value async for value in results]


async def consume(
    fanout: AbstractAsyncContextManager[Any],
    into: list[Any],
    pause_after: Callable[[Any], float] = lambda value: 0.0,
) -> None:
    """Run the fan-out to the end, appending each result to ``into`` and pausing as asked."""
    async with fanout as results:
        async for value in results:
            into.append(value)
            if pause_after(value):
                await anyio.sleep(pause_after(value))


# -- results ---------------------------------------------------------------------------------


async def test_values_come_out_in_input_order(mock_clock: None) -> None:
    rng = random.Random(1)
    delays = {i: rng.choice([0.0, 0.1, 0.5, 2.0]) for i in range(200)}
    meter = Meter(delay=delays.__getitem__)
    async with amap(meter, range(200), max_at_once=7) as results:
        values = await collect_all(results)
    assert values == [i * 10 for i in range(200)]
    assert sorted(meter.finished) == list(range(200))


async def test_unordered_yields_as_finished_and_the_same_multiset(mock_clock: None) -> None:
    items = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    meter = Meter(delay=lambda item: float(item))
    async with amap(meter, items, max_at_once=len(items), ordered=False) as results:
        values = await collect_all(results)
    assert Counter(values) == Counter(item * 10 for item in items)
    # Everything ran at once, so the results arrive sorted by duration, not in input order.
    assert values == sorted(values)
    assert values != [item * 10 for item in items]


async def test_an_empty_input_ends_at_once() -> None:
    empty: list[Any] = []
    for items in (empty, iter(empty)):
        async with amap(Meter(), items, max_at_once=3) as results:
            assert await collect_all(results) == []


@pytest.mark.parametrize("ordered", [True, False])
async def test_concurrency_never_exceeds_max_at_once(mock_clock: None, ordered: bool) -> None:
    rng = random.Random(2)
    delays = [rng.uniform(0, 1) for _ in range(300)]
    meter = Meter(delay=lambda i: delays[i])
    async with amap(meter, range(300), max_at_once=13, ordered=ordered) as results:
        assert len(await collect_all(results)) == 300
    assert meter.peak == 13


async def test_a_small_batch_starts_only_the_workers_it_needs() -> None:
    before = len(anyio.get_running_tasks())
    seen: list[int] = []

    async def count_tasks(item: int) -> int:
        seen.append(len(anyio.get_running_tasks()) - before)
        return item

    async with amap(count_tasks, range(3), max_at_once=1000) as results:
        assert await collect_all(results) == [0, 1, 2]
    # The producer, its task group's host and at most one worker per item; never a thousand.
    assert max(seen) <= 3 + 3


@pytest.mark.parametrize("ordered", [True, False])
async def test_waiting_items_fill_every_worker_within_a_few_loop_turns(ordered: bool) -> None:
    # Workers wake each other as they find jobs left: one at a time, 64 waiting items took 64
    # loop turns to all be in flight (a fan-out of HTTP calls then ran at half its concurrency);
    # the wake-ups now fan out, so about log2(64) turns suffice. 20 leaves room for the
    # producer's and the task starts' own turns, and is still far below 64.
    gate = anyio.Event()
    in_flight = 0

    async def wait_at_the_gate(item: int) -> int:
        nonlocal in_flight
        in_flight += 1
        await gate.wait()
        return item

    async with amap(wait_at_the_gate, range(64), max_at_once=64, ordered=ordered) as results:
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert in_flight == 64
        gate.set()
        assert sorted(await collect_all(results)) == list(range(64))


async def test_the_input_is_read_lazily(mock_clock: None) -> None:
    pulled = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    meter = Meter(delay=lambda item: 0.01)
    received = []
    async with amap(meter, endless(), max_at_once=10) as results:
        async for value in results:
            received.append(value)
            if len(received) == 50:
                break
    assert received == [i * 10 for i in range(50)]
    assert 50 <= pulled <= 50 + 2 * 10
    assert meter.running == 0


async def test_async_iterable_input_is_read_and_closed_in_one_task() -> None:
    tasks: set[int] = set()
    closed = []

    async def numbers() -> AsyncIterator[int]:
        try:
            for i in itertools.count():
                tasks.add(anyio.get_current_task().id)
                await anyio.lowlevel.checkpoint()
                yield i
        finally:
            tasks.add(anyio.get_current_task().id)
            closed.append(True)

    consumer = anyio.get_current_task().id
    async with amap(Meter(), numbers(), max_at_once=4) as results:
        received = []
        async for value in results:
            received.append(value)
            if len(received) == 30:
                break
    assert received == [i * 10 for i in range(30)]
    assert closed == [True]
    assert len(tasks) == 1
    assert consumer not in tasks


async def test_a_finite_async_iterable_gives_every_result() -> None:
    class Source:
        def __aiter__(self) -> AsyncIterator[int]:
            return self._gen()

        async def _gen(self) -> AsyncIterator[int]:
            for i in range(25):
                yield i

    async with amap(Meter(), Source(), max_at_once=3, on_error="collect") as results:
        outcomes = await collect_all(results)
    assert [o.value for o in outcomes] == [i * 10 for i in range(25)]


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_slow_consumer_holds_the_work_back(mock_clock: None, ordered: bool) -> None:
    meter = Meter(delay=lambda item: 0.01)
    seen = 0
    async with amap(meter, range(1000), max_at_once=5, ordered=ordered) as results:
        async for _ in results:
            seen += 1
            await anyio.sleep(1)
            # The window: at most 2 * max_at_once items between pulled and delivered.
            assert len(meter.started) <= seen + 2 * 5
            if seen == 40:
                break
    assert len(meter.started) <= 40 + 2 * 5


async def test_a_slow_item_holds_back_a_bounded_number_of_results(mock_clock: None) -> None:
    meter = Meter(delay=lambda item: 100.0 if item == 0 else 0.1)
    async with amap(meter, range(1000), max_at_once=10) as results:
        async for value in results:
            assert value == 0
            assert anyio.current_time() >= 100
            # Item 0 blocked the window: nothing beyond it started while it ran.
            assert len(meter.started) <= 2 * 10
            break


async def test_outcome_ok_and_unwrap() -> None:
    good: Outcome[str, int] = Outcome(0, "a", 1)
    bad: Outcome[str, int] = Outcome(1, "b", error=Boom("no"))
    assert good.ok
    assert good.unwrap() == 1
    assert not bad.ok
    with pytest.raises(Boom, match="no"):
        bad.unwrap()


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
async def test_collect_accounts_for_every_item(mock_clock: None, ordered: bool) -> None:
    rng = random.Random(3)
    delays = [rng.choice([0.0, 0.2, 1.0]) for _ in range(200)]
    meter = Meter(delay=lambda i: delays[i], fail=lambda i: i % 7 == 3)
    async with amap(meter, range(200), max_at_once=9, ordered=ordered, on_error="collect") as res:
        outcomes = await collect_all(res)
    assert sorted(o.index for o in outcomes) == list(range(200))
    if ordered:
        assert [o.index for o in outcomes] == list(range(200))
    for outcome in outcomes:
        assert outcome.item == outcome.index
        if outcome.index % 7 == 3:
            assert not outcome.ok
            assert outcome.value is None
            assert isinstance(outcome.error, Boom)
            assert str(outcome.error) == f"item {outcome.index} failed"
        else:
            assert outcome.ok
            assert outcome.error is None
            assert outcome.value == outcome.index * 10


async def test_raise_names_the_failed_item_and_cancels_the_rest(mock_clock: None) -> None:
    meter = Meter(delay=lambda i: 1.0 if i == 3 else 5.0, fail=lambda i: i == 3)
    received: list[int] = []
    with pytest.raises(BatchError) as caught:
        await consume(amap(meter, range(100), max_at_once=8), received)
    error = caught.value
    assert [f.index for f in error.failures] == [3]
    assert isinstance(error.failures[0].error, Boom)
    assert error.failures[0].item == 3
    assert error.completed == 0
    assert error.not_run == 99
    assert "#3 3: Boom: item 3 failed" in str(error)
    assert received == []
    assert len(meter.started) == 8
    assert len(meter.cancelled) == 7
    assert meter.running == 0
    assert anyio.current_time() < 1000 + 5


async def test_raise_names_every_item_that_failed_before_the_work_stopped(
    mock_clock: None,
) -> None:
    async def fn(item: int) -> int:
        if item == 2:
            await anyio.sleep(1)
            raise Boom("first")
        try:
            await anyio.sleep(0.5 * item)
        except anyio.get_cancelled_exc_class():
            if item in (5, 6):
                # Some clients turn cancellation into their own error: still a failure to name.
                raise Boom("interrupted") from None
            raise
        return item

    got: list[int] = []
    with pytest.raises(BatchError) as caught:
        await consume(amap(fn, range(50), max_at_once=10), got)
    assert [f.index for f in caught.value.failures] == [2, 5, 6]
    assert [str(f.error) for f in caught.value.failures] == ["first", "interrupted", "interrupted"]
    # 0 and 1 finished before the failure; 0 and 1 were delivered, in input order.
    assert caught.value.completed == 2
    assert got == [0, 1]
    assert caught.value.not_run == 50 - 2 - 3


async def test_raise_counts_not_run_from_what_was_pulled_when_the_size_is_unknown(
    mock_clock: None,
) -> None:
    meter = Meter(delay=lambda i: 1.0, fail=lambda i: i == 0)
    with pytest.raises(BatchError) as caught:
        async with amap(meter, iter(range(1000)), max_at_once=4, ordered=False) as results:
            await collect_all(results)
    assert caught.value.completed + len(caught.value.failures) + caught.value.not_run <= 2 * 4


async def test_a_failure_while_the_consumer_is_busy_is_raised_by_the_next_receive(
    mock_clock: None,
) -> None:
    meter = Meter(delay=lambda i: 0.1 * i, fail=lambda i: i == 4)
    got: list[int] = []
    with pytest.raises(BatchError):
        # Item 4 fails while the consumer sleeps after item 0: the work stops meanwhile.
        await consume(amap(meter, range(10), max_at_once=10), got, lambda v: 10 if v == 0 else 0)
    assert got == [0]
    assert len(meter.cancelled) == 5  # 5..9


async def test_leaving_early_cancels_the_rest_without_error(mock_clock: None) -> None:
    meter = Meter(delay=lambda i: 1.0 + i % 3)
    async with amap(meter, range(1000), max_at_once=6) as results:
        async for value in results:
            if value == 40:
                break
    assert meter.running == 0
    assert meter.cancelled
    assert len(meter.started) <= 5 + 2 * 6
    # Nothing runs after the block: the virtual clock has no sleeper to jump to.
    now = anyio.current_time()
    await anyio.lowlevel.checkpoint()
    assert anyio.current_time() == now


async def test_a_failure_the_consumer_did_not_ask_about_is_not_raised(mock_clock: None) -> None:
    meter = Meter(delay=lambda i: 0.0 if i < 10 else 1.0, fail=lambda i: i == 12)
    async with amap(meter, range(30), max_at_once=4) as results:
        async for value in results:
            if value == 0:
                await anyio.sleep(5)  # item 12 fails meanwhile
                break


async def test_the_input_raising_ends_the_stream_with_its_error(mock_clock: None) -> None:
    def source() -> Iterator[int]:
        yield from range(10)
        raise KeyError("bad page")

    modes: tuple[Literal["raise", "collect"], ...] = ("raise", "collect")
    for mode in modes:
        got: list[Any] = []
        meter = Meter(delay=lambda i: 0.1 * (10 - i))
        fanout = amap(meter, source(), max_at_once=3, on_error=mode)
        with pytest.raises(KeyError, match="bad page") as caught:
            await consume(fanout, got)
        assert len(got) == 10
        assert caught.value.__context__ is None


async def test_work_that_never_waits_still_stops_at_the_first_failure() -> None:
    started: list[int] = []

    async def fn(item: int) -> int:
        # No checkpoint at all: only amap's own checks can stop the items after a failure.
        started.append(item)
        if item == 3:
            raise Boom(item)
        return item

    with pytest.raises(BatchError) as caught:
        await consume(amap(fn, range(10_000), max_at_once=50), [])
    assert [f.index for f in caught.value.failures] == [3]
    assert started == [0, 1, 2, 3]


async def test_an_error_in_the_progress_callback_propagates_unwrapped() -> None:
    def progress(snapshot: Progress) -> None:
        if snapshot.done == 5:
            raise ValueError("progress bar broke")

    with pytest.raises(ValueError, match="progress bar broke"):
        await consume(amap(Meter(), range(100), max_at_once=3, progress=progress), [])


async def test_base_exceptions_are_never_collected() -> None:
    class Stop(BaseException):
        pass

    async def fn(item: int) -> int:
        if item == 5:
            raise Stop
        await anyio.lowlevel.checkpoint()
        return item

    with pytest.raises(Stop):
        async with amap(fn, range(20), max_at_once=3, on_error="collect") as results:
            await collect_all(results)


async def test_an_error_in_the_consumer_propagates_unwrapped(mock_clock: None) -> None:
    meter = Meter(delay=lambda i: 1.0)

    def fail(value: int) -> float:
        raise Boom("consumer")

    with pytest.raises(Boom, match="consumer"):
        await consume(amap(meter, range(100), max_at_once=5), [], fail)
    assert meter.running == 0


async def test_closing_the_results_stops_the_work(mock_clock: None) -> None:
    meter = Meter(delay=lambda i: 1.0)
    async with amap(meter, range(100), max_at_once=5) as results:
        await results.receive()
        await results.aclose()
        await anyio.sleep(10)
        assert meter.running == 0
        assert len(meter.started) <= 1 + 2 * 5


async def test_two_tasks_may_not_restore_one_order(mock_clock: None) -> None:
    meter = Meter(delay=lambda i: 1.0)
    async with amap(meter, range(10), max_at_once=2) as results, anyio.create_task_group() as tg:
        tg.start_soon(results.receive)
        await anyio.sleep(0.5)
        with pytest.raises(anyio.BusyResourceError):
            await results.receive()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_at_once", 0),
        ("max_at_once", -1),
        ("max_at_once", True),
        ("max_at_once", 2.5),
        ("max_at_once", None),
        ("on_error", "ignore"),
        ("progress_interval", 0),
        ("progress", "yes"),
        ("limits", 5),
    ],
)
async def test_bad_options_are_refused_naming_the_field(option: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"max_at_once": 2, option: value}
    with pytest.raises(ConfigurationError, match=option) as caught:
        amap(Meter(), range(3), **kwargs)
    assert caught.value.field == option


async def test_items_that_are_not_iterable_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="iterable") as caught:
        amap(Meter(), 5, max_at_once=2)  # type: ignore[call-overload]
    assert caught.value.field == "items"


# -- limits and progress ---------------------------------------------------------------------


async def test_every_call_runs_inside_limits(mock_clock: None) -> None:
    limiter = CountingLimiter()
    inside = []

    async def fn(item: int) -> int:
        inside.append(limiter.active)
        await anyio.sleep(0.1)
        return item

    async with amap(fn, range(50), max_at_once=5, limits=limiter) as results:
        assert await collect_all(results) == list(range(50))
    assert limiter.entered == 50
    assert limiter.active == 0
    assert all(1 <= active <= 5 for active in inside)


async def test_progress_snapshots_end_with_every_item_accounted(mock_clock: None) -> None:
    snapshots: list[Progress] = []
    meter = Meter(delay=lambda i: 0.1 * (i % 4), fail=lambda i: i % 10 == 0)
    async with amap(
        meter, range(100), max_at_once=8, on_error="collect", progress=snapshots.append
    ) as results:
        await collect_all(results)
    assert len(snapshots) == 100
    last = snapshots[-1]
    assert last.done + last.failed == 100
    assert last.failed == 10
    assert last.started == 100
    assert last.in_flight == 0
    assert last.elapsed > 0
    assert last.rate == pytest.approx(100 / last.elapsed)
    assert all(0 <= s.in_flight <= 8 for s in snapshots)
    assert [s.done + s.failed for s in snapshots] == list(range(1, 101))


async def test_progress_is_logged_at_a_bounded_rate(
    mock_clock: None, caplog: pytest.LogCaptureFixture
) -> None:
    meter = Meter(delay=lambda i: 0.1, fail=lambda i: i == 7)
    with caplog.at_level(logging.INFO, logger="hookbridge.progress"):
        async with amap(meter, range(600), max_at_once=2, on_error="collect") as results:
            await collect_all(results)
    lines = [r.getMessage() for r in caplog.records if r.name == "hookbridge.progress"]
    periodic = [line for line in lines if line.startswith("amap: ")]
    final = [line for line in lines if line.startswith("amap finished: ")]
    # 600 items, 2 at a time, 0.1 s each: 30 virtual seconds at a 10 s interval.
    assert 2 <= len(periodic) <= 4, lines
    # The first line comes at 10 s (the virtual clock may be a hair off 200 items).
    first = re.fullmatch(r"amap: (\d+) done, 1 failed, ([0-2]) in flight, (\d+\.\d)/s", periodic[0])
    assert first is not None, periodic
    assert 199 <= int(first[1]) + 1 <= 201  # 10 s at 20/s (the clock may be a hair off)
    assert float(first[3]) == pytest.approx(20, abs=0.2)
    summary = "amap finished: 599 done, 1 failed, 0 not run or cancelled, 20.0/s over 30.0 s"
    assert final == [summary]


async def test_progress_goes_to_the_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.fanout")
    with caplog.at_level(logging.INFO, logger="tests.fanout"):
        async with amap(Meter(), range(5), max_at_once=2, logger=logger) as results:
            await collect_all(results)
    assert [r.name for r in caplog.records] == ["tests.fanout"]
    assert caplog.records[0].getMessage().startswith("amap finished: 5 done, 0 failed")


async def test_nothing_is_logged_when_info_is_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hookbridge.progress"):
        async with amap(Meter(), range(5), max_at_once=2) as results:
            await collect_all(results)
    assert caplog.records == []


# -- performance and memory ------------------------------------------------------------------


async def _noop(item: int) -> int:
    return item


async def _peak(n: int, ordered: bool) -> int:
    gc.collect()
    tracemalloc.reset_peak()
    start, _ = tracemalloc.get_traced_memory()
    count = 0
    async with amap(_noop, range(n), max_at_once=20, ordered=ordered) as results:
        async for _ in results:
            count += 1
    assert count == n
    return tracemalloc.get_traced_memory()[1] - start


@pytest.mark.parametrize("ordered", [True, False])
async def test_memory_does_not_grow_with_the_input(ordered: bool) -> None:
    tracemalloc.start()
    try:
        await _peak(200, ordered)  # warm up: first-use allocations are not the fan-out's
        # Ten times the items (both far beyond the 40-item window) must not need more memory.
        # Kept small because tracing slows every allocation fifteenfold;
        # contrib/bench/amap_memory.py measures up to a million items at max_at_once=100.
        small = await _peak(1_000, ordered)
        large = await _peak(10_000, ordered)
    finally:
        tracemalloc.stop()
    assert large < 1.5 * small + 64 * 1024, (small, large)


# -- a property ------------------------------------------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    plan=st.lists(
        st.tuples(st.sampled_from([0.0, 0.0, 0.1, 0.7, 3.0]), st.booleans()), max_size=40
    ),
    max_at_once=st.integers(1, 12),
    ordered=st.booleans(),
)
async def test_collect_gives_one_outcome_per_item(
    mock_clock: None, plan: list[tuple[float, bool]], max_at_once: int, ordered: bool
) -> None:
    meter = Meter(delay=lambda i: plan[i][0], fail=lambda i: plan[i][1])
    async with amap(
        meter, range(len(plan)), max_at_once=max_at_once, ordered=ordered, on_error="collect"
    ) as results:
        outcomes = await collect_all(results)
    indexes = [o.index for o in outcomes]
    assert sorted(indexes) == list(range(len(plan)))
    if ordered:
        assert indexes == sorted(indexes)
    assert all(o.ok is not plan[o.index][1] for o in outcomes)
    assert meter.peak <= max_at_once


async def test_the_no_op_path_never_waits_on_the_clock(mock_clock: None) -> None:
    # Speed is measured by contrib/bench/amap_memory.py (time per item, against aiometer), not
    # here. On virtual time this pins what a timed test could not tell apart from a slow
    # machine: no item costs a timed wait (a sleep or a timeout per item would move the clock).
    start = anyio.current_time()
    async with amap(_noop, range(20_000), max_at_once=100) as results:
        count = len([value async for value in results])
    assert count == 20_000
    assert anyio.current_time() == start
