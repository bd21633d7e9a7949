"""A rate limit shared through Redis: hookbridge against `limits` and pyrate-limiter, 1 and 4 processes.

    .venv/bin/python contrib/bench/redis_limits.py [--seconds 20] [--rate 200] [--rounds 3] [--quick]
        [--accuracy-only hookbridge-asyncio,...] [--processes 1,4]

Starts its own redis-server (the ``redis-server`` binary; password, no persistence, loopback) and
worker processes of this same script, then prints two tables.

1. Overhead of an acquire that never waits (a rate no loop can reach), in 1 process and in 4 at
   once against the same Redis key: µs of wall time and of client CPU per acquire, and the ratio to
   `limits`' async Redis storage ``MovingWindowRateLimiter.hit()`` (redis-py implementation), the
   median of the within-round ratios; the order of the limiters is reversed every other round.
   hookbridge's rows also count Redis commands per acquire (INFO commandstats): its round trips.
   The rows: hookbridge ``Limits(shared=...)`` on asyncio (redis-py's asyncio client) and on trio
   (the sync client in a worker thread), the in-process ``Limits`` (no Redis), `limits` ``hit()``,
   pyrate-limiter's ``RedisBucket`` through ``Limiter.try_acquire_async()``.
2. Accuracy over ``--seconds`` of real time at ``--rate`` per second in total, with 1 and 4
   processes of 50 tasks acquiring in a loop: hookbridge shared (burst 10) on asyncio and trio; the
   in-process ``Limits`` given ``rate / processes`` each (the static split used without Redis);
   `limits`' moving window, the caller sleeping until the window's reset time and retrying;
   pyrate-limiter's Redis bucket with its blocking ``try_acquire_async``. From the grant times
   (``time.monotonic()``, shared by every process of the host): the grants, the achieved rate and
   its error, the most grants in any 1 s window, and the largest deviation of one process's share
   from the fair share. For hookbridge also the most grants in any 1 s window of the instants the
   Redis script issued them (its clock, Redis TIME: what the limiter controls; the callers get
   them later by the reply's trip and their event loop's delay), the longest such delay, and
   Redis round trips per grant (a caller woken late for its slot confirms again). The workers
   also measure how late a 5 ms timer fires in their event loop (the machine's load).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

# This directory holds limits.py (our other benchmark), which would shadow the `limits` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

try:
    from hookbridge import Limits, Rate
    from hookbridge.testing import GrantLog, RedisTestServer, max_in_window
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from hookbridge import Limits, Rate
    from hookbridge.testing import GrantLog, RedisTestServer, max_in_window

TASKS = 50
BURST = 10
HUGE = 10**9  # per second: never reached, so an acquire never waits
LIMITERS = ["hookbridge-asyncio", "hookbridge-trio", "in-process", "limits", "pyrate"]
LABELS = {
    "hookbridge-asyncio": ("hookbridge Limits(shared=...)", "asyncio"),
    "hookbridge-trio": ("hookbridge Limits(shared=...)", "trio (thread)"),
    "in-process": ("hookbridge Limits (in-process)", "asyncio"),
    "limits": ("limits MovingWindow hit (redispy)", "asyncio"),
    "pyrate": ("pyrate-limiter RedisBucket", "asyncio"),
}


# -- the limiters, each as "an async acquire" plus a closer -------------------------------------


async def make_acquire(
    name: str, url: str, key: str, rate: float, processes: int, log: list[GrantLog] | None = None
) -> tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    if name.startswith("hookbridge"):
        shared = {"key": key, "redis_url": url}
        if log is not None:  # the accuracy runs: note when the script issued each grant
            log.append(GrantLog(rate=Rate(rate, 1), burst=BURST, shared=shared))
            return log[0].acquire, log[0].aclose
        limits = Limits(rate=Rate(rate, 1), burst=BURST, shared=shared)
        return limits.acquire, limits.aclose  # type: ignore[attr-defined]
    if name == "in-process":
        local = Limits(rate=Rate(rate / processes, 1), burst=BURST)

        async def nothing() -> None:
            pass

        return local.acquire, nothing
    if name == "limits":
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        storage = RedisStorage("async+" + url, implementation="redispy")
        strategy = MovingWindowRateLimiter(storage)
        item = RateLimitItemPerSecond(int(rate))

        async def hit_or_sleep() -> None:
            # limits has no waiting acquire: hit, and when refused sleep until the window's
            # oldest entry expires, then try again.
            while not await strategy.hit(item, key):
                stats = await strategy.get_window_stats(item, key)
                await anyio.sleep(max(0.001, stats.reset_time - time.time()))

        async def close_storage() -> None:
            # limits has no close(): its redis-py client is at storage.bridge.storage.
            await storage.bridge.storage.aclose()

        return hit_or_sleep, close_storage
    if name == "pyrate":
        import pyrate_limiter
        from redis.asyncio import Redis

        client = Redis.from_url(url)
        bucket = await pyrate_limiter.RedisBucket.init(
            [pyrate_limiter.Rate(int(rate), pyrate_limiter.Duration.SECOND)], client, key
        )
        limiter = pyrate_limiter.Limiter(bucket)

        async def acquire() -> None:
            assert await limiter.try_acquire_async(key)

        return acquire, client.aclose
    raise ValueError(name)


# -- worker processes ---------------------------------------------------------------------------


def worker(job: dict[str, Any]) -> None:
    """One process: ``overhead`` (every limiter, every round) or ``accuracy`` (one limiter)."""
    if job["mode"] == "overhead":
        results: dict[str, list[list[float]]] = {name: [] for name in job["limiters"]}
        print("ready", flush=True)
        sys.stdin.readline()
        for round_ in range(job["rounds"]):
            order = job["limiters"] if round_ % 2 == 0 else job["limiters"][::-1]
            for name in order:
                backend = "trio" if name.endswith("trio") else "asyncio"
                results[name].append(anyio.run(overhead, name, job, backend=backend))
        print(json.dumps(results))
    else:
        backend = "trio" if job["limiter"].endswith("trio") else "asyncio"
        print(json.dumps(anyio.run(accuracy, job, backend=backend)))


async def overhead(name: str, job: dict[str, Any]) -> list[float]:
    key = f"overhead-{name}"
    acquire, close = await make_acquire(name, job["url"], key, HUGE, job["processes"])
    for _ in range(50):  # connect, load scripts, warm up
        await acquire()
    n = job["n"]
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await acquire()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await close()
    return [wall / n * 1e6, cpu / n * 1e6]


async def accuracy(job: dict[str, Any]) -> dict[str, Any]:
    log: list[GrantLog] = []
    acquire, close = await make_acquire(
        job["limiter"], job["url"], job["key"], job["rate"], job["processes"], log
    )
    await acquire()  # connected
    print("ready", flush=True)
    start = float(await anyio.to_thread.run_sync(sys.stdin.readline))
    end = start + job["seconds"]
    grants: list[float] = []
    lateness = 0.0
    for limits in log:
        del limits.issued_us[:], limits.issued[:], limits.seen[:]

    async def task() -> None:
        with anyio.move_on_after(end - time.monotonic()):
            while True:
                await acquire()
                grants.append(time.monotonic())

    async def probe() -> None:
        nonlocal lateness
        with anyio.move_on_after(end - time.monotonic()):
            while True:
                before = time.monotonic()
                await anyio.sleep(0.005)
                lateness = max(lateness, time.monotonic() - before - 0.005)

    await anyio.sleep(max(0.0, start - time.monotonic()))
    async with anyio.create_task_group() as tg:
        tg.start_soon(probe)
        for _ in range(TASKS):
            tg.start_soon(task)
    await close()
    issued = {"issued_us": log[0].issued_us, "delays": []} if log else {}
    if log:
        seen = log[0].seen
        issued["delays"] = [s - i for s, i in zip(seen, log[0].issued, strict=True)]
    return {"grants": grants, "lateness": lateness, **issued}


def run_workers(jobs: list[dict[str, Any]]) -> list[Any]:
    """Start one process per job; once all print "ready", send them the start time."""
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(job)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for job in jobs
    ]
    try:
        for process in processes:
            line = process.stdout.readline()  # type: ignore[union-attr]
            if line.strip() != "ready":
                raise RuntimeError(f"a worker failed to start: {line!r}")
        start = time.monotonic() + 0.5
        for process in processes:
            process.stdin.write(f"{start!r}\n")  # type: ignore[union-attr]
            process.stdin.close()  # type: ignore[union-attr]
        outputs = [process.stdout.read() for process in processes]  # type: ignore[union-attr]
        for process in processes:
            if process.wait() != 0:
                raise RuntimeError(f"a worker failed with exit code {process.returncode}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()  # type: ignore[union-attr]
    return [{"start": start, **json.loads(output)} for output in outputs]


# -- the report ---------------------------------------------------------------------------------


def commands_served(server: RedisTestServer) -> int:
    """Commands clients sent (not those the scripts ran inside, nor INFO, AUTH, HELLO)."""
    import redis

    with redis.Redis(host=server.host, port=server.port, password=server.password) as client:
        stats = client.info("commandstats")
    inside = {"time", "hmget", "hset", "pexpire"}  # what hookbridge's script calls
    skip = {f"cmdstat_{name}" for name in (*inside, "info", "auth", "hello", "client|setinfo")}
    return sum(int(v["calls"]) for k, v in stats.items() if k not in skip)


def table(title: str, columns: list[str], rows: list[list[str]], notes: list[str]) -> None:
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    print(f"\n{title}")
    print(line(columns))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    for note in notes:
        print(note)


def round_trips(server: RedisTestServer, name: str, n: int) -> float:
    """Redis commands (round trips) per acquire of hookbridge's shared limit, alone on the server."""

    async def run() -> float:
        acquire, close = await make_acquire(name, server.url, f"trips-{name}", HUGE, 1)
        await acquire()  # the script is loaded: from here on, one EVALSHA per acquire
        before = commands_served(server)
        for _ in range(n):
            await acquire()
        calls = commands_served(server) - before
        await close()
        return calls / n

    return anyio.run(run, backend="trio" if name.endswith("trio") else "asyncio")


