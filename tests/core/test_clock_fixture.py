"""The mock_clock fixture gives virtual time on both backends; without it time is real."""

from __future__ import annotations

import time

import anyio
import pytest

pytestmark = pytest.mark.anyio


async def test_virtual_time_jumps_ahead(mock_clock: None) -> None:
    start, wall = anyio.current_time(), time.monotonic()
    await anyio.sleep(100)
    assert anyio.current_time() - start >= 100
    assert time.monotonic() - wall < 5
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 3)
            await anyio.sleep(1)
    assert anyio.current_time() - start >= 103


async def test_real_time_without_the_fixture() -> None:
    wall = time.monotonic()
    await anyio.sleep(0.05)
    assert time.monotonic() - wall >= 0.04
