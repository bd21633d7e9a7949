"""Cancellation storm: a running fan-out of 500 operations, cancelled 100 times at random moments.

Each round runs ``amap`` over 500 reads of the subject's real server and cancels it after a
random delay (seeded; the seed and the round are in every failure message). After every round
the adapter's books must balance: nothing in flight, nothing checked out of its pool, the pool's
``created - disposed == idle + in_use``. After the 100 rounds the adapter must still work, and
after ``aclose`` the server must see no open connection (channel, shell, handle) and the process
must hold no more file descriptors than before. The suite runs with warnings as errors, so an
unclosed transport or a never-awaited coroutine fails it too.
"""

from __future__ import annotations

import os
import random
from typing import Any

import anyio
import pytest
from reliability_subjects import Subject

from hookbridge import Limits, amap

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

SEED = int(os.environ.get("HOOKBRIDGE_CANCEL_SEED", "20261202"))
ROUNDS = 100
FANOUT = 500
CONCURRENCY = 50


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _fan_out(subject: Subject, api: Any) -> int:
    """One fan-out of FANOUT reads; returns how many ended (values and reported errors)."""
    ended = 0
    async with amap(
        lambda i: subject.read(api, i),
        range(FANOUT),
        max_at_once=CONCURRENCY,
        ordered=False,
        on_error="collect",
    ) as results:
        async for _ in results:
            ended += 1
    return ended


def _assert_whole(api: Any, where: str) -> None:
    stats = api.statistics()
    assert stats.limits.in_flight == 0, f"{where}: {stats.limits}"
    assert stats.holding == 0, f"{where}: {stats.holding} holds still open"
    # An adapter's pool statistics may wrap its Pool's (WinRM: WinRMPoolStatistics.pool).
    pool = getattr(stats.pool, "pool", stats.pool)
    if pool is None:
        return
    inner = getattr(pool, "pool", None)
    if inner is not None:
        # Shared connections over a pool (SFTP): nothing booked on them, then the pool's books.
        assert pool.load == 0 and pool.waiting == 0 and pool.active == 0, f"{where}: {pool}"
        pool = inner
    # Every adapter's pool reports what it checked out; hookbridge's own Pool keeps full books.
    assert pool.in_use == 0, f"{where}: {pool}"
    if hasattr(pool, "created"):
        assert pool.waiting == 0, f"{where}: {pool}"
        assert pool.created - pool.disposed == pool.idle + pool.in_use, f"{where}: {pool}"
        assert pool.idle <= pool.max_size, f"{where}: {pool}"


async def _server_closed_everything(subject: Subject) -> None:
    with anyio.fail_after(10):
        # The server learns of closed connections a loop iteration later, and offers no event.
        while subject.open_on_server():  # noqa: ASYNC110
            await anyio.sleep(0.01)


@pytest.mark.timeout(300)
async def test_a_fan_out_cancelled_at_random_moments_leaves_everything_whole(
    subject: Subject,
) -> None:
    rng = random.Random(f"{SEED}:{subject.name}")
    fds_before = _open_fds()
    limits = Limits(max_concurrency=CONCURRENCY)
    async with subject.adapter(subject.conn_id, limits=limits, **subject.cancel_options) as api:
        # Whole fan-outs first: they must work, and the quickest bounds the random moments (the
        # first one also opens the pool, so it is slower than the rounds will be).
        lengths = []
        for _ in range(3):
            started = anyio.current_time()
            assert await _fan_out(subject, api) == FANOUT
            lengths.append(anyio.current_time() - started)
        horizon = min(0.8 * min(lengths), subject.cancel_horizon)
        mid_run = 0
        for round_ in range(ROUNDS):
            where = f"seed={SEED} subject={subject.name} round={round_}"
            ended = 0
            with anyio.move_on_after(rng.uniform(0.0, horizon)) as scope:
                ended = await _fan_out(subject, api)
            if scope.cancelled_caught and ended < FANOUT:
                mid_run += 1
            _assert_whole(api, where)
        # The cancellations landed while work was running, not before it started or after it
        # ended: most rounds were cut with some reads done and some not.
        assert mid_run >= ROUNDS * 0.7, f"only {mid_run} of {ROUNDS} rounds were cut mid-run"
        assert await subject.read(api, 7) == 7, "the adapter no longer works"
        assert await _fan_out(subject, api) == FANOUT
        _assert_whole(api, f"seed={SEED} subject={subject.name} after the storm")
    await _server_closed_everything(subject)
    # Sockets close a loop iteration after their transports: let the loop run once more.
    await anyio.sleep(0.05)
    fds_after = _open_fds()
    print(
        f"\n[{subject.name}] cancellation storm: rounds={ROUNDS} fanout={FANOUT} "
        f"cut_mid_run={mid_run} survived={ROUNDS} leaked_fds={max(0, fds_after - fds_before)} "
        f"open_on_server=0 seed={SEED}"
    )
    assert fds_after <= fds_before, f"file descriptors leaked: {fds_before} -> {fds_after}"
