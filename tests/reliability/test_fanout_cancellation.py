"""amap under cancellation at random points: it propagates, nothing keeps running, books balance."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.lowlevel
import pytest

from hookbridge import BatchError, Outcome, amap
from hookbridge._groups import EXCEPTION_GROUP

pytestmark = pytest.mark.anyio

SEED = 20240918
ITERATIONS = 100
_GROUP = EXCEPTION_GROUP


class Boom(Exception):
    """A mapped call that failed."""


@dataclass
class Books:
    """A pool-like ledger: every call checks something out and must give it back."""

    acquired: int = 0
    released: int = 0
    started: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)

    @property
    def out(self) -> int:
        return self.acquired - self.released


class SlowLimiter:
    """What amap needs from Limits, with a random wait for the slot, and its own ledger."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.active = 0
        self.entered = 0
        self.exited = 0

    def __call__(self) -> AbstractAsyncContextManager[None]:
        return self._slot()

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        await anyio.sleep(self.rng.choice([0.0, 0.0, 0.05, 0.3]))
        self.entered += 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self.exited += 1


@dataclass
class Source:
    """The input, as a list, a generator or an async generator; records who iterated it."""

    kind: str
    n: int
    pulled: int = 0
    closed: bool = False
    tasks: set[int] = field(default_factory=set)

    def items(self) -> Any:
        if self.kind == "list":
            return list(range(self.n))
        if self.kind == "iter":
            return self._sync()
        return self._async()

    def _sync(self) -> Iterator[int]:
        for i in range(self.n):
            self.pulled += 1
            yield i

    async def _async(self) -> AsyncIterator[int]:
        try:
            for i in range(self.n):
                self.tasks.add(anyio.get_current_task().id)
                if i % 3 == 0:
                    await anyio.sleep(0.01)
                self.pulled += 1
                yield i
        finally:
            self.tasks.add(anyio.get_current_task().id)
            self.closed = True


async def drain(fanout: AbstractAsyncContextManager[Any]) -> None:
    async with fanout as results:
        async for _ in results:
            pass


async def exercise(rng: random.Random) -> None:
    n = rng.choice([0, 1, 5, 20, 60])
    max_at_once = rng.randint(1, 8)
    ordered = rng.random() < 0.5
    on_error: Literal["raise", "collect"] = rng.choice(["raise", "collect"])
    fail_rate = rng.choice([0.0, 0.0, 0.1])
    limiter = SlowLimiter(rng) if rng.random() < 0.5 else None
    source = Source(rng.choice(["list", "iter", "async"]), n)
    delays = [rng.choice([0.0, 0.01, 0.1, 0.5, 2.0]) for _ in range(n)]
    fails = {i for i in range(n) if rng.random() < fail_rate}
    consumer_pause = rng.choice([0.0, 0.0, 0.05, 0.5])
    stop_after = rng.choice([math.inf, math.inf, rng.randint(0, 10)])
    cancel_at = rng.choice([math.inf, rng.uniform(0, 0.2), rng.uniform(0, 3)])
    books = Books()

    async def fn(item: int) -> int:
        books.acquired += 1
        books.started.add(item)
        try:
            if delays[item]:
                await anyio.sleep(delays[item])
            if item in fails:
                raise Boom(item)
            books.finished.add(item)
            return item
        finally:
            books.released += 1

    tasks_before = len(anyio.get_running_tasks())
    received: list[Any] = []
    finished = False
    error: BaseException | None = None
    with anyio.move_on_after(cancel_at) as scope:
        try:
            async with amap(
                fn,
                source.items(),
                max_at_once=max_at_once,
                limits=limiter,
                ordered=ordered,
                on_error=on_error,
            ) as results:
                async for value in results:
                    received.append(value)
                    if consumer_pause:
                        await anyio.sleep(consumer_pause)
                    if len(received) >= stop_after:
                        break
            finished = True
        except BatchError as exc:
            error = exc

    # Cancellation propagated out of amap to the scope that asked for it, and was not turned
    # into anything else; no exception group escaped.
    assert not isinstance(error, _GROUP)
    if scope.cancelled_caught:
        assert not finished
        assert error is None
    else:
        assert finished or isinstance(error, BatchError)
    # Nothing keeps running, and every checkout was given back.
    assert len(anyio.get_running_tasks()) == tasks_before
    assert books.out == 0
    if limiter is not None:
        assert limiter.active == 0
        assert limiter.entered == limiter.exited
    if source.kind == "async":
        # The async generator was closed, by the one task that iterated it (not the consumer).
        assert source.closed or source.pulled == 0
        assert len(source.tasks) <= 1
        assert anyio.get_current_task().id not in source.tasks
    assert len(books.started) <= len(received) + 2 * max_at_once
    if finished and stop_after == math.inf:
        # The whole input ran: every item is accounted for, once.
        if on_error == "collect":
            assert sorted(o.index for o in received) == list(range(n))
            assert {o.index for o in received if not o.ok} == fails
        else:
            assert not fails
            assert sorted(received) == list(range(n))
        if ordered:
            indexes = [o.index for o in received] if on_error == "collect" else received
            assert indexes == sorted(indexes)
    if isinstance(error, BatchError):
        assert {f.index for f in error.failures} <= fails
        assert error.failures
    # No sleeper is left behind: the virtual clock has nothing to jump to.
    now = anyio.current_time()
    await anyio.lowlevel.checkpoint()
    assert anyio.current_time() == now


async def test_random_cancellation(mock_clock: None) -> None:
    rng = random.Random(SEED)
    for _ in range(ITERATIONS):
        await exercise(rng)


async def test_a_timeout_around_receive_loses_no_result(mock_clock: None) -> None:
    """A consumer that gives up on one receive and tries again still gets every outcome."""
    rng = random.Random(SEED + 1)
    n = 80
    delays: list[float] = []

    async def fn(item: int) -> int:
        if delays[item]:
            await anyio.sleep(delays[item])
        if item % 11 == 0:
            raise Boom(item)
        return item

    for _ in range(20):
        delays[:] = [rng.choice([0.0, 0.01, 0.1, 0.3]) for _ in range(n)]
        outcomes: list[Outcome[int, int]] = []
        timeouts = 0
        max_at_once = rng.randint(1, 6)
        ordered = rng.random() < 0.5
        async with amap(
            fn, range(n), max_at_once=max_at_once, ordered=ordered, on_error="collect"
        ) as results:
            while True:
                with anyio.move_on_after(rng.choice([0.0, 0.01, 0.05, 0.1])) as scope:
                    try:
                        outcomes.append(await results.receive())
                    except anyio.EndOfStream:
                        break
                timeouts += scope.cancelled_caught
        assert sorted(o.index for o in outcomes) == list(range(n))
        assert timeouts > 0


async def test_cancelling_the_consumer_while_the_work_stops_after_a_failure(
    mock_clock: None,
) -> None:
    """Cancellation that arrives while a BatchError is being prepared wins: it is not swallowed."""
    for cancel_at in (0.5, 1.5, 2.5):

        async def fn(item: int) -> int:
            if item == 0:
                await anyio.sleep(1)
                raise Boom(item)
            try:
                await anyio.sleep(10)
            finally:
                # A call that needs a moment to clean up when it is cancelled.
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(1)
            return item

        with anyio.move_on_after(cancel_at) as scope, pytest.raises(BatchError):
            await drain(amap(fn, range(5), max_at_once=5))
        # Before 1 s the cancellation came first; from 1 s the BatchError is on its way, but
        # the drain that waits for the cleanups is itself cancelled at cancel_at < 2.
        assert scope.cancelled_caught is (cancel_at < 2.0)
