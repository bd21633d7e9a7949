"""Sink memory: peak memory of writing N items to a hookbridge.Sink and reading them back.

    python contrib/bench/sink_memory.py                       # 100k and 1M, tracemalloc, gzip
    python contrib/bench/sink_memory.py --items 1000000 --measure rss --json

``--measure tracemalloc`` reports the Python heap's peak above the start (precise, about ten
times slower); ``rss`` reports the growth of the process's peak resident set (cheap, coarse).
The target: the peak does not grow with the number of items. Each run writes to a fresh temporary
directory through ``airflow.sdk.ObjectStoragePath`` (``file://``) when Airflow is installed, a
local path otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from typing import Any

import anyio

import hookbridge


def _rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


async def _write_and_read(path: Any, items: int, compression: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    async with hookbridge.Sink(path, compression=compression) as sink:  # type: ignore[arg-type]
        # Items are made on the fly, as a fan-out would produce them.
        await sink.write_many({"id": i, "name": f"item-{i}"} for i in range(items))
    written = time.perf_counter() - started
    reference = sink.reference()
    started = time.perf_counter()
    count = 0
    last = None
    async with hookbridge.read_sink(json.loads(json.dumps(reference))) as rows:
        async for row in rows:
            count += 1
            last = row
    read = time.perf_counter() - started
    if count != items or (items and last != {"id": items - 1, "name": f"item-{items - 1}"}):
        raise SystemExit(f"read back {count} items (last {last!r}), wrote {items}")
    return {"reference": reference, "write_s": written, "read_s": read}


def measure(items: int, how: str, compression: str | None) -> dict[str, Any]:
    """One run in this process; returns the peak (KiB above the start) and the timings."""
    directory = tempfile.mkdtemp(prefix="hookbridge-sink-")
    try:
        try:
            from airflow.sdk import ObjectStoragePath

            path: Any = ObjectStoragePath(f"file://{directory}/out")
        except ImportError:
            path = os.path.join(directory, "out")
        # A small run first: the thread pool, fsspec, the encoder and the imports they trigger
        # allocate once, and would otherwise count against the first measured run.
        anyio.run(_write_and_read, path, 10_000, compression)
        if how == "tracemalloc":
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            result = anyio.run(_write_and_read, path, items, compression)
            peak = (tracemalloc.get_traced_memory()[1] - base) // 1024
            tracemalloc.stop()
        else:
            base = _rss_kib()
            result = anyio.run(_write_and_read, path, items, compression)
            peak = _rss_kib() - base
        return {"items": items, "measure": how, "peak_kib": peak, **result}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, action="append", help="default: 100000 and 1000000")
    parser.add_argument("--measure", choices=["tracemalloc", "rss"], default="tracemalloc")
    parser.add_argument("--compression", choices=["gzip", "none"], default="gzip")
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    args = parser.parse_args(argv)
    compression = None if args.compression == "none" else "gzip"
    counts = args.items or [100_000, 1_000_000]
    if not args.json:
        print(f"{'items':>10} {'peak KiB':>9} {'stored MB':>9} {'write s':>8} {'read s':>7}")
    for count in counts:
        result = measure(count, args.measure, compression)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(
                f"{count:>10} {result['peak_kib']:>9} {result['reference']['bytes'] / 1e6:>9.1f} "
                f"{result['write_s']:>8.2f} {result['read_s']:>7.2f}",
                flush=True,
            )
    if not args.json:
        print(f"(peak measured with {args.measure}, compression {args.compression})")


if __name__ == "__main__":
    sys.exit(main())
