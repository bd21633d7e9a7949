"""Benchmark: many WinRM commands through hookbridge against the provider's ways of running them.

The WS-Management emulator runs in its own process (``python -m hookbridge.testing._wsman_server``,
4 KiB of output per Receive at most, like a small MaxEnvelopeSize). In one run:

- **slow**: N commands that each take 1 s (``sleep 1``);
- **instant**: M commands that answer at once (``echo i``);
- **chunks**: one command with 500 chunks of output (``bytes 2048000``: 500 Receives of 4 KiB);
  the trigger polls it every 10 ms here (at the operator's default of 1 s it would take 500 s).

through each client:

- hookbridge ``WinRMAdapter.map`` over a pool of 10 shells (commands run one after another in
  each shell);
- the provider's sync ``WinRMHook.run``, sequentially (on the slow commands: on a subset,
  extrapolated);
- ``WinRMHook.run`` in 10 threads (one hook per command, as one per task);
- the provider's deferrable path: ``WinRMHook.run_command`` (on a worker thread, as the
  operator's ``execute`` runs on a worker), then ``WinRMCommandOutputTrigger.run()`` in one event
  loop, 10 at a time, then the clean-up of ``WinRMOperator.execute_complete`` (Signal, Delete).

It prints wall time, commands per second, HTTP requests per command (the emulator's own count)
and client CPU per command; the ratios against hookbridge are medians of the ratios within each
round (the clients' order reversed every other round). On the chunks command it prints the
output each client got back: the trigger keeps the last ``max_output_chunks`` (100) chunks.

    .venv/bin/python contrib/bench/winrm_commands.py            # 50 x 1 s, 500 instant, 3 rounds
    .venv/bin/python contrib/bench/winrm_commands.py --quick    # 20 x 1 s, 200 instant, 1 round
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="hookbridge-bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

CONN_ID = "hookbridge_bench_winrm"
SHELLS = 10
CHUNK = 4096
CHUNKS = 500
STATS_URL = ""
INNER: dict[int, list[float]] = {}


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hookbridge.testing._wsman_server",
            "--max-receive-bytes",
            str(CHUNK),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    endpoint = proc.stdout.readline().strip()
    if not endpoint:
        proc.kill()
        raise SystemExit("the WS-Management emulator did not start")
    return proc, endpoint


def define_connection(endpoint: str) -> None:
    os.environ["AIRFLOW_CONN_" + CONN_ID.upper()] = json.dumps(
        {
            "conn_type": "winrm",
            "host": "127.0.0.1",
            "login": "winrm-user",
            "password": "winrm-test-secret",
            "extra": {"endpoint": endpoint, "transport": "plaintext"},
        }
    )


def server_statistics() -> dict[str, Any]:
    with urllib.request.urlopen(STATS_URL, timeout=10) as response:
        return dict(json.load(response))


# -- the clients -----------------------------------------------------------------------------------


def hook_run(command: str) -> tuple[int | None, bytes]:
    from airflow.providers.microsoft.winrm.hooks.winrm import WinRMHook

    code, out, _ = WinRMHook(ssh_conn_id=CONN_ID).run(command)
    return code, b"".join(out)


def sync_sequential(commands: list[str]) -> list[tuple[int | None, bytes]]:
    return [hook_run(command) for command in commands]


def sync_threads(commands: list[str]) -> list[tuple[int | None, bytes]]:
    with ThreadPoolExecutor(SHELLS) as pool:
        return list(pool.map(hook_run, commands))


async def deferrable(
    commands: list[str], poll_interval: float = 1.0
) -> list[tuple[int | None, bytes]]:
    from airflow.providers.microsoft.winrm.hooks.winrm import WinRMHook
    from airflow.providers.microsoft.winrm.triggers.winrm import WinRMCommandOutputTrigger

    gate = asyncio.Semaphore(SHELLS)

    async def one(command: str) -> tuple[int | None, bytes]:
        async with gate:
            hook = WinRMHook(ssh_conn_id=CONN_ID)
            shell_id, command_id = await asyncio.to_thread(hook.run_command, command)
            trigger = WinRMCommandOutputTrigger(
                ssh_conn_id=CONN_ID,
                shell_id=shell_id,
                command_id=command_id,
                poll_interval=poll_interval,
            )
            events = [event.payload async for event in trigger.run()]
            conn = await asyncio.to_thread(hook.get_conn)
            await asyncio.to_thread(conn.cleanup_command, shell_id, command_id)
            await asyncio.to_thread(conn.close_shell, shell_id)
            (event,) = events
            if event["status"] != "success":
                raise RuntimeError(event)
            out = b"".join(base64.b64decode(chunk) for chunk in event["stdout"])
            return event["return_code"], out

    return list(await asyncio.gather(*(one(command) for command in commands)))


async def hookbridge_map(commands: list[str]) -> list[tuple[int | None, bytes]]:
    from hookbridge.adapters.winrm import WinRMAdapter

    async with WinRMAdapter(CONN_ID, max_shells=SHELLS) as winrm:
        results = []
        started = time.perf_counter()
        async with winrm.map(winrm.run, commands, max_at_once=SHELLS) as stream:
            async for result in stream:
                results.append((result.exit_code, result.stdout_bytes))
        # The timed figure includes opening and closing the adapter (lookup, 10 Deletes): this
        # is the commands alone, printed beside it.
        INNER.setdefault(len(commands), []).append(time.perf_counter() - started)
        return results


async def hookbridge_chunks(command: str) -> tuple[int, str]:
    from hookbridge.adapters.winrm import WinRMAdapter

    digest, size = hashlib.sha256(), 0
    async with WinRMAdapter(CONN_ID, max_shells=1) as winrm, winrm.stream(command) as chunks:
        async for chunk in chunks:
            if chunk.stream == "stdout":
                digest.update(chunk.data)
                size += len(chunk.data)
    return size, digest.hexdigest()


def have_hookbridge() -> bool:
    try:
        import hookbridge.adapters.winrm  # noqa: F401
    except ImportError:
        return False
    return True


# -- measuring ---------------------------------------------------------------------------------------


def timed(run: Callable[[], Any]) -> tuple[float, float, int, Any]:
    """Wall seconds, client CPU seconds, HTTP requests the emulator saw, and the result."""
    gc.collect()
    requests = server_statistics()["requests"]
    cpu = time.process_time()
    started = time.perf_counter()
    result = run()
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    stats = server_statistics()
    if stats["shells_open"] or stats["commands_running"]:
        raise SystemExit(f"a client left shells or commands open: {stats}")
    return wall, cpu, stats["requests"] - requests, result


def check(results: list[tuple[int | None, bytes]], expected: list[bytes]) -> None:
    if [code for code, _ in results] != [0] * len(expected):
        raise SystemExit(f"unexpected exit codes: {sorted({code for code, _ in results})}")
    if [out for _, out in results] != expected:
        raise SystemExit("unexpected output")


def warm_up() -> None:
    """Imports and one command each way, outside the timing."""
    hook_run("echo warm")
    asyncio.run(deferrable(["echo warm"]))
    if have_hookbridge():
        asyncio.run(hookbridge_map(["echo warm"]))


def main() -> None:
    global STATS_URL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 slow, 200 instant, 1 round")
    parser.add_argument("--slow", type=int, help="commands of 1 s (default 50)")
    parser.add_argument("--instant", type=int, help="instant commands (default 500)")
    parser.add_argument("--repeat", type=int, help="rounds (default 3)")
    parser.add_argument(
        "--sync-slow", type=int, default=5, help="slow commands the sequential hook runs"
    )
    parser.add_argument(
        "--sync-instant", type=int, default=100, help="instant commands the sequential hook runs"
    )
    parser.add_argument("--verbose", action="store_true", help="print each measurement")
    args = parser.parse_args()
    n_slow = args.slow or (20 if args.quick else 50)
    n_instant = args.instant or (200 if args.quick else 500)
    rounds = args.repeat or (1 if args.quick else 3)
    logging.disable(logging.INFO)

    proc, endpoint = start_server()
    STATS_URL = endpoint.replace("/wsman", "/hookbridge/statistics")
    define_connection(endpoint)
    ours = have_hookbridge()
    print(
        f"emulator pid {proc.pid} at {endpoint}; {n_slow} x 1 s and {n_instant} instant commands; "
        f"{rounds} round(s); {os.cpu_count()} CPUs"
        + ("" if ours else "; hookbridge.adapters.winrm not installed: anchors only"),
        flush=True,
    )
    slow = ["sleep 1"] * n_slow
    instant = [f"echo {i}" for i in range(n_instant)]
    instant_out = [f"{i}\r\n".encode() for i in range(n_instant)]
    clients: list[tuple[str, Callable[[list[str]], Any]]] = []
    if ours:
        clients.append(("hookbridge map, 10 shells", hookbridge_map))
    clients += [
        ("WinRMHook.run sequential", sync_sequential),
        ("WinRMHook.run in 10 threads", sync_threads),
        ("run_command + trigger, 10 at once", deferrable),
    ]
    results: dict[tuple[str, str], list[tuple[float, float, int, int]]] = {}

    def record(kind: str, name: str, count: int, measured: tuple[float, float, int, Any]) -> None:
        wall, cpu, requests, _ = measured
        results.setdefault((kind, name), []).append((wall, cpu, requests, count))
        if args.verbose:
            print(f"  {kind:<8} {name:<36} {wall:7.2f} s  {requests / count:5.2f} req/cmd")

    try:
        warm_up()
        for round_number in range(rounds):
            order = 1 if round_number % 2 == 0 else -1
            for name, fn in clients[::order]:
                batch = slow[: args.sync_slow] if name.endswith("sequential") else slow
                measured = timed(lambda fn=fn, batch=batch: fn(batch))
                check(measured[3], [b""] * len(batch))
                record("slow", name, len(batch), measured)
                count = args.sync_instant if name.endswith("sequential") else n_instant
                measured = timed(lambda fn=fn, count=count: fn(instant[:count]))
                check(measured[3], instant_out[:count])
                record("instant", name, count, measured)
        chunk_lines = chunk_report(ours)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    report(results, clients, {"slow": n_slow, "instant": n_instant}, ours)
    print()
    for line in chunk_lines:
        print(line)


def chunk_report(ours: bool) -> list[str]:
    from hookbridge.testing import expected_sha256

    size = CHUNK * CHUNKS
    command = f"bytes {size}"
    lines = [f"one command with {CHUNKS} chunks of {CHUNK} B of output ({size:,} B):"]
    if ours:
        got, digest = asyncio.run(hookbridge_chunks(command))
        intact = digest == expected_sha256(size)
        lines.append(
            f"  {'hookbridge stream':<36} {got:>10,} B  lost {size - got:>10,} B  "
            f"{'sha256 ok' if intact else 'CONTENT DIFFERS'}"
        )
    _, out = hook_run(command)
    lines.append(f"  {'WinRMHook.run':<36} {len(out):>10,} B  lost {size - len(out):>10,} B")
    # The operator's default poll_interval (1 s) would take 500 s here: one Receive per poll.
    ((_, out),) = asyncio.run(deferrable([command], poll_interval=0.01))
    lines.append(
        f"  {'WinRMCommandOutputTrigger':<36} {len(out):>10,} B  "
        f"lost {size - len(out):>10,} B  (keeps the last 100 chunks)"
    )
    return lines


def report(
    results: dict[tuple[str, str], list[tuple[float, float, int, int]]],
    clients: list[tuple[str, Callable[[list[str]], Any]]],
    sizes: dict[str, int],
    ours: bool,
) -> None:
    base = "hookbridge map, 10 shells"

    def per_command(kind: str, name: str) -> list[float]:
        return [wall / count for wall, _, _, count in results[kind, name]]

    def ratios(kind: str, name: str) -> list[float]:
        """How many times faster hookbridge was, per round (commands per second)."""
        pairs = zip(per_command(kind, name), per_command(kind, base), strict=True)
        return [theirs / mine for theirs, mine in pairs]

    def vs(kind: str, name: str) -> str:
        return f"{statistics.median(ratios(kind, name)):.2f}x" if ours else ""

    print()
    print(
        f"{'':<8} {'client':<36} {'wall s':>8} {'cmd/s':>8} {'req/cmd':>8} {'CPU ms/cmd':>11} "
        f"{'hookbridge faster':>18}"
    )
    for kind in ("slow", "instant"):
        for name, _ in clients:
            rows = results[kind, name]
            count = rows[0][3]
            wall = statistics.median(row[0] for row in rows)
            cpu = statistics.median(row[1] for row in rows) / count * 1000
            requests = statistics.median(row[2] for row in rows) / count
            full = sizes[kind]
            shown = f"{wall * full / count:.2f}*" if count != full else f"{wall:.2f}"
            print(
                f"{kind:<8} {name:<36} {shown:>8} {count / wall:>8.1f} {requests:>8.2f} "
                f"{cpu:>11.2f} {vs(kind, name):>18}"
            )
    print("  * extrapolated from the subset it ran (--sync-slow, --sync-instant)")
    if not ours:
        return
    print()
    walls = [row[0] for row in results["slow", base]]
    slow_wall, worst_wall = statistics.median(walls), max(walls)
    inner = INNER.get(sizes["slow"], [0.0])
    print(
        f"target: {sizes['slow']} one-second commands in under 6 s: median {slow_wall:.2f} s, "
        f"worst {worst_wall:.2f} s  {'ok' if worst_wall < 6 else 'MISSED'}  (commands alone, "
        f"without opening and closing the adapter: median {statistics.median(inner):.2f} s, "
        f"worst {max(inner):.2f} s)"
    )

    def requests_per_command(name: str) -> float:
        return statistics.median(row[2] / row[3] for row in results["instant", name])

    share = requests_per_command(base) / requests_per_command("WinRMHook.run sequential")
    print(
        f"target: at most half the requests per command of WinRMHook.run: {share:.2f}x  "
        f"{'ok' if share <= 0.5 else 'MISSED'}"
    )
    for name in ("WinRMHook.run in 10 threads", "run_command + trigger, 10 at once"):
        per_round = ratios("instant", name)
        ratio, worst = statistics.median(per_round), min(per_round)
        print(
            f"target: instant commands at least 2x {name}: median {ratio:.2f}x, worst "
            f"{worst:.2f}x  {'ok' if ratio >= 2 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
