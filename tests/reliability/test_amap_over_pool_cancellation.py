"""amap whose work checks resources out of a Pool, cancelled at random points, many times.

After every run the pool is whole: nothing in use, nobody waiting, every created resource idle or
disposed exactly once, and after aclose every one disposed exactly once.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Literal

import anyio
import pytest

import hookbridge

pytestmark = pytest.mark.anyio

ITERATIONS = 100


class Resource:
    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.users = 0


async def one_run(rng: random.Random, on_error: Literal["raise", "collect"]) -> None:
    created: list[Resource] = []
    disposed: Counter[int] = Counter()
    failures: list[BaseException] = []

    async def create() -> Resource:
        await anyio.sleep(rng.choice([0, 0.001, 0.01]))
        created.append(Resource(len(created)))
        return created[-1]

    async def dispose(resource: Resource) -> None:
        disposed[resource.ident] += 1
        await anyio.sleep(rng.choice([0, 0.001]))

    pool: hookbridge.Pool[Resource] = hookbridge.Pool(
        create,
        dispose=dispose,
        max_size=rng.randint(1, 5),
        is_broken=lambda exc: isinstance(exc, ConnectionError),
    )

    async def work(i: int) -> int:
        async with pool.acquire() as resource:
            resource.users += 1
            assert resource.users == 1, "a resource was handed to two users at once"
            try:
                await anyio.sleep(rng.choice([0, 0.001, 0.005, 0.02]))
                if rng.random() < 0.05:
                    raise ConnectionError("transport fault: discard")
                return i
            finally:
                resource.users -= 1

    async with pool:
        with anyio.move_on_after(rng.uniform(0, 0.3)):
            try:
                async with hookbridge.amap(
                    work, range(1000), max_at_once=rng.randint(1, 20), on_error=on_error
                ) as results:
                    async for _ in results:
                        pass
            except hookbridge.BatchError as exc:
                failures.extend(f.error for f in exc.failures)
        assert all(isinstance(error, ConnectionError) for error in failures)
        stats = pool.statistics()
        assert stats.in_use == 0 and stats.waiting == 0
        assert stats.size <= stats.max_size
        idle_or_gone = stats.idle + sum(1 for r in created if disposed[r.ident])
        assert idle_or_gone == len(created)
        assert all(count == 1 for count in disposed.values())
    assert sorted(disposed) == [r.ident for r in created]
    assert all(count == 1 for count in disposed.values())


@pytest.mark.parametrize("on_error", ["raise", "collect"])
async def test_cancelling_amap_over_a_pool_leaves_it_whole(
    mock_clock: None, on_error: Literal["raise", "collect"]
) -> None:
    rng = random.Random(f"amap-over-pool-{on_error}")
    for _ in range(ITERATIONS):
        await one_run(rng, on_error)