def overhead_table(server: RedisTestServer, n: int, rounds: int) -> None:
    trips = {name: round_trips(server, name, n) for name in LIMITERS if name.startswith("hook")}
    rows = []
    for processes in (1, 4):
        job = {
            "mode": "overhead",
            "url": server.url,
            "limiters": LIMITERS,
            "rounds": rounds,
            "n": n,
            "processes": processes,
        }
        results = run_workers([job] * processes)
        for name in LIMITERS:
            # Per round: the median over the processes; then the median over the rounds.
            wall = [statistics.median(r[name][i][0] for r in results) for i in range(rounds)]
            cpu = [statistics.median(r[name][i][1] for r in results) for i in range(rounds)]
            base = [statistics.median(r["limits"][i][0] for r in results) for i in range(rounds)]
            ratio = statistics.median(w / b for w, b in zip(wall, base, strict=True))
            cpu_base = [
                statistics.median(r["limits"][i][1] for r in results) for i in range(rounds)
            ]
            cpu_ratio = statistics.median(c / b for c, b in zip(cpu, cpu_base, strict=True))
            label, backend = LABELS[name]
            rows.append(
                [
                    label,
                    backend,
                    str(processes),
                    f"{statistics.median(wall):.1f}",
                    f"{max(wall):.1f}",
                    f"{statistics.median(cpu):.1f}",
                    f"{ratio:.2f}x",
                    f"{cpu_ratio:.2f}x",
                    f"{trips[name]:.3f}" if name in trips else "",
                ]
            )
    table(
        f"Overhead of an acquire that never waits (Python {sys.version.split()[0]}, {n:,} "
        f"acquires per limiter per round, {rounds} rounds)",
        [
            "limiter",
            "backend",
            "procs",
            "µs/acq",
            "worst",
            "CPU µs",
            "vs limits",
            "CPU vs limits",
            "cmds/acq",
        ],
        rows,
        [
            "µs/acq: median over rounds of the median over processes; worst: the slowest round; "
            "vs limits: median of within-round ratios to limits' hit() (wall time, then client "
            "CPU time, which a loaded machine disturbs less).",
            "cmds/acq: Redis commands (each one round trip) per hookbridge acquire, from INFO "
            "commandstats, measured alone after the script was loaded (once per server).",
        ],
    )


