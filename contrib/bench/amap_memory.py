"""Peak memory and time per item of hookbridge's amap, against aiometer's, over no-op items.

    .venv/bin/python contrib/bench/amap_memory.py [--sizes 10000,100000,1000000]
        [--backend asyncio|trio] [--max-at-once 100] [--skip-aiometer-above 1000000]

The full default run takes about eight minutes, most of it aiometer under tracemalloc at a
million items; ``--skip-aiometer-above 100000`` brings it to about a minute.

Each case runs twice: once plain, for the time per item (tracing slows allocation-heavy code
about fifteenfold), and once under tracemalloc, for the peak of memory allocated during the run.
The input is ``range(n)``: lazy for hookbridge, a Sequence as aiometer requires (which does not
hold the items); the "list input" case shows aiometer fed from a generator, which it must first
turn into a list. The consumer keeps up here; when it does not, aiometer's result stream (sized
``len(args)``) grows with the backlog, while hookbridge's stays bounded by the window.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiometer
import anyio

from hookbridge import amap


async def noop(item: int) -> int:
    return item


def hookbridge_ordered(n: int, at_once: int) -> AbstractAsyncContextManager[Any]:
    return amap(noop, range(n), max_at_once=at_once)


def hookbridge_unordered(n: int, at_once: int) -> AbstractAsyncContextManager[Any]:
    return amap(noop, range(n), max_at_once=at_once, ordered=False)


def aiometer_amap(n: int, at_once: int) -> AbstractAsyncContextManager[Any]:
    return aiometer.amap(noop, range(n), max_at_once=at_once)


def aiometer_amap_list(n: int, at_once: int) -> AbstractAsyncContextManager[Any]:
    # What feeding aiometer from a generator (a pagination stream, ids read from a file) costs:
    # it takes a Sequence, so the input is materialized first.
    return aiometer.amap(noop, list(range(n)), max_at_once=at_once)


CASES: dict[str, Callable[[int, int], AbstractAsyncContextManager[Any]]] = {
    "hookbridge.amap ordered": hookbridge_ordered,
    "hookbridge.amap unordered": hookbridge_unordered,
    "aiometer.amap": aiometer_amap,
    "aiometer.amap, list input": aiometer_amap_list,
}


async def consume(fanout: AbstractAsyncContextManager[Any], n: int) -> None:
    count = 0
    async with fanout as results:
        async for _ in results:
            count += 1
    assert count == n, (count, n)


async def measure(name: str, n: int, at_once: int) -> tuple[float, int]:
    make = CASES[name]
    gc.collect()
    start = time.perf_counter()
    await consume(make(n, at_once), n)
    per_item = (time.perf_counter() - start) / n
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        await consume(make(n, at_once), n)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return per_item, peak


async def main(sizes: list[int], at_once: int, skip_aiometer_above: int) -> None:
    await consume(hookbridge_ordered(1000, at_once), 1000)  # warm up imports and caches
    print(f"{'implementation':<30}{'items':>10}{'peak memory':>14}{'time/item':>12}")
    for name in CASES:
        for n in sizes:
            if name.startswith("aiometer") and n > skip_aiometer_above:
                print(f"{name:<30}{n:>10,}{'skipped':>14}{'':>12}")
                continue
            per_item, peak = await measure(name, n, at_once)
            print(f"{name:<30}{n:>10,}{peak / 1024:>11,.1f} KiB{per_item * 1e6:>9.2f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--max-at-once", type=int, default=100)
    parser.add_argument("--skip-aiometer-above", type=int, default=1_000_000)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"backend: {args.backend}, max_at_once={args.max_at_once}, fn: async no-op")
    anyio.run(main, sizes, args.max_at_once, args.skip_aiometer_above, backend=args.backend)
