"""Benchmark: HTTP fan-out through hookbridge against the provider's ways and raw aiohttp.

The HTTP server runs in its own process (``python -m hookbridge.testing._http_server``), so the
client does not share its core. In one run, N GETs of ``/items/{i}`` (a small JSON body, read in
full) at concurrency 100 through:

- hookbridge ``HttpAdapter.map`` (limits configured but not binding: rate 1,000,000/s; the default
  retry policy on), the way the README shows it;
- ``HttpAsyncHook.run()`` per call (a new ``aiohttp.ClientSession`` per request);
- one shared ``HttpAsyncHook.session()`` (connection resolved once, one session);
- one raw shared ``aiohttp.ClientSession`` (the ceiling: no limits, no retries, no response object);
- the sync ``HttpHook.run``, sequentially, on fewer requests (extrapolated).

The async clients other than hookbridge are driven by 100 worker tasks sharing a counter (the
cheapest driver there is). Each client runs ``--rounds`` times, interleaved (the order reversed
every other round), and the median is kept. Ratios are medians of the ratios within each round,
whose clients ran seconds apart: only ratios measured in one run mean anything, absolute numbers
move with machine load. The CPU column (the client process's CPU time per request) is the
steadiest figure on a busy machine.

Then it pages through ``/paged/nextlink`` with ``items()``, 1,000 items per page, and reports the
Python heap peak (tracemalloc) for 100 and for 1,000 pages against the size of one page (its JSON,
and the heap it takes once parsed).

    .venv/bin/python contrib/bench/http_fanout.py              # 10,000 requests, 5 rounds
    .venv/bin/python contrib/bench/http_fanout.py --quick      # 2,000 requests, 100/10 pages
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable

# Importing Airflow creates $AIRFLOW_HOME/logs: keep the benchmark out of the user's home.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="hookbridge-bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")

CONN_ID = "bench"
CONCURRENCY = 100
ITEMS = 1000
PAGE_ITEMS = 1000
KiB = 1024


def pin_cpus() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, client CPUs): one core each when there are two or more, else no pinning.

    Two busy processes on two cores otherwise migrate between them, and the result depends on the
    scheduler's mood more than on the client.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    if len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


def start_server(cpus: set[int] | None) -> tuple[subprocess.Popen[str], str]:
    preexec = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hookbridge.testing._http_server", "--items", str(ITEMS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=preexec,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url:
        proc.kill()
        raise SystemExit("the HTTP server did not start")
    return proc, url


def define_connection(url: str) -> None:
    host, _, port = url.removeprefix("http://").rpartition(":")
    os.environ["AIRFLOW_CONN_" + CONN_ID.upper()] = json.dumps(
        {"conn_type": "http", "host": host, "port": int(port)}
    )


def endpoint(i: int) -> str:
    return f"/items/{i % ITEMS}"


async def drive(n: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run ``one(i)`` for i in range(n) on CONCURRENCY workers; return requests per second."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return n / (time.perf_counter() - started)


# -- the clients -----------------------------------------------------------------------------------


async def hookbridge_map(n: int) -> float:
    from hookbridge import Limits, Retry
    from hookbridge.adapters.http import HttpAdapter

    limits = Limits(rate="1000000/s", max_concurrency=CONCURRENCY)
    async with HttpAdapter(CONN_ID, limits=limits, retry=Retry()) as api:

        async def one(i: int) -> int:
            return (await api.get(endpoint(i))).status

        started = time.perf_counter()
        async with api.map(one, range(n), max_at_once=CONCURRENCY) as results:
            async for status in results:
                assert status == 200
        return n / (time.perf_counter() - started)


async def hook_run_per_call(n: int) -> float:
    from airflow.providers.http.hooks.http import HttpAsyncHook

    hook = HttpAsyncHook(method="GET", http_conn_id=CONN_ID)
    await hook.config()  # resolve the connection once, outside the timing, as for the others

    async def one(i: int) -> None:
        response = await hook.run(endpoint=endpoint(i))
        assert response.status == 200
        await response.read()

    return await drive(n, one)


async def hook_shared_session(n: int) -> float:
    from airflow.providers.http.hooks.http import HttpAsyncHook

    hook = HttpAsyncHook(method="GET", http_conn_id=CONN_ID)
    async with hook.session() as http:

        async def one(i: int) -> None:
            response = await http.run(endpoint=endpoint(i))
            assert response.status == 200
            await response.read()

        return await drive(n, one)


async def raw_aiohttp(n: int) -> float:
    import aiohttp

    from hookbridge.adapter import get_connection

    conn = await get_connection(CONN_ID)
    base = f"http://{conn.host}:{conn.port}"
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            async with session.get(base + endpoint(i)) as response:
                assert response.status == 200
                await response.read()

        return await drive(n, one)


def sync_http_hook(n: int) -> float:
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method="GET", http_conn_id=CONN_ID)
    started = time.perf_counter()
    for i in range(n):
        assert hook.run(endpoint(i)).status_code == 200
    return n / (time.perf_counter() - started)


ASYNC_CLIENTS: dict[str, Callable[[int], Awaitable[float]]] = {
    "hookbridge HttpAdapter.map": hookbridge_map,
    "raw shared aiohttp.ClientSession": raw_aiohttp,
    "shared HttpAsyncHook.session()": hook_shared_session,
    "HttpAsyncHook.run() per call": hook_run_per_call,
}
SYNC_NAME = "sync HttpHook.run, sequential"
TARGETS = {
    "raw shared aiohttp.ClientSession": 0.9,
    "shared HttpAsyncHook.session()": 1.5,
    "HttpAsyncHook.run() per call": 4.0,
}


# -- pagination memory -----------------------------------------------------------------------------


async def page_footprint() -> tuple[int, int]:
    """(JSON bytes, heap bytes) of one page of PAGE_ITEMS items, held as a response and parsed."""
    from hookbridge.adapters.http import HttpAdapter

    async with HttpAdapter(CONN_ID) as api:
        await api.get("/items/1")  # warm the pool: its allocations are not the page's
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            response = await api.get("/paged/nextlink", params={"size": PAGE_ITEMS})
            body = response.json()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(body["value"]) == PAGE_ITEMS
        return len(response.content), held


#: Pages streamed (traced, not measured) before the measurements: every page has a new URL, and
#: yarl's and urllib's lru_caches (128 URLs each, process-wide) keep the latest ones. Until those
#: caches hold traced entries, a stream's peak also counts their churn (~1 page of this size).
WARM_UP_PAGES = 300


async def pagination_peaks(page_counts: list[int]) -> tuple[int, list[tuple[int, int, float]]]:
    """(URL cache bytes, [(pages, heap peak above the start, seconds)]) for items() streams."""
    from hookbridge import NextLink
    from hookbridge.adapters.http import HttpAdapter

    async def stream(api: HttpAdapter, pages: int) -> None:
        params = {"size": PAGE_ITEMS, "total": pages * PAGE_ITEMS}
        count = 0
        async for _item in api.items("/paged/nextlink", strategy=NextLink(), params=params):
            count += 1
        assert count == pages * PAGE_ITEMS, count

    results = []
    async with HttpAdapter(CONN_ID) as api:
        await api.get("/items/1")
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await stream(api, WARM_UP_PAGES)
            caches = tracemalloc.get_traced_memory()[0] - before
            for pages in page_counts:
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                started = time.perf_counter()
                await stream(api, pages)
                seconds = time.perf_counter() - started
                results.append((pages, tracemalloc.get_traced_memory()[1] - base, seconds))
        finally:
            tracemalloc.stop()
    return caches, results


# -- report ----------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=False))
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="GETs per async client")
    parser.add_argument("--sync-requests", type=int, default=500, help="GETs for sync HttpHook")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median kept)")
    parser.add_argument("--pages", type=int, nargs=2, default=[100, 1000], help="page counts")
    parser.add_argument("--quick", action="store_true", help="2,000 requests; 10 and 100 pages")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.sync_requests, args.pages = 2000, 200, [10, 100]
    if args.rounds < 1 or args.requests < CONCURRENCY:
        parser.error("need --rounds >= 1 and --requests >= 100")

    # The fan-out's progress summary (INFO) would interleave with the table.
    logging.getLogger("hookbridge.progress").setLevel(logging.WARNING)
    server_cpus, client_cpus = pin_cpus()
    proc, url = start_server(server_cpus)
    if client_cpus is not None:
        os.sched_setaffinity(0, client_cpus)
    try:
        define_connection(url)
        import airflow.providers.http.hooks.http  # noqa: F401 - import once, outside any timing

        print(
            f"server {url} in its own process (pid {proc.pid}, CPUs {server_cpus or 'any'}; "
            f"client CPUs {client_cpus or 'any'}); "
            f"{args.requests:,} GETs at concurrency {CONCURRENCY}, {args.rounds} rounds "
            f"(sync: {args.sync_requests:,} sequential); Python {sys.version.split()[0]}"
        )
        samples: dict[str, list[float]] = {name: [] for name in [*ASYNC_CLIENTS, SYNC_NAME]}
        # Client CPU per request: what the client spends, whatever else runs on the machine.
        cpu: dict[str, list[float]] = {name: [] for name in samples}
        asyncio.run(hookbridge_map(min(1000, args.requests)))  # warm-up: imports, first connect
        clients = list(ASYNC_CLIENTS.items())
        for round_number in range(1, args.rounds + 1):
            # Every other round runs the clients in reverse order, so that no client always
            # follows the same neighbour (or always runs first, on a cold connection pool).
            for name, client in clients if round_number % 2 else clients[::-1]:
                # Each client starts with a clean collector, outside the timing. Otherwise the
                # garbage the previous client left (the per-call session and the sync client make
                # a lot) trips a full collection of the whole Airflow-sized heap, ~100 ms, inside
                # whichever client runs next: the first of the round, hookbridge.
                gc.collect()
                started = time.process_time()
                samples[name].append(asyncio.run(client(args.requests)))
                cpu[name].append((time.process_time() - started) / args.requests)
            gc.collect()
            started = time.process_time()
            samples[SYNC_NAME].append(sync_http_hook(args.sync_requests))
            cpu[SYNC_NAME].append((time.process_time() - started) / args.sync_requests)
            print(
                f"  round {round_number}: "
                + ", ".join(
                    f"{name.split()[0]}={values[-1]:,.0f}/s" for name, values in samples.items()
                )
            )

        medians = {name: statistics.median(values) for name, values in samples.items()}
        cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
        raw = medians["raw shared aiohttp.ClientSession"]
        ours_name = "hookbridge HttpAdapter.map"
        # The ratio to each client is the median of the ratios within a round: both ran within
        # seconds of each other, so a burst of load on this shared machine moves both. A ratio
        # of medians would pair one client's calm round with another's busy one.
        paired = {
            name: statistics.median(o / t for o, t in zip(samples[ours_name], values, strict=True))
            for name, values in samples.items()
        }
        print()
        table(
            [
                "client",
                "requests/s (median)",
                "min..max",
                "vs raw aiohttp",
                "hookbridge is",
                "client CPU/request",
                "CPU: hookbridge is",
            ],
            [
                [
                    name,
                    f"{median:,.0f}",
                    f"{min(samples[name]):,.0f}..{max(samples[name]):,.0f}",
                    f"{median / raw:.2f}x",
                    "-" if name == ours_name else f"{paired[name]:.2f}x",
                    f"{cpu_medians[name] * 1e6:,.0f} us",
                    "-"
                    if name == ours_name
                    else f"{cpu_medians[name] / cpu_medians[ours_name]:.2f}x",
                ]
                for name, median in medians.items()
            ],
        )
        print()
        failed = False
        for name, target in TARGETS.items():
            ratio = paired[name]
            ok = ratio >= target
            failed |= not ok
            print(
                f"  target hookbridge >= {target}x {name}: {ratio:.2f}x {'ok' if ok else 'MISSED'}"
            )

        json_size, page_heap = asyncio.run(page_footprint())
        print()
        print(
            f"pagination: items() over /paged/nextlink, {PAGE_ITEMS:,} items per page; one page is "
            f"{json_size / KiB:,.0f} KiB of JSON, {page_heap / KiB:,.0f} KiB on the heap "
            "(body + parsed items)"
        )
        caches, results = asyncio.run(pagination_peaks(args.pages))
        rows = [
            [
                f"{pages:,} pages",
                f"{pages * PAGE_ITEMS:,}",
                f"{seconds:.2f} s",
                f"{peak / KiB:,.0f} KiB",
                f"{peak / json_size:.1f}",
                f"{peak / page_heap:.2f}",
            ]
            for pages, peak, seconds in results
        ]
        table(
            ["stream", "items", "time", "heap peak", "peak / page JSON", "peak / page heap"],
            rows,
        )
        print(
            f"  (after a {WARM_UP_PAGES}-page warm-up stream that filled the process-wide URL "
            f"caches of yarl and urllib: {caches / KiB:,.0f} KiB, bounded, not per stream)"
        )
        worst = max(peak for _, peak, _ in results)
        flat = worst <= 3 * page_heap
        failed |= not flat
        print(
            f"  target: peak within 3 pages' worth (heap) whatever the number of pages: "
            f"{worst / page_heap:.2f} pages {'ok' if flat else 'MISSED'} ("
            + " vs ".join(f"{pages:,} pages {peak / KiB:,.0f} KiB" for pages, peak, _ in results)
            + ")"
        )
        return 1 if failed else 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
