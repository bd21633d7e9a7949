"""Pool: checkout order, bounds, waiters, expiry, faults, closing and its exact books."""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from hookbridge._errors import (
    ConfigurationError,
    HookBridgeError,
    PoolClosed,
    PoolTimeout,
    TransportError,
)
from hookbridge._pool import Pool, PoolStatistics

pytestmark = pytest.mark.anyio


@dataclass(eq=False)
class Conn:
    """A stand-in resource: an id, and a flag that catches two users holding it at once."""

    id: int
    busy: bool = False


class Factory:
    """Makes and disposes Conns, recording every call so tests can check the pool's books."""

    def __init__(self) -> None:
        self.created: list[Conn] = []
        self.disposed: Counter[int] = Counter()
        self.disposed_done: list[int] = []
        self.fail_create: list[BaseException] = []
        self.create_delay = 0.0
        self.dispose_delay = 0.0
        self.dispose_error: Exception | None = None
        self.unhealthy: set[int] = set()
        self.health_error: Exception | None = None
        self.checked: list[int] = []

    async def create(self) -> Conn:
        if self.create_delay:
            await anyio.sleep(self.create_delay)
        if self.fail_create:
            raise self.fail_create.pop(0)
        conn = Conn(len(self.created) + 1)
        self.created.append(conn)
        return conn

    async def dispose(self, conn: Conn) -> None:
        self.disposed[conn.id] += 1
        if self.dispose_delay:
            await anyio.sleep(self.dispose_delay)
        if self.dispose_error is not None:
            raise self.dispose_error
        self.disposed_done.append(conn.id)

    async def health_check(self, conn: Conn) -> bool:
        self.checked.append(conn.id)
        if self.health_error is not None:
            raise self.health_error
        return conn.id not in self.unhealthy

    @property
    def alive(self) -> set[int]:
        return {c.id for c in self.created} - set(self.disposed)


def make_pool(factory: Factory, **options: Any) -> Pool[Conn]:
    options.setdefault("name", "test")
    return Pool(factory.create, dispose=factory.dispose, **options)


async def fail_inside(pool: Pool[Conn], error: BaseException) -> None:
    async with pool.acquire():
        raise error


def stats(pool: Pool[Conn], factory: Factory, **expected: int) -> PoolStatistics:
    """Assert the given fields, plus the invariants that hold at every step."""
    s = pool.statistics()
    for field, value in expected.items():
        assert getattr(s, field) == value, f"{field}: {getattr(s, field)} != {value} in {s}"
    assert s.created - s.disposed == s.idle + s.in_use
    assert s.size >= s.idle + s.in_use
    assert s.size <= s.max_size
    assert s.created == len(factory.created)
    assert s.disposed == sum(factory.disposed.values())
    assert all(n == 1 for n in factory.disposed.values()), factory.disposed
    if s.waiting:
        assert s.idle == 0
        assert s.size == s.max_size
    return s


# -- configuration and life cycle ------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("max_size", 0, ">= 1"),
        ("max_size", 2.5, ">= 1"),
        ("max_size", True, ">= 1"),
        ("idle_timeout", 0, "> 0"),
        ("idle_timeout", -1.0, "> 0"),
        ("idle_timeout", float("nan"), "> 0"),
        ("max_lifetime", 0.0, "> 0"),
        ("max_lifetime", "60", "> 0"),
        ("acquire_timeout", -0.1, ">= 0"),
        ("health_check", 42, "callable"),
        ("is_broken", None, "callable"),
        ("dispose", "nope", "callable"),
        ("name", "", "non-empty"),
    ],
)
def test_options_are_validated(option: str, value: Any, says: str) -> None:
    factory = Factory()
    options: dict[str, Any] = {"dispose": factory.dispose, option: value}
    with pytest.raises(ConfigurationError, match=says) as info:
        Pool(factory.create, **options)
    assert info.value.field == option
    assert option in str(info.value)


def test_valid_edges_are_accepted() -> None:
    factory = Factory()
    pool = make_pool(factory, max_size=1, idle_timeout=None, max_lifetime=0.5, acquire_timeout=0)
    assert pool.max_size == 1
    assert pool.name == "test"


async def test_acquire_before_open_is_refused() -> None:
    factory = Factory()
    pool = make_pool(factory)
    with pytest.raises(PoolClosed, match="open it with `async with"):
        async with pool.acquire():
            pass
    assert factory.created == []


