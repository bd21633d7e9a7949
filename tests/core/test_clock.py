"""hookbridge's cached clock reads the running loop's own time, virtual or real."""

from __future__ import annotations

import anyio
import pytest

from hookbridge._clock import running_loop

pytestmark = pytest.mark.anyio


async def test_the_cached_clock_follows_virtual_time(mock_clock: None) -> None:
    clock, _ = running_loop()
    start = clock()
    await anyio.sleep(50)
    assert clock() - start >= 50
    assert abs(clock() - anyio.current_time()) < 1e-6


async def test_the_cached_clock_is_the_loops_clock() -> None:
    clock, token = running_loop()
    assert abs(clock() - anyio.current_time()) < 0.01
    assert running_loop()[1] is token  # the same loop, the same token
