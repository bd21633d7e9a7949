"""Pool under random cancellation: nothing leaked, nothing disposed twice, the books balance."""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, field

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookbridge import Pool, PoolClosed, PoolTimeout

pytestmark = pytest.mark.anyio

SEED = 20240917
ITERATIONS = 200


class Broken(Exception):
    """Raised by a user: the pool must discard the resource."""


class Mistake(Exception):
    """Raised by a user: the resource is fine and goes back."""


class CreateFailed(Exception):
    """Raised by create()."""


@dataclass(eq=False)
class Conn:
    id: int
    busy: bool = False


@dataclass
class Chaos:
    """A resource factory whose every call may be slow, fail, or be cancelled midway."""

    rng: random.Random
    create_fail: float = 0.1
    dispose_fail: float = 0.1
    unhealthy: float = 0.1
    created: list[Conn] = field(default_factory=list)
    disposed: Counter[int] = field(default_factory=Counter)

    def delay(self) -> float:
        return self.rng.choice([0.0, 0.0, 0.01, 0.05, 0.2, 1.0])

    async def create(self) -> Conn:
        await anyio.sleep(self.delay())
        if self.rng.random() < self.create_fail:
            raise CreateFailed
        conn = Conn(len(self.created) + 1)
        self.created.append(conn)
        return conn

    async def dispose(self, conn: Conn) -> None:
        assert not conn.busy, "disposed while a user holds it"
        self.disposed[conn.id] += 1
        # Now and then a dispose hangs past the pool's dispose_timeout.
        await anyio.sleep(self.rng.choice([0.0, 0.01, 0.3, 50.0]))
        if self.rng.random() < self.dispose_fail:
            raise OSError("dispose failed")

    async def health_check(self, conn: Conn) -> bool:
        await anyio.sleep(self.delay())
        return self.rng.random() >= self.unhealthy


@dataclass(frozen=True)
class User:
    start: float  # when it asks for a resource
    hold: float  # how long it keeps it
    outcome: str  # "ok", "broken", "mistake"
    deadline: float  # when its cancel scope fires (inf: never)


def check_books(pool: Pool[Conn], factory: Chaos, *, settled: bool = False) -> None:
    s = pool.statistics()
    assert s.created == len(factory.created)
    assert s.created - s.disposed == s.idle + s.in_use
    # The pool counts a resource disposed when it decides to; another task may not have called
    # dispose() yet. Once every task is done, the two agree.
    if settled:
        assert s.disposed == sum(factory.disposed.values())
    else:
        assert s.disposed >= sum(factory.disposed.values())
    assert s.size <= s.max_size
    assert s.idle + s.in_use <= s.size
    assert all(n == 1 for n in factory.disposed.values()), factory.disposed


async def run_users(
    pool: Pool[Conn],
    factory: Chaos,
    users: list[User],
    *,
    cancel_all_at: float,
    close_at: float,
) -> None:
    """Run the users against an open pool; return when every one of them is done."""
    start = anyio.current_time()

    async def use(user: User) -> None:
        await anyio.sleep_until(start + user.start)
        with anyio.move_on_after(user.deadline):
            try:
                async with pool.acquire() as conn:
                    assert not conn.busy, "one resource handed to two users"
                    assert factory.disposed[conn.id] == 0, "handed out a disposed resource"
                    conn.busy = True
                    check_books(pool, factory)
                    try:
                        await anyio.sleep(user.hold)
                        if user.outcome == "broken":
                            raise Broken
                        if user.outcome == "mistake":
                            raise Mistake
                    finally:
                        conn.busy = False
            except (Broken, Mistake, CreateFailed, PoolTimeout, PoolClosed):
                pass

    async def close_later() -> None:
        await anyio.sleep(close_at)
        await pool.aclose()

    async with anyio.create_task_group() as tg:
        tg.cancel_scope.deadline = start + cancel_all_at
        for user in users:
            tg.start_soon(use, user)
        if math.isfinite(close_at):
            tg.start_soon(close_later)