async def test_closed_pool_refuses_acquire_and_reopen() -> None:
    factory = Factory()
    async with make_pool(factory) as pool, pool.acquire():
        pass
    assert factory.disposed == {1: 1}
    with pytest.raises(PoolClosed, match="closed"):
        async with pool.acquire():
            pass
    with pytest.raises(PoolClosed, match="cannot be reopened"):
        async with pool:
            pass
    await pool.aclose()  # closing again is harmless
    stats(pool, factory, size=0, created=1, disposed=1)


async def test_close_before_open_prevents_opening() -> None:
    pool = make_pool(Factory())
    await pool.aclose()
    with pytest.raises(PoolClosed, match="cannot be reopened"):
        await pool.__aenter__()


async def test_entering_twice_is_refused() -> None:
    async with make_pool(Factory()) as pool:
        with pytest.raises(HookBridgeError, match="already open"):
            await pool.__aenter__()


async def test_a_lease_is_entered_once() -> None:
    factory = Factory()
    async with make_pool(factory) as pool:
        lease = pool.acquire()
        async with lease:
            pass
        with pytest.raises(HookBridgeError, match="entered only once"):
            async with lease:
                pass
        stats(pool, factory, idle=1, in_use=0)


# -- checkout order, bounds and statistics ---------------------------------------------------


async def test_statistics_at_every_step() -> None:
    factory = Factory()
    async with make_pool(factory, max_size=2, name="api") as pool:
        s = stats(pool, factory, size=0, idle=0, in_use=0, waiting=0, created=0, disposed=0)
        assert s.name == "api"
        assert s.max_size == 2
        async with pool.acquire() as a:
            stats(pool, factory, size=1, idle=0, in_use=1, created=1)
            async with pool.acquire() as b:
                assert a is not b
                stats(pool, factory, size=2, idle=0, in_use=2, created=2)
            stats(pool, factory, size=2, idle=1, in_use=1, created=2)
        stats(pool, factory, size=2, idle=2, in_use=0, created=2, disposed=0)
        with pytest.raises(ValueError, match="kept"):
            async with pool.acquire():
                raise ValueError("kept")
        stats(pool, factory, size=2, idle=2, in_use=0, disposed=0, discarded=0)
    stats(pool, factory, size=0, idle=0, in_use=0, created=2, disposed=2, discarded=0)
    assert factory.disposed == {1: 1, 2: 1}


async def test_repr_shows_the_books() -> None:
    factory = Factory()
    pool = make_pool(factory, max_size=3, name="sftp")
    assert repr(pool) == (
        "<Pool 'sftp' new size=0/3 idle=0 in_use=0 waiting=0 created=0 disposed=0 discarded=0>"
    )
    async with pool, pool.acquire():
        assert "open size=1/3 idle=0 in_use=1" in repr(pool)
    assert repr(pool).startswith("<Pool 'sftp' closed size=0/3")


async def test_idle_resources_are_reused_most_recent_first() -> None:
    factory = Factory()
    async with make_pool(factory, max_size=3) as pool:
        async with AsyncExitStack() as stack:
            held = [await stack.enter_async_context(pool.acquire()) for _ in range(3)]
            assert [c.id for c in held] == [1, 2, 3]
        # The stack exits 3, 2, 1: conn 1 was returned last, so it is reused first.
        order = []
        async with AsyncExitStack() as stack:
            for _ in range(3):
                order.append((await stack.enter_async_context(pool.acquire())).id)
        assert order == [1, 2, 3]
        async with pool.acquire() as again:
            assert again.id == 1
        stats(pool, factory, created=3, idle=3)


async def test_max_size_holds_under_a_hundred_users(mock_clock: None) -> None:
    factory = Factory()
    peak = current = 0

    async def user(i: int) -> None:
        nonlocal peak, current
        async with pool.acquire() as conn:
            assert not conn.busy, "one resource handed to two users"
            conn.busy = True
            current += 1
            peak = max(peak, current)
            stats(pool, factory)
            await anyio.sleep(1 + i % 7)
            current -= 1
            conn.busy = False

    async with make_pool(factory, max_size=5) as pool:
        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(user, i)
        assert peak == 5
        stats(pool, factory, size=5, idle=5, in_use=0, waiting=0, created=5, disposed=0)


