"""One worker process of the shared-limit tests: ``python _shared_worker.py '<json>'``.

Connects, prints ``ready``, reads the start time (``time.monotonic()``, which every process on a
Linux host shares) from stdin, then runs ``tasks`` tasks that acquire from a
``Limits(rate, burst, shared=...)`` (a :class:`GrantLog`) as fast as they are let through until
``start + seconds``, optionally calling ``throttled(cooldown)`` at ``start + throttle_at``. Prints
as JSON on stdout, for every grant, when the script issued it (Redis TIME, exact, and on
``time.monotonic()``) and when its caller got it, and when the cool-down was started and shared.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio

from hookbridge.testing import GrantLog


async def main(job: dict[str, Any]) -> dict[str, Any]:
    limits = GrantLog(rate=job["rate"], burst=job["burst"], shared=job["shared"])
    await limits.acquire()  # connect and load the script before the start
    print("ready", flush=True)
    start = float(await anyio.to_thread.run_sync(sys.stdin.readline))
    end = start + job["seconds"]
    del limits.issued_us[:], limits.issued[:], limits.seen[:]
    throttled_at = shared_at = None

    async def task() -> None:
        with anyio.move_on_after(end - time.monotonic()):
            while True:
                await limits.acquire()

    async def throttle() -> None:
        nonlocal throttled_at, shared_at
        await anyio.sleep(max(0.0, start + job["throttle_at"] - time.monotonic()))
        throttled_at = time.monotonic()
        limits.throttled(job["cooldown"])
        await limits.share_cooldown()
        shared_at = time.monotonic()

    await anyio.sleep(max(0.0, start - time.monotonic()))
    async with anyio.create_task_group() as tg:
        if job.get("throttle_at") is not None:
            tg.start_soon(throttle)
        for _ in range(job["tasks"]):
            tg.start_soon(task)
    await limits.aclose()
    return {
        "issued_us": limits.issued_us,
        "issued": limits.issued,
        "seen": limits.seen,
        "throttled_at": throttled_at,
        "shared_at": shared_at,
    }


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    print(json.dumps(anyio.run(main, job, backend=job.get("backend", "asyncio"))))