def pool_for(factory: Chaos, rng: random.Random, *, cancel_broken: bool) -> Pool[Conn]:
    cancelled = anyio.get_cancelled_exc_class()

    def is_broken(exc: BaseException) -> bool:
        return isinstance(exc, Broken) or (cancel_broken and isinstance(exc, cancelled))

    pool = Pool(
        factory.create,
        dispose=factory.dispose,
        max_size=rng.randint(1, 4),
        health_check=rng.choice([None, factory.health_check]),
        idle_timeout=rng.choice([None, 0.1, 0.5, 5.0]),
        max_lifetime=rng.choice([None, 0.3, 2.0]),
        acquire_timeout=rng.choice([None, 0.0, 0.1, 1.0]),
        is_broken=is_broken,
        name="chaos",
    )
    pool.dispose_timeout = 1.0
    return pool


def random_users(rng: random.Random) -> list[User]:
    return [
        User(
            start=rng.choice([0.0, rng.uniform(0, 2)]),
            hold=rng.choice([0.0, rng.uniform(0, 1)]),
            outcome=rng.choice(["ok", "ok", "ok", "broken", "mistake"]),
            deadline=rng.choice([math.inf, rng.uniform(0, 0.5), rng.uniform(0, 3)]),
        )
        for _ in range(rng.randint(1, 15))
    ]


async def exercise(
    rng: random.Random,
    users: list[User],
    *,
    cancel_all_at: float,
    close_at: float,
    cancel_broken: bool,
) -> None:
    factory = Chaos(rng)
    pool = pool_for(factory, rng, cancel_broken=cancel_broken)
    async with pool:
        await run_users(
            pool,
            factory,
            users,
            cancel_all_at=cancel_all_at,
            close_at=close_at,
        )
        # Everyone is done: nothing is checked out, queued or being created.
        s = pool.statistics()
        assert s.in_use == 0, s
        assert s.waiting == 0, s
        assert s.size == s.idle, s
        check_books(pool, factory, settled=True)
        # Every resource ever created is either idle or was disposed exactly once.
        alive = {c.id for c in factory.created} - set(factory.disposed)
        assert len(alive) == s.idle
        assert not any(c.busy for c in factory.created)
    s = pool.statistics()
    assert s.size == s.idle == s.in_use == s.waiting == 0, s
    assert s.created == s.disposed
    assert factory.disposed == Counter({c.id: 1 for c in factory.created})


@pytest.fixture(autouse=True)
def _quiet_pool_logger(caplog: pytest.LogCaptureFixture) -> None:
    # Failing disposals are logged by design; thousands of them only slow the run.
    caplog.set_level(logging.CRITICAL, logger="hookbridge.pool")


async def test_random_cancellation(mock_clock: None) -> None:
    rng = random.Random(SEED)
    for _ in range(ITERATIONS):
        await exercise(
            rng,
            random_users(rng),
            cancel_all_at=rng.choice([math.inf, math.inf, rng.uniform(0, 3)]),
            close_at=rng.choice([math.inf, math.inf, math.inf, rng.uniform(0, 3)]),
            cancel_broken=rng.random() < 0.5,
        )


users_strategy = st.lists(
    st.builds(
        User,
        start=st.sampled_from([0.0, 0.05, 0.1, 0.5, 1.0]),
        hold=st.sampled_from([0.0, 0.05, 0.2, 1.0]),
        outcome=st.sampled_from(["ok", "broken", "mistake"]),
        deadline=st.sampled_from([math.inf, 0.0, 0.01, 0.05, 0.2, 0.6, 1.5]),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    users=users_strategy,
    cancel_all_at=st.sampled_from([math.inf, 0.0, 0.05, 0.3, 1.2]),
    close_at=st.sampled_from([math.inf, 0.0, 0.05, 0.3, 1.2]),
    cancel_broken=st.booleans(),
)
async def test_random_scripts(
    mock_clock: None,
    seed: int,
    users: list[User],
    cancel_all_at: float,
    close_at: float,
    cancel_broken: bool,
) -> None:
    await exercise(
        random.Random(seed),
        users,
        cancel_all_at=cancel_all_at,
        close_at=close_at,
        cancel_broken=cancel_broken,
    )