def accuracy_table(
    server: RedisTestServer, rate: float, seconds: float, limiters: list[str], procs: list[int]
) -> None:
    rows = []
    for processes in procs:
        for name in limiters:
            key = f"accuracy-{name}-{processes}"
            job = {
                "mode": "accuracy",
                "limiter": name,
                "url": server.url,
                "key": key,
                "rate": rate,
                "seconds": seconds,
                "processes": processes,
            }
            print(f"accuracy: {name}, {processes} process(es) ...", file=sys.stderr, flush=True)
            before = commands_served(server)
            results = run_workers([job] * processes)
            commands = commands_served(server) - before
            start = results[0]["start"]
            shares = [sum(start <= t < start + seconds for t in r["grants"]) for r in results]
            stamps = sorted(t for r in results for t in r["grants"] if start <= t < start + seconds)
            achieved = len(stamps) / seconds
            fair = len(stamps) / processes
            label, backend = LABELS[name]
            by_script = ["", "", ""]
            if name.startswith("hookbridge"):
                issued = [t for r in results for t in r["issued_us"]]
                by_script = [
                    f"{max_in_window(issued, 1e6)}",
                    f"{max(d for r in results for d in r['delays']) * 1000:.1f}",
                    f"{commands / len(issued):.2f}",
                ]
            rows.append(
                [
                    label,
                    backend,
                    str(processes),
                    f"{len(stamps):,}",
                    f"{achieved:.1f}",
                    f"{(achieved - rate) / rate * 100:+.2f}%",
                    f"{max_in_window(stamps, 1.0)}",
                    *by_script,
                    f"{max(abs(s - fair) for s in shares) / fair * 100:.1f}%" if fair else "-",
                    f"{max(r['lateness'] for r in results) * 1000:.1f}",
                ]
            )
    table(
        f"Accuracy: {rate:g}/s in total for {seconds:g} s, {TASKS} tasks per process",
        [
            "limiter",
            "backend",
            "procs",
            "grants",
            "achieved/s",
            "error",
            "max in 1 s",
            "issued",
            "delay ms",
            "trips",
            "share dev",
            "late ms",
        ],
        rows,
        [
            f"target: error within 2%; max in 1 s <= rate + burst = {rate + BURST:g} for "
            f"hookbridge (burst {BURST}), <= {rate:g} for a moving window.",
            "max in 1 s: over the times the callers got their grants; issued: over the times "
            "hookbridge's script issued them (Redis TIME); delay ms: the longest from issue to "
            "caller; trips: Redis round trips per grant (hookbridge only).",
            "share dev: largest |process share - fair share| / fair share; late ms: worst "
            "lateness of a 5 ms timer in any worker (the machine's load, not the limiter).",
            "in-process: each process has its own Limits at rate / processes (no Redis).",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each accuracy run")
    parser.add_argument("--rate", type=float, default=200.0, help="total rate per second")
    parser.add_argument("--acquires", type=int, default=2000, help="acquires per overhead round")
    parser.add_argument("--rounds", type=int, default=3, help="overhead rounds")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 s runs, 1 round")
    parser.add_argument(
        "--accuracy-only",
        metavar="LIMITER,...",
        help=f"only the accuracy table, for these limiters (of {', '.join(LIMITERS)})",
    )
    parser.add_argument(
        "--processes", default="1,4", help="accuracy runs with these numbers of processes"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    seconds, n, rounds = (3.0, 300, 1) if args.quick else (args.seconds, args.acquires, args.rounds)
    limiters = args.accuracy_only.split(",") if args.accuracy_only else LIMITERS
    if set(limiters) - set(LIMITERS):
        parser.error(f"--accuracy-only: limiters are {', '.join(LIMITERS)}")
    procs = [int(n) for n in args.processes.split(",")]
    with RedisTestServer() as server:
        if not args.accuracy_only:
            overhead_table(server, n, rounds)
        accuracy_table(server, args.rate, seconds, limiters, procs)


if __name__ == "__main__":
    main()