async def test_waiters_are_served_first_come_first_served() -> None:
    factory = Factory()
    served: list[tuple[int, int]] = []

    async def user(i: int) -> None:
        async with pool.acquire() as conn:
            served.append((i, conn.id))

    async with make_pool(factory, max_size=1) as pool:
        async with anyio.create_task_group() as tg, pool.acquire():
            for i in range(5):
                tg.start_soon(user, i)
                await anyio.wait_all_tasks_blocked()
            stats(pool, factory, waiting=5, in_use=1)
        assert served == [(i, 1) for i in range(5)]  # handed over, never recreated
        stats(pool, factory, created=1, idle=1, waiting=0)


async def test_a_returned_resource_goes_to_the_waiter_not_a_newcomer() -> None:
    factory = Factory()
    got: list[str] = []

    async def waiter() -> None:
        async with pool.acquire() as conn:
            got.append(f"waiter:{conn.id}")

    async with make_pool(factory, max_size=1) as pool:
        async with anyio.create_task_group() as tg:
            async with pool.acquire():
                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
            # The waiter has not run yet, but the resource is already its own.
            stats(pool, factory, idle=0, in_use=1, waiting=0)
            async with pool.acquire() as conn:
                got.append(f"newcomer:{conn.id}")
        assert got == ["waiter:1", "newcomer:1"]


async def test_acquire_timeout(mock_clock: None) -> None:
    factory = Factory()
    async with make_pool(factory, max_size=1, acquire_timeout=5, name="graph") as pool:
        async with pool.acquire():
            start = anyio.current_time()
            with pytest.raises(PoolTimeout, match="graph") as info:
                async with pool.acquire():
                    pass
            assert anyio.current_time() - start == pytest.approx(5)
            assert "max_size" in str(info.value)
            assert "Raise max_size or acquire_timeout" in str(info.value)
            assert isinstance(info.value, TimeoutError)
            stats(pool, factory, waiting=0, in_use=1, size=1)
        # A timed-out waiter left no trace: the next one is served at once.
        async with pool.acquire() as conn:
            assert conn.id == 1


async def test_acquire_timeout_zero_fails_at_once_when_full(mock_clock: None) -> None:
    factory = Factory()
    async with make_pool(factory, max_size=1, acquire_timeout=0) as pool:
        async with pool.acquire():
            start = anyio.current_time()
            with pytest.raises(PoolTimeout):
                async with pool.acquire():
                    pass
            assert anyio.current_time() == start
        async with pool.acquire():  # not full: no waiting, so no timeout
            pass


# -- health, expiry ------------------------------------------------------------------------------


async def test_health_check_disposes_unhealthy_and_tries_the_next() -> None:
    factory = Factory()
    async with make_pool(factory, max_size=3, health_check=factory.health_check) as pool:
        async with pool.acquire(), pool.acquire():
            pass
        assert factory.checked == []  # fresh resources are not checked
        factory.unhealthy = {1}  # conn 1 is on top of the idle stack
        async with pool.acquire() as conn:
            assert conn.id == 2
        assert factory.checked == [1, 2]
        stats(pool, factory, idle=1, created=2, disposed=1, discarded=1)
        factory.unhealthy = {2}
        async with pool.acquire() as conn:
            assert conn.id == 3  # none idle passed: a new one
        stats(pool, factory, idle=1, created=3, disposed=2, discarded=2)


async def test_health_check_that_raises_counts_as_unhealthy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    factory = Factory()
    async with make_pool(factory, health_check=factory.health_check) as pool:
        async with pool.acquire():
            pass
        factory.health_error = TransportError("ping failed")
        with caplog.at_level(logging.WARNING, logger="hookbridge.pool"):
            async with pool.acquire() as conn:
                assert conn.id == 2
        assert "health check raised" in caplog.text
        stats(pool, factory, created=2, disposed=1, discarded=1)


async def test_idle_timeout(mock_clock: None) -> None:
    factory = Factory()
    async with make_pool(factory, max_size=2, idle_timeout=10) as pool:
        async with pool.acquire():
            pass
        await anyio.sleep(9)
        async with pool.acquire() as conn:
            assert conn.id == 1  # idle 9 s: reused, and its idle clock restarts
        await anyio.sleep(9)
        async with pool.acquire() as conn:
            assert conn.id == 1
        await anyio.sleep(10)
        async with pool.acquire() as conn:
            assert conn.id == 2
            stats(pool, factory, idle=0, in_use=1, created=2, disposed=1, discarded=0)
        assert factory.disposed == {1: 1}


