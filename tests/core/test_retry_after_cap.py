"""Retry-After at the policy's cap is waited for; above it the error is raised at once, with a
note that says what would help (a larger max_retry_after), not more attempts."""

from __future__ import annotations

import random

import anyio
import pytest

from hookbridge import Limits, Retry, Throttled

pytestmark = pytest.mark.anyio

EPS = 1e-5  # looptime (asyncio) moves its clock in 1 µs ticks
CAP = 5.0


def _throttled(retry_after: float) -> Throttled:
    return Throttled("slow down", status=429, retry_after=retry_after)


def test_retry_after_equal_to_the_cap_is_waited_for() -> None:
    policy = Retry(attempts=3, backoff=0.1, max_retry_after=CAP, rng=random.Random(1))
    assert policy.next_delay(_throttled(CAP), 1) == CAP
    assert policy.next_delay(_throttled(CAP + 0.001), 1) is None


async def test_a_run_waits_a_retry_after_equal_to_the_cap(mock_clock: None) -> None:
    limits = Limits(rate="100/s")
    calls: list[float] = []

    async def flaky() -> str:
        calls.append(anyio.current_time())
        if len(calls) == 1:
            raise _throttled(CAP)
        return "done"

    policy = Retry(attempts=2, backoff=0.1, max_retry_after=CAP, rng=random.Random(1))
    assert await policy.run(flaky, limits=limits) == "done"
    assert len(calls) == 2
    assert calls[1] - calls[0] == pytest.approx(CAP, abs=EPS)


async def test_retry_after_above_the_cap_is_raised_at_once_with_a_note_about_the_cap(
    mock_clock: None,
) -> None:
    calls = 0

    async def throttled() -> None:
        nonlocal calls
        calls += 1
        raise _throttled(CAP * 10)

    started = anyio.current_time()
    with pytest.raises(Throttled) as info:
        await Retry(attempts=5, max_retry_after=CAP).run(throttled)
    assert calls == 1
    assert anyio.current_time() - started == pytest.approx(0.0, abs=EPS)
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert f"max_retry_after={CAP:g}" in notes
    assert "attempts" not in notes  # more attempts would not wait any longer
