"""amap with a real Limits: the rate and the concurrency cap both bind the fan-out."""

from __future__ import annotations

import anyio
import pytest

import hookbridge

pytestmark = pytest.mark.anyio


async def test_amap_with_limits_keeps_rate_and_concurrency(mock_clock: None) -> None:
    limits = hookbridge.Limits(rate="100/s", burst=5, max_concurrency=3)
    in_flight = peak = 0
    granted_at: list[float] = []

    async def work(i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        granted_at.append(anyio.current_time())
        await anyio.sleep(0.001)
        in_flight -= 1
        return i

    start = anyio.current_time()
    async with hookbridge.amap(work, range(205), max_at_once=50, limits=limits) as results:
        assert [r async for r in results] == list(range(205))
    elapsed = anyio.current_time() - start
    assert peak <= 3
    # 205 grants at 100/s with a burst of 5 need 200 emission intervals: 2.0 s of virtual time.
    assert elapsed == pytest.approx(2.0, abs=0.05)
    # No 1-second window holds more than burst + rate * 1 s grants.
    for i, t in enumerate(granted_at):
        in_window = sum(1 for u in granted_at[i:] if u - t <= 1.0)
        assert in_window <= 105


async def test_amap_shares_a_cool_down_through_limits(mock_clock: None) -> None:
    limits = hookbridge.Limits(rate="1000/s", burst=10)
    started: list[float] = []

    async def work(i: int) -> int:
        started.append(anyio.current_time())
        if i == 0:
            limits.throttled(2.0)
        return i

    start = anyio.current_time()
    async with hookbridge.amap(work, range(50), max_at_once=10, limits=limits) as results:
        assert len([r async for r in results]) == 50
    late = [t - start for t in started[1:]]
    # Item 0 asked for a 2 s cool-down; every call admitted after it waited it out.
    assert sum(1 for t in late if t < 2.0) <= 9  # those already admitted with item 0's burst
    assert max(late) >= 2.0
