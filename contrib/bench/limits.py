"""hookbridge's Limits against aiolimiter and aiometer: cost per acquire, and rate accuracy.

    .venv/bin/python contrib/bench/limits.py [--seconds 10] [--rate 1000] [--quick]

1. Overhead: acquires that never wait (a rate of 1e9/s), best of several rounds, in µs per
   acquire and as a ratio to aiolimiter's ``AsyncLimiter.acquire()``. aiometer has no acquire of
   its own: its rows are the cost per item of ``run_on_each`` (a task per item) with and without
   ``max_per_second``; the difference is what its limiter costs.
2. Accuracy, in real time over ``--seconds``: 20 tasks acquire as fast as they are let through
   at ``--rate`` per second (hookbridge with burst 10; ``AsyncLimiter(rate, 1)``; aiometer's
   ``run_on_each`` over rate * seconds items with ``max_per_second=rate``). From the recorded
   grant times: the grants in the run, the achieved rate and its error, and the most grants in
   any 1 s and any 10 ms window (a two-pointer sweep over the sorted times).
3. The same accuracy run for hookbridge on trio.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiometer
import anyio
from aiolimiter import AsyncLimiter

try:
    from hookbridge._limits import Limits, Rate
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from hookbridge._limits import Limits, Rate

WORKERS = 20
BURST = 10
ROUNDS = 5
HUGE_RATE = 1e9


# -- overhead -----------------------------------------------------------------------------------


async def _best_of(n: int, one_round: Callable[[int], Awaitable[None]]) -> float:
    """µs per operation, the best of ROUNDS rounds of n operations."""
    best = math.inf
    for _ in range(ROUNDS):
        start = time.perf_counter()
        await one_round(n)
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


async def empty_await(n: int) -> float:
    async def noop() -> None:
        pass

    async def one_round(n: int) -> None:
        for _ in range(n):
            await noop()

    return await _best_of(n, one_round)


async def hookbridge_acquire(n: int) -> float:
    limits = Limits(rate=Rate(HUGE_RATE, 1))

    async def one_round(n: int) -> None:
        acquire = limits.acquire
        for _ in range(n):
            await acquire()

    return await _best_of(n, one_round)


async def hookbridge_admission(n: int) -> float:
    limits = Limits(rate=Rate(HUGE_RATE, 1), max_concurrency=100)

    async def one_round(n: int) -> None:
        for _ in range(n):
            async with limits():
                pass

    return await _best_of(n, one_round)


async def hookbridge_unlimited(n: int) -> float:
    limits = Limits()

    async def one_round(n: int) -> None:
        acquire = limits.acquire
        for _ in range(n):
            await acquire()

    return await _best_of(n, one_round)


async def aiolimiter_acquire(n: int) -> float:
    limiter = AsyncLimiter(HUGE_RATE, 1)

    async def one_round(n: int) -> None:
        acquire = limiter.acquire
        for _ in range(n):
            await acquire()

    return await _best_of(n, one_round)


async def aiolimiter_context(n: int) -> float:
    limiter = AsyncLimiter(HUGE_RATE, 1)

    async def one_round(n: int) -> None:
        for _ in range(n):
            async with limiter:
                pass

    return await _best_of(n, one_round)


async def _noop_item(item: int) -> None:
    pass


async def aiometer_per_task(n: int) -> float:
    async def one_round(n: int) -> None:
        await aiometer.run_on_each(_noop_item, range(n), max_per_second=HUGE_RATE)

    return await _best_of(n, one_round)


async def aiometer_per_task_unlimited(n: int) -> float:
    async def one_round(n: int) -> None:
        await aiometer.run_on_each(_noop_item, range(n))

    return await _best_of(n, one_round)


# -- accuracy -----------------------------------------------------------------------------------


@dataclass
class Accuracy:
    grants: int
    achieved: float
    error_pct: float
    max_1s: int
    max_10ms: int


def max_in_window(stamps: list[float], window: float) -> int:
    """Most timestamps in any half-open window [t, t + window)."""
    best = left = 0
    for right, stamp in enumerate(stamps):
        while stamp - stamps[left] >= window:
            left += 1
        best = max(best, right - left + 1)
    return best


def summarize(stamps: list[float], start: float, seconds: float, rate: float) -> Accuracy:
    inside = sorted(s for s in stamps if start <= s < start + seconds)
    achieved = len(inside) / seconds
    return Accuracy(
        grants=len(inside),
        achieved=achieved,
        error_pct=(achieved - rate) / rate * 100,
        max_1s=max_in_window(inside, 1.0),
        max_10ms=max_in_window(inside, 0.010),
    )


async def _run_workers(
    acquire: Callable[[], Awaitable[Any]], seconds: float
) -> tuple[float, list[float]]:
    stamps: list[float] = []
    start = time.perf_counter()
    end = start + seconds

    async def worker() -> None:
        while True:
            await acquire()
            now = time.perf_counter()
            if now >= end:
                return
            stamps.append(now)

    async with anyio.create_task_group() as tg:
        for _ in range(WORKERS):
            tg.start_soon(worker)
    return start, stamps


async def hookbridge_accuracy(rate: float, seconds: float) -> Accuracy:
    limits = Limits(rate=Rate(rate, 1), burst=BURST)
    start, stamps = await _run_workers(limits.acquire, seconds)
    return summarize(stamps, start, seconds, rate)


async def aiolimiter_accuracy(rate: float, seconds: float) -> Accuracy:
    limiter = AsyncLimiter(rate, 1)
    start, stamps = await _run_workers(limiter.acquire, seconds)
    return summarize(stamps, start, seconds, rate)


async def aiometer_accuracy(rate: float, seconds: float) -> Accuracy:
    stamps: list[float] = []

    async def record(item: int) -> None:
        stamps.append(time.perf_counter())

    start = time.perf_counter()
    await aiometer.run_on_each(record, range(round(rate * seconds)), max_per_second=rate)
    return summarize(stamps, start, seconds, rate)


# -- report -------------------------------------------------------------------------------------

COLUMNS = [
    "test",
    "limiter",
    "backend",
    "µs/op",
    "vs aiolimiter",
    "grants",
    "achieved/s",
    "error",
    "max in 1 s",
    "max in 10 ms",
]


def overhead_row(test: str, limiter: str, backend: str, micros: float, base: float) -> list[str]:
    return [test, limiter, backend, f"{micros:.3f}", f"{micros / base:.2f}x", "", "", "", "", ""]


def accuracy_row(limiter: str, backend: str, result: Accuracy) -> list[str]:
    return [
        "accuracy",
        limiter,
        backend,
        "",
        "",
        f"{result.grants:,}",
        f"{result.achieved:,.1f}",
        f"{result.error_pct:+.2f}%",
        f"{result.max_1s:,}",
        f"{result.max_10ms:,}",
    ]


def print_table(title: str, rows: list[list[str]], notes: list[str]) -> None:
    numeric = {3, 4, 5, 6, 7, 8, 9}
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]

        def line(cells: list[str]) -> str:
            return "  ".join(
                cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                for i, cell in enumerate(cells)
            ).rstrip()

        print(title)
        print(line(COLUMNS))
        print(line(["-" * w for w in widths]))
        for row in rows:
            print(line(row))
    else:
        table = Table(title=title)
        for i, column in enumerate(COLUMNS):
            table.add_column(column, justify="right" if i in numeric else "left")
        for row in rows:
            table.add_row(*row)
        Console(width=200).print(table)
    for note in notes:
        print(note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each accuracy run")
    parser.add_argument("--rate", type=float, default=1000.0, help="target rate per second")
    parser.add_argument("--acquires", type=int, default=200_000, help="acquires per overhead round")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 s runs, fewer acquires")
    args = parser.parse_args()
    seconds, n = (2.0, 20_000) if args.quick else (args.seconds, args.acquires)
    n_tasks = max(1, n // 10)  # a task per item: aiometer's rounds are far slower
    rate = args.rate

    def on(backend: str, fn: Callable[..., Awaitable[Any]], *fn_args: Any) -> Any:
        return anyio.run(fn, *fn_args, backend=backend)

    base = on("asyncio", aiolimiter_acquire, n)
    rows = [
        overhead_row("overhead", "aiolimiter AsyncLimiter.acquire()", "asyncio", base, base),
        overhead_row(
            "overhead",
            "hookbridge Limits.acquire()",
            "asyncio",
            on("asyncio", hookbridge_acquire, n),
            base,
        ),
        overhead_row(
            "overhead",
            "hookbridge Limits.acquire()",
            "trio",
            on("trio", hookbridge_acquire, n),
            base,
        ),
        overhead_row(
            "overhead",
            "hookbridge Limits() unlimited",
            "asyncio",
            on("asyncio", hookbridge_unlimited, n),
            base,
        ),
        overhead_row(
            "overhead",
            "aiolimiter async with limiter",
            "asyncio",
            on("asyncio", aiolimiter_context, n),
            base,
        ),
        overhead_row(
            "overhead",
            "hookbridge async with limits() +slot",
            "asyncio",
            on("asyncio", hookbridge_admission, n),
            base,
        ),
        overhead_row(
            "overhead",
            "(an await of an empty coroutine)",
            "asyncio",
            on("asyncio", empty_await, n),
            base,
        ),
        overhead_row(
            "per task",
            "aiometer run_on_each, max_per_second",
            "asyncio",
            on("asyncio", aiometer_per_task, n_tasks),
            base,
        ),
        overhead_row(
            "per task",
            "aiometer run_on_each, no limit",
            "asyncio",
            on("asyncio", aiometer_per_task_unlimited, n_tasks),
            base,
        ),
    ]
    print(f"overhead done; accuracy runs take {4 * seconds:g} s ...", file=sys.stderr, flush=True)
    rows += [
        accuracy_row(
            f"hookbridge burst={BURST}",
            "asyncio",
            on("asyncio", hookbridge_accuracy, rate, seconds),
        ),
        accuracy_row(
            f"hookbridge burst={BURST}", "trio", on("trio", hookbridge_accuracy, rate, seconds)
        ),
        accuracy_row(
            f"aiolimiter AsyncLimiter({rate:g}, 1)",
            "asyncio",
            on("asyncio", aiolimiter_accuracy, rate, seconds),
        ),
        accuracy_row(
            f"aiometer max_per_second={rate:g}",
            "asyncio",
            on("asyncio", aiometer_accuracy, rate, seconds),
        ),
    ]
    title = f"Limits benchmark: Python {sys.version.split()[0]}, rate {rate:g}/s, {seconds:g} s real-time runs"
    notes = [
        f"overhead: best of {ROUNDS} rounds of {n:,} acquires ({n_tasks:,} items for aiometer) at a rate of {HUGE_RATE:g}/s (never waits).",
        f"accuracy: {WORKERS} tasks acquiring in a loop for {seconds:g} s of real time; aiometer runs {round(rate * seconds):,} items.",
        f"GCRA bound for hookbridge: burst + rate * window = {BURST + rate:,.0f} per 1 s, {BURST + rate * 0.01:,.0f} per 10 ms.",
    ]
    print_table(title, rows, notes)


if __name__ == "__main__":
    main()