async def test_idle_timeout_drops_only_the_expired(mock_clock: None) -> None:
    factory = Factory()
    async with make_pool(factory, max_size=2, idle_timeout=10) as pool:
        async with pool.acquire():
            async with pool.acquire():
                pass  # conn 2 idle from t=0
            await anyio.sleep(5)
        await anyio.sleep(6)  # conn 2 idle 11 s, conn 1 idle 6 s
        stats(pool, factory, idle=2)
        async with pool.acquire() as conn:
            assert conn.id == 1
        assert factory.disposed == {2: 1}


async def test_max_lifetime(mock_clock: None) -> None:
    factory = Factory()
    async with make_pool(factory, max_size=2, idle_timeout=None, max_lifetime=30) as pool:
        async with pool.acquire():
            await anyio.sleep(31)
        # Outlived its lifetime while in use: retired on return, not kept.
        stats(pool, factory, idle=0, size=0, created=1, disposed=1, discarded=0)
        async with pool.acquire() as conn:
            assert conn.id == 2
        await anyio.sleep(20)
        async with pool.acquire() as conn:
            assert conn.id == 2  # 20 s old: still young enough
        await anyio.sleep(10)
        async with pool.acquire() as conn:
            assert conn.id == 3
        stats(pool, factory, idle=1, created=3, disposed=2, discarded=0)


async def test_prune(mock_clock: None) -> None:
    factory = Factory()
    pool = make_pool(factory, max_size=3, idle_timeout=10)
    assert await pool.prune() == 0
    async with pool:
        async with pool.acquire(), pool.acquire(), pool.acquire():
            pass
        assert await pool.prune() == 0
        await anyio.sleep(10)
        assert await pool.prune() == 3
        stats(pool, factory, size=0, idle=0, created=3, disposed=3, discarded=0)
    assert await pool.prune() == 0


# -- faults ------------------------------------------------------------------------------------


async def test_is_broken_discards_and_other_errors_keep() -> None:
    factory = Factory()
    seen: list[BaseException] = []

    def is_broken(exc: BaseException) -> bool:
        seen.append(exc)
        return isinstance(exc, TransportError)

    async with make_pool(factory, is_broken=is_broken) as pool:
        kept = ValueError("bad input")
        with pytest.raises(ValueError, match="bad input") as info:
            async with pool.acquire():
                raise kept
        assert info.value is kept  # re-raised unchanged
        stats(pool, factory, idle=1, disposed=0, discarded=0)
        with pytest.raises(TransportError):
            await fail_inside(pool, TransportError("connection reset"))
        stats(pool, factory, idle=0, size=0, created=1, disposed=1, discarded=1)
        async with pool.acquire() as conn:
            assert conn.id == 2
        assert [type(e) for e in seen] == [ValueError, TransportError]


async def test_cancellation_is_passed_to_is_broken_and_kept_by_default() -> None:
    factory = Factory()
    async with make_pool(factory) as pool:
        with anyio.CancelScope() as scope:
            async with pool.acquire():
                scope.cancel()
                await anyio.sleep(1)
        stats(pool, factory, idle=1, disposed=0)

    factory = Factory()
    cancelled = anyio.get_cancelled_exc_class()
    async with make_pool(factory, is_broken=lambda exc: isinstance(exc, cancelled)) as pool:
        with anyio.CancelScope() as scope:
            async with pool.acquire():
                scope.cancel()
                await anyio.sleep(1)
        assert scope.cancelled_caught
        stats(pool, factory, idle=0, size=0, disposed=1, discarded=1)


