"""Retry: attempts, jittered back-off, Retry-After, deadline, cancellation, on virtual time."""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import anyio
import pytest
from anyio.abc import TaskStatus
from hypothesis import given
from hypothesis import strategies as st

from hookbridge._errors import (
    ConfigurationError,
    DeadlineExceeded,
    RemoteStatusError,
    Throttled,
    TransportError,
)
from hookbridge._limits import Limits
from hookbridge._retry import Retry, RetryEvent, default_retry_on, parse_retry_after

pytestmark = pytest.mark.anyio

EPS = 1e-5  # looptime (asyncio) moves its clock in 1 µs ticks
NOW = 1_700_000_000.0  # a fixed wall-clock instant for HTTP dates: 2023-11-14 22:13:20 GMT


class Flaky:
    """An async callable that raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception, hang: bool = False) -> None:
        self.errors = list(errors)
        self.hang = hang
        self.calls: list[float] = []

    async def __call__(self) -> str:
        self.calls.append(anyio.current_time())
        if self.errors:
            raise self.errors.pop(0)
        if self.hang:
            await anyio.sleep_forever()
        return "ok"


class Ceiling(random.Random):
    """Jitter that always draws the top of the range: makes back-off deterministic."""

    def uniform(self, a: float, b: float) -> float:
        return b


def throttled(retry_after: float | None) -> Throttled:
    return Throttled("slow down", status=429, retry_after=retry_after)


# -- parse_retry_after ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("Tue, 14 Nov 2023 22:15:20 GMT", 120.0),  # IMF-fixdate
        ("Tuesday, 14-Nov-23 22:15:20 GMT", 120.0),  # RFC 850
        ("Tue Nov 14 22:15:20 2023", 120.0),  # asctime
        ("Tue, 14 Nov 2023 22:15:20 -0000", 120.0),
        ("Tue, 14 Nov 2023 23:15:20 +0100", 120.0),
        ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0),  # in the past
        ("Mon, 01 Jan 1990 00:00:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("1e3", None),
        ("1_000", None),
        ("inf", None),
        ("nan", None),
        ("12 seconds", None),
        ("Tue, 32 Nov 2023 22:15:20 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_uses_wall_clock_by_default() -> None:
    import email.utils
    import time

    soon = email.utils.formatdate(time.time() + 60, usegmt=True)
    result = parse_retry_after(soon)
    assert result is not None
    assert 55 <= result <= 60


@given(st.text(max_size=60))
def test_parse_retry_after_never_raises(text: str) -> None:
    result = parse_retry_after(text, now=NOW)
    assert result is None or result >= 0.0


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TransportError("reset"), True),
        (throttled(3.0), True),
        (throttled(None), True),
        (RemoteStatusError("boom", status=500), True),
        (RemoteStatusError("bad gateway", status=502), True),
        (RemoteStatusError("unavailable", status=503), True),
        (RemoteStatusError("not implemented", status=501), False),
        (RemoteStatusError("not found", status=404), False),
        (ConfigurationError("wrong"), False),
        (ValueError("bug"), False),
    ],
)
def test_default_retry_on(error: Exception, expected: bool) -> None:
    assert default_retry_on(error) is expected


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"attempts": 2.0}, "attempts"),
        ({"backoff": -1}, "backoff"),
        ({"backoff": math.nan}, "backoff"),
        ({"max_backoff": math.inf}, "max_backoff"),
        ({"max_retry_after": "60"}, "max_retry_after"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": -5}, "deadline"),
        ({"retry_on": "always"}, "retry_on"),
        ({"rng": 42}, "rng"),
    ],
)
def test_retry_rejects_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Retry(**kwargs)
    assert info.value.field == field


def always(error: BaseException) -> bool:
    return True


def test_retry_spec_round_trip() -> None:
    policy = Retry(attempts=5, backoff=0.25, deadline=60, retry_on=always, rng=random.Random(1))
    spec = policy.to_spec()
    assert spec["retry_on"] == f"{__name__}:always"
    assert Retry.from_spec(spec) == policy
    assert Retry.from_spec(Retry().to_spec()) == Retry()
    assert Retry.none() == Retry(attempts=1)
    with pytest.raises(ConfigurationError, match="module-level"):
        Retry(retry_on=lambda error: True).to_spec()
    with pytest.raises(ConfigurationError, match="cannot be imported"):
        Retry.from_spec({"retry_on": "no_such_module_here:fn"})
    with pytest.raises(ConfigurationError, match="not a retry spec"):
        Retry.from_spec({"attempts": 2, "tries": 3})


# -- attempts and back-off --------------------------------------------------------------------


async def test_retries_until_success(mock_clock: None) -> None:
    fn = Flaky(TransportError("reset"), RemoteStatusError("boom", status=503))
    events: list[RetryEvent] = []
    result = await Retry(attempts=3, backoff=0.1).run(fn, on_retry=events.append)
    assert result == "ok"
    assert len(fn.calls) == 3
    assert [event.attempt for event in events] == [1, 2]
    assert isinstance(events[0].error, TransportError)


async def test_attempts_run_out_and_the_last_error_is_raised_unchanged(mock_clock: None) -> None:
    errors = [TransportError(f"reset {n}") for n in range(10)]
    fn = Flaky(*errors)
    events: list[RetryEvent] = []
    with pytest.raises(TransportError) as info:
        await Retry(attempts=4, backoff=0.01).run(fn, on_retry=events.append)
    assert info.value is errors[3]
    assert len(fn.calls) == 4
    assert len(events) == 3


async def test_backoff_grows_exponentially_up_to_the_cap(mock_clock: None) -> None:
    fn = Flaky(*[TransportError("reset") for _ in range(6)])
    events: list[RetryEvent] = []
    policy = Retry(attempts=7, backoff=0.1, max_backoff=1.0, rng=Ceiling())
    assert await policy.run(fn, on_retry=events.append) == "ok"
    expected = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert [event.delay for event in events] == pytest.approx(expected)
    gaps = [b - a for a, b in zip(fn.calls, fn.calls[1:], strict=False)]
    assert gaps == pytest.approx(expected, abs=EPS)


async def test_jittered_backoff_stays_in_range_and_is_reproducible(mock_clock: None) -> None:
    async def delays(seed: int) -> list[float]:
        fn = Flaky(*[TransportError("reset") for _ in range(9)])
        events: list[RetryEvent] = []
        policy = Retry(attempts=10, backoff=0.5, max_backoff=4.0, rng=random.Random(seed))
        await policy.run(fn, on_retry=events.append)
        return [event.delay for event in events]

    first = await delays(7)
    assert first == await delays(7)
    assert first != await delays(8)
    for attempt, delay in enumerate(first, start=1):
        assert 0.0 <= delay <= min(4.0, 0.5 * 2 ** (attempt - 1))
    assert len(set(first)) == len(first)  # jittered, not a fixed schedule


async def test_non_retryable_error_is_raised_at_once(mock_clock: None) -> None:
    error = RemoteStatusError("not found", status=404)
    fn = Flaky(error)
    start = anyio.current_time()
    with pytest.raises(RemoteStatusError) as info:
        await Retry(attempts=5).run(fn)
    assert info.value is error
    assert len(fn.calls) == 1
    assert anyio.current_time() == start


async def test_retry_none_makes_one_attempt(mock_clock: None) -> None:
    fn = Flaky(TransportError("reset"))
    with pytest.raises(TransportError):
        await Retry.none().run(fn)
    assert len(fn.calls) == 1


async def test_arguments_are_passed_on() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    assert await Retry().run(add, 2, 3, limits=Limits()) == 5


# -- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", ["30", "Tue, 14 Nov 2023 22:13:50 GMT"], ids=["seconds", "http-date"]
)
async def test_retry_after_is_honoured(mock_clock: None, header: str) -> None:
    retry_after = parse_retry_after(header, now=NOW)
    assert retry_after == 30.0
    fn = Flaky(throttled(retry_after))
    events: list[RetryEvent] = []
    policy = Retry(attempts=2, backoff=0.1, rng=Ceiling())
    assert await policy.run(fn, on_retry=events.append) == "ok"
    assert fn.calls[1] - fn.calls[0] >= 30.0 - EPS
    assert events[0].delay == 30.0


async def test_backoff_wins_when_longer_than_retry_after(mock_clock: None) -> None:
    fn = Flaky(TransportError("a"), TransportError("b"), throttled(0.5))
    events: list[RetryEvent] = []
    await Retry(attempts=4, backoff=1.0, rng=Ceiling()).run(fn, on_retry=events.append)
    assert [event.delay for event in events] == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("odd", [-3.0, math.nan])
async def test_odd_retry_after_values_fall_back_to_backoff(mock_clock: None, odd: float) -> None:
    limits = Limits()
    fn = Flaky(throttled(odd))
    events: list[RetryEvent] = []
    await Retry(attempts=2, backoff=0.5, rng=Ceiling()).run(
        fn, limits=limits, on_retry=events.append
    )
    assert [event.delay for event in events] == [0.5]
    assert limits.statistics().throttles == (1 if odd < 0 else 0)


async def test_too_long_retry_after_raises_at_once(mock_clock: None) -> None:
    error = throttled(500.0)
    fn = Flaky(error)
    limits = Limits(rate="10/s")
    start = anyio.current_time()
    with pytest.raises(Throttled) as info:
        await Retry(attempts=5, max_retry_after=120).run(fn, limits=limits)
    assert info.value is error
    assert len(fn.calls) == 1
    assert anyio.current_time() == start
    assert limits.statistics().throttles == 0  # not waited for, so nobody else waits either
    if sys.version_info >= (3, 11):
        assert any("max_retry_after=120" in note for note in error.__notes__)


async def test_throttled_feeds_the_shared_cooldown(mock_clock: None) -> None:
    limits = Limits(rate="100/s", burst=5)
    fn = Flaky(throttled(3.0))
    others: list[float] = []

    async def other_caller() -> None:
        await anyio.sleep(0.5)  # after the 429
        async with limits():
            others.append(anyio.current_time())

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(other_caller)
        assert await Retry(attempts=2, backoff=0.0).run(fn, limits=limits) == "ok"
    stats = limits.statistics()
    assert stats.throttles == 1
    assert stats.granted == 3
    # The other caller never hit the 429 itself, but waited out the cool-down.
    assert others[0] - start == pytest.approx(3.0, abs=EPS)
    assert fn.calls[1] - start == pytest.approx(3.0, abs=EPS)


# -- deadline ---------------------------------------------------------------------------------


async def test_deadline_during_an_attempt(mock_clock: None) -> None:
    first = TransportError("reset")
    fn = Flaky(first, hang=True)  # the second attempt never answers
    start = anyio.current_time()
    with pytest.raises(DeadlineExceeded) as info:
        await Retry(attempts=5, backoff=0.5, deadline=10).run(fn)
    assert anyio.current_time() - start == pytest.approx(10.0, abs=EPS)
    assert info.value.__cause__ is first
    assert len(fn.calls) == 2
    message = str(info.value)
    assert "2 attempt(s)" in message
    assert "Retry(deadline=...)" in message
    assert isinstance(info.value, TimeoutError)


async def test_deadline_stops_a_wait_that_would_pass_it(mock_clock: None) -> None:
    errors = [TransportError("a"), throttled(60.0)]
    fn = Flaky(*errors)
    start = anyio.current_time()
    with pytest.raises(DeadlineExceeded) as info:
        await Retry(attempts=5, backoff=0.5, deadline=30).run(fn)
    assert info.value.__cause__ is errors[1]
    assert len(fn.calls) == 2
    assert anyio.current_time() - start < 1.0  # raised without sleeping towards it
    assert "2 attempt(s)" in str(info.value)


async def test_deadline_bounds_many_short_attempts(mock_clock: None) -> None:
    errors = [TransportError(f"reset {n}") for n in range(100)]
    fn = Flaky(*errors)
    start = anyio.current_time()
    with pytest.raises(DeadlineExceeded) as info:
        await Retry(attempts=100, backoff=1.0, max_backoff=1.0, deadline=5.5, rng=Ceiling()).run(fn)
    # Attempts at 0, 1, 2, 3, 4, 5; the next wait would end at 6 > 5.5.
    assert len(fn.calls) == 6
    assert info.value.__cause__ is errors[5]
    assert anyio.current_time() - start == pytest.approx(5.0, abs=EPS)


async def test_deadline_bounds_the_limiter_wait(mock_clock: None) -> None:
    limits = Limits(rate="1/min")
    await limits.acquire()
    fn = Flaky()
    start = anyio.current_time()
    with pytest.raises(DeadlineExceeded) as info:
        await Retry(deadline=5).run(fn, limits=limits)
    assert anyio.current_time() - start == pytest.approx(5.0, abs=EPS)
    assert info.value.__cause__ is None
    assert fn.calls == []
    stats = limits.statistics()
    assert (stats.waiting, stats.in_flight) == (0, 0)


# -- cancellation -----------------------------------------------------------------------------


async def _cancel_after(
    delay: float, fn: Flaky, policy: Retry, outcome: list[str], **kwargs: Any
) -> None:
    cancelled = anyio.get_cancelled_exc_class()
    with anyio.move_on_after(delay) as scope:
        try:
            await policy.run(fn, **kwargs)
        except cancelled:
            outcome.append("cancelled")
            raise
        outcome.append("returned")
    assert scope.cancelled_caught


@pytest.mark.parametrize("retry_on", [default_retry_on, always], ids=["default", "always"])
async def test_cancellation_during_an_attempt_is_not_retried(
    mock_clock: None, retry_on: Callable[[BaseException], bool]
) -> None:
    fn = Flaky(hang=True)
    events: list[RetryEvent] = []
    outcome: list[str] = []
    policy = Retry(attempts=5, retry_on=retry_on)
    await _cancel_after(1.0, fn, policy, outcome, on_retry=events.append)
    assert outcome == ["cancelled"]
    assert len(fn.calls) == 1
    assert events == []


async def test_cancellation_during_a_wait_is_not_retried(mock_clock: None) -> None:
    fn = Flaky(TransportError("reset"), TransportError("reset"))
    events: list[RetryEvent] = []
    outcome: list[str] = []
    policy = Retry(attempts=5, backoff=10.0, rng=Ceiling(), retry_on=always)
    await _cancel_after(3.0, fn, policy, outcome, on_retry=events.append)
    assert outcome == ["cancelled"]
    assert len(fn.calls) == 1
    assert len(events) == 1


async def test_cancelling_a_task_group_cancels_the_retry(mock_clock: None) -> None:
    limits = Limits(max_concurrency=1)
    fn = Flaky(hang=True)

    async def runner(*, task_status: TaskStatus[None]) -> NoReturn:
        task_status.started()
        await Retry(attempts=3, retry_on=always).run(fn, limits=limits)
        pytest.fail("returned")

    async with anyio.create_task_group() as tg:
        await tg.start(runner)
        await anyio.sleep(1.0)
        assert limits.statistics().in_flight == 1
        tg.cancel_scope.cancel()
    assert len(fn.calls) == 1
    assert limits.statistics().in_flight == 0