async def test_is_broken_that_raises_discards(caplog: pytest.LogCaptureFixture) -> None:
    factory = Factory()

    def is_broken(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    async with make_pool(factory, is_broken=is_broken) as pool:
        with caplog.at_level(logging.ERROR, logger="hookbridge.pool"), pytest.raises(KeyError):
            await fail_inside(pool, KeyError("x"))
        assert "is_broken raised" in caplog.text
        stats(pool, factory, idle=0, disposed=1, discarded=1)


async def test_create_failure_frees_the_slot() -> None:
    factory = Factory()
    factory.fail_create = [TransportError("refused")]
    async with make_pool(factory, max_size=1) as pool:
        with pytest.raises(TransportError, match="refused"):
            async with pool.acquire():
                pass
        stats(pool, factory, size=0, created=0)
        async with pool.acquire() as conn:
            assert conn.id == 1


async def test_create_failure_passes_the_slot_to_a_waiter(mock_clock: None) -> None:
    factory = Factory()
    factory.create_delay = 1
    factory.fail_create = [TransportError("refused")]
    outcome: dict[str, object] = {}

    async def first() -> None:
        with pytest.raises(TransportError):
            async with pool.acquire():
                pass
        outcome["first"] = "failed"

    async def second() -> None:
        async with pool.acquire() as conn:
            outcome["second"] = conn.id
            outcome["at"] = anyio.current_time() - start

    async with make_pool(factory, max_size=1) as pool:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await anyio.sleep(0.5)
            tg.start_soon(second)
            await anyio.sleep(0.1)
            stats(pool, factory, size=1, waiting=1, in_use=0)
        assert outcome == {"first": "failed", "second": 1, "at": 2}
        stats(pool, factory, size=1, idle=1, created=1)


async def test_a_discarded_resource_frees_a_slot_for_a_waiter() -> None:
    factory = Factory()
    got: list[int] = []

    async def waiter() -> None:
        async with pool.acquire() as conn:
            got.append(conn.id)

    async with make_pool(factory, max_size=1, is_broken=lambda exc: True) as pool:
        async with anyio.create_task_group() as tg:
            lease = pool.acquire()
            await lease.__aenter__()
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            error = TransportError("reset")
            await lease.__aexit__(type(error), error, None)
        assert got == [2]
        stats(pool, factory, idle=1, created=2, disposed=1, discarded=1)


async def test_dispose_error_is_logged_and_the_callers_error_wins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    factory = Factory()
    factory.dispose_error = OSError("already gone")
    with caplog.at_level(logging.WARNING, logger="hookbridge.pool"):
        async with make_pool(factory, is_broken=lambda exc: True) as pool:
            with pytest.raises(TransportError, match="reset"):
                async with pool.acquire():
                    raise TransportError("reset")
            async with pool.acquire():
                pass
        # aclose's dispose failed too, and aclose did not raise.
    assert caplog.text.count("disposing a resource failed") == 2
    stats(pool, factory, created=2, disposed=2, discarded=1)


async def test_a_hung_dispose_is_abandoned_after_dispose_timeout(
    mock_clock: None, caplog: pytest.LogCaptureFixture
) -> None:
    factory = Factory()
    factory.dispose_delay = 1000
    pool = make_pool(factory, max_size=2)
    pool.dispose_timeout = 10
    with caplog.at_level(logging.WARNING, logger="hookbridge.pool"):
        async with pool:
            async with pool.acquire(), pool.acquire():
                pass
            start = anyio.current_time()
        # Both disposed concurrently, each abandoned after 10 s.
        assert anyio.current_time() - start == pytest.approx(10)
    assert "took more than 10" in caplog.text
    assert factory.disposed == {1: 1, 2: 1}
    assert factory.disposed_done == []


async def test_dispose_finishes_when_the_caller_is_cancelled(mock_clock: None) -> None:
    factory = Factory()
    factory.dispose_delay = 5
    cancelled = anyio.get_cancelled_exc_class()
    async with make_pool(factory, is_broken=lambda exc: isinstance(exc, cancelled)) as pool:
        start = anyio.current_time()
        with anyio.move_on_after(1) as scope:
            async with pool.acquire():
                await anyio.sleep(10)
        assert scope.cancelled_caught  # the cancellation was not swallowed
        assert anyio.current_time() - start == pytest.approx(6)
        assert factory.disposed_done == [1]
        stats(pool, factory, size=0, disposed=1, discarded=1)


# -- closing with work in flight -------------------------------------------------------------


async def test_close_with_resources_checked_out() -> None:
    factory = Factory()
    pool = make_pool(factory, max_size=3)
    async with pool:
        async with pool.acquire():
            pass
        stack = AsyncExitStack()
        held = await stack.enter_async_context(pool.acquire())
        assert held.id == 1
        stats(pool, factory, idle=0, in_use=1)
        async with pool.acquire():
            pass
        stats(pool, factory, idle=1, in_use=1, created=2)
    # The idle one is gone; the one in use stays alive until returned.
    assert factory.disposed == {2: 1}
    stats(pool, factory, idle=0, in_use=1, size=1, disposed=1)
    await stack.aclose()
    assert factory.disposed == {1: 1, 2: 1}
    stats(pool, factory, idle=0, in_use=0, size=0, created=2, disposed=2, discarded=0)


async def test_close_fails_the_waiters() -> None:
    factory = Factory()
    failures: list[BaseException] = []

    async def waiter() -> None:
        try:
            async with pool.acquire():
                pass
        except PoolClosed as exc:
            failures.append(exc)

    pool = make_pool(factory, max_size=1)
    await pool.__aenter__()
    async with anyio.create_task_group() as tg, pool.acquire():
        for _ in range(3):
            tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        stats(pool, factory, waiting=3)
        await pool.aclose()
        stats(pool, factory, waiting=0, in_use=1)
        await anyio.wait_all_tasks_blocked()
        assert len(failures) == 3
    assert "closed" in str(failures[0])
    stats(pool, factory, size=0, created=1, disposed=1)


async def test_close_during_create_disposes_the_new_resource(mock_clock: None) -> None:
    factory = Factory()
    factory.create_delay = 10
    outcome: list[BaseException] = []

    async def user() -> None:
        try:
            async with pool.acquire():
                pass
        except PoolClosed as exc:
            outcome.append(exc)

    pool = make_pool(factory)
    await pool.__aenter__()
    async with anyio.create_task_group() as tg:
        tg.start_soon(user)
        await anyio.sleep(1)
        stats(pool, factory, size=1, in_use=0, idle=0)
        await pool.aclose()
    assert len(outcome) == 1
    assert factory.disposed == {1: 1}
    stats(pool, factory, size=0, created=1, disposed=1)


async def test_close_during_health_check(mock_clock: None) -> None:
    factory = Factory()

    async def slow_check(conn: Conn) -> bool:
        await anyio.sleep(5)
        return True

    pool = make_pool(factory, health_check=slow_check)
    await pool.__aenter__()
    async with pool.acquire():
        pass
    async with anyio.create_task_group() as tg:

        async def user() -> None:
            with pytest.raises(PoolClosed):
                async with pool.acquire():
                    pass

        tg.start_soon(user)
        await anyio.sleep(1)
        stats(pool, factory, in_use=1, idle=0)
        await pool.aclose()
    stats(pool, factory, size=0, created=1, disposed=1, discarded=0)


# -- the handoff race ----------------------------------------------------------------------------


async def test_waiter_cancelled_as_it_is_handed_a_resource() -> None:
    factory = Factory()
    async with make_pool(factory, max_size=1) as pool:
        scope = anyio.CancelScope()

        async def waiter() -> None:
            with scope:
                async with pool.acquire():
                    await anyio.sleep(1)

        async with anyio.create_task_group() as tg:
            lease = pool.acquire()
            await lease.__aenter__()
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            stats(pool, factory, waiting=1)
            # Hand the resource over and cancel the waiter before it can run: no checkpoint
            # between the two, so the grant and the cancellation land together.
            await lease.__aexit__(None, None, None)
            scope.cancel()
        stats(pool, factory, idle=1, in_use=0, waiting=0, created=1, disposed=0)
        async with pool.acquire() as conn:
            assert conn.id == 1


async def test_waiter_cancelled_as_it_is_granted_a_slot() -> None:
    factory = Factory()
    async with make_pool(factory, max_size=1, is_broken=lambda exc: True) as pool:
        scope = anyio.CancelScope()

        async def waiter() -> None:
            with scope:
                async with pool.acquire():
                    await anyio.sleep(1)

        async with anyio.create_task_group() as tg:
            lease = pool.acquire()
            await lease.__aenter__()
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            error = TransportError("reset")
            await lease.__aexit__(type(error), error, None)  # discarded: the slot goes over
            scope.cancel()
        # Depending on the backend the waiter gave the slot back unused, or created a resource
        # and was cancelled in its block (is_broken then discarded that one too).
        s = stats(pool, factory, in_use=0, waiting=0, idle=0, size=0)
        assert s.created == s.disposed == s.discarded
        async with pool.acquire() as conn:
            assert conn.id == s.created + 1


@pytest.mark.parametrize("discard_on_cancel", [False, True])
async def test_cancelled_during_health_check(mock_clock: None, discard_on_cancel: bool) -> None:
    factory = Factory()

    async def slow_check(conn: Conn) -> bool:
        await anyio.sleep(5)
        return True

    cancelled = anyio.get_cancelled_exc_class()
    async with make_pool(
        factory,
        health_check=slow_check,
        is_broken=lambda exc: discard_on_cancel and isinstance(exc, cancelled),
    ) as pool:
        async with pool.acquire():
            pass
        with anyio.move_on_after(1) as scope:
            async with pool.acquire():
                pytest.fail("the health check was cancelled: no resource to use")
        assert scope.cancelled_caught
        if discard_on_cancel:
            stats(pool, factory, idle=0, in_use=0, size=0, disposed=1, discarded=1)
        else:
            stats(pool, factory, idle=1, in_use=0, size=1, disposed=0)
