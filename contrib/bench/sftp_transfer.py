"""Benchmark: SFTP downloads through hookbridge against the provider's ways and raw asyncssh.

Two servers, each in its own process, serve a temporary root holding N small files of 10 KiB and
one large file: the project's embedded asyncssh server (``python -m
hookbridge.testing._sftp_server``) and Debian's OpenSSH server (``/usr/sbin/sshd`` with ``Subsystem
sftp internal-sftp``, on a random loopback port with its own config, host key and authorized key:
:mod:`hookbridge.testing._openssh_server`; skipped with one line when the binary is missing). Against
each server, in one run, for each client:

- hookbridge ``SFTPAdapter``: ``download_tree`` of the small files (4 SSH connections) and
  ``download`` of the large file;
- the provider's ``SFTPClientPool(conn_id, pool_size=4)``, used as intended: each file in its own
  task, ``async with pool.get_sftp_client() as sftp: await sftp.get(...)``;
- one raw asyncssh connection, best tuned: 128 concurrent open/read/write for the small files and
  ``sftp.get(..., max_requests=128, block_size=256 KiB)`` for the large one, connected as
  hookbridge connects (``adapters/sftp/_connect.py``: AES-GCM offered first, 8 MiB channel
  window, 128 KiB packets);
- for uploads of the large file, hookbridge ``upload`` against raw asyncssh
  ``sftp.put(..., max_requests=128, block_size=256 KiB)`` on the same kind of connection;
- ``SFTPHookAsync.retrieve_file`` for the large file (64 KiB blocks, the hook's default);
- the sync ``SFTPHook.retrieve_file`` (paramiko) on a tenth of the small files, extrapolated.

The provider's clients connect as the provider does (asyncssh's defaults: chacha20-poly1305
with this server, 2 MiB window, 32 KiB packets).

Each measurement is repeated (``--repeat``, interleaved between clients, the order reversed every
other round) and the median kept. The "vs hookbridge" ratios are medians of the ratios within each
round, whose clients ran seconds apart, so that a burst of load on a shared machine moves both
sides of a ratio. Only ratios measured in one run mean anything: absolute numbers move with
machine load. Garbage is collected before each client, outside its timing: the paramiko client
leaves enough that a full collection would otherwise land inside the next client's run. The
files live on tmpfs (``/dev/shm`` when there is one, or ``--workdir``) so that the disk's write-back
of 1.8 GB of copies does not decide the large-file numbers. The CPU columns (client process,
worker threads included, and server process) say how much work each way costs, which machine
load does not change much.

The server CPU column of OpenSSH counts sshd and every per-connection process it forked.

    .venv/bin/python contrib/bench/sftp_transfer.py            # 1,000 x 10 KiB and 200 MiB
    .venv/bin/python contrib/bench/sftp_transfer.py --quick    # 200 x 10 KiB and 20 MiB
    .venv/bin/python contrib/bench/sftp_transfer.py --server openssh --no-hooks
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

CONN_ID = "hookbridge_bench_sftp"
KiB = 1024
MiB = 1024 * KiB
#: The server path of the bench root: "" for the embedded server (its root is "/"), the
#: absolute local path for OpenSSH (which serves the whole file system).
REMOTE = ""


def remote(rel: str) -> str:
    return f"{REMOTE}/{rel}"


def start_server(root: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hookbridge.testing._sftp_server", "--root", root],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("the SFTP server did not start")
    return proc, json.loads(line)


def define_connection(info: dict[str, Any]) -> None:
    os.environ["AIRFLOW_CONN_" + CONN_ID.upper()] = json.dumps(
        {
            "conn_type": "sftp",
            "host": info["host"],
            "port": info["port"],
            "login": info["user"],
            "password": info["password"],
            "extra": {"host_key": info["host_key"]},
        }
    )


def define_openssh_connection(conn: dict[str, Any]) -> None:
    os.environ["AIRFLOW_CONN_" + CONN_ID.upper()] = json.dumps(conn)


def fresh_dir(base: str, name: str) -> str:
    path = os.path.join(base, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


# -- the clients -----------------------------------------------------------------------------------


async def hookbridge_small(files: list[str], dst: str) -> None:
    from hookbridge.adapters.sftp import SFTPAdapter

    async with SFTPAdapter(CONN_ID, max_connections=4) as sftp:
        result = await sftp.download_tree(remote("small"), dst)
    assert result.files == len(files), result


async def hookbridge_large(name: str, dst: str) -> None:
    from hookbridge.adapters.sftp import SFTPAdapter

    async with SFTPAdapter(CONN_ID, max_connections=4) as sftp:
        await sftp.download(remote(name), os.path.join(dst, name))


async def hookbridge_upload(local: str, name: str) -> None:
    from hookbridge.adapters.sftp import SFTPAdapter

    async with SFTPAdapter(CONN_ID, max_connections=4) as sftp:
        await sftp.upload(local, remote(name))


async def pool_small(files: list[str], dst: str) -> None:
    from airflow.providers.sftp.pools.sftp import SFTPClientPool

    pool = SFTPClientPool(CONN_ID, pool_size=4)

    async def one(rel: str) -> None:
        async with pool.get_sftp_client() as sftp:
            await sftp.get(remote(rel), os.path.join(dst, os.path.basename(rel)))

    try:
        await asyncio.gather(*(one(rel) for rel in files))
    finally:
        await pool.close()


async def raw_connect() -> Any:
    """The provider's connection settings with hookbridge's ciphers, window and packet size."""
    from hookbridge.adapters.sftp._connect import connect_ssh, default_ciphers

    return await connect_ssh(CONN_ID, default_ciphers())


async def raw_small(files: list[str], dst: str) -> None:
    ssh = await raw_connect()
    async with ssh, ssh.start_sftp_client() as sftp:
        gate = asyncio.Semaphore(128)

        async def one(rel: str) -> None:
            async with gate:
                async with sftp.open(remote(rel), "rb") as file:
                    data = await file.read()
                # inline, as asyncssh's own get writes its local files
                with open(os.path.join(dst, os.path.basename(rel)), "wb") as local:  # noqa: ASYNC230
                    local.write(data)

        await asyncio.gather(*(one(rel) for rel in files))


async def raw_large(name: str, dst: str) -> None:
    ssh = await raw_connect()
    async with ssh, ssh.start_sftp_client() as sftp:
        await sftp.get(
            remote(name), os.path.join(dst, name), max_requests=128, block_size=256 * KiB
        )


async def raw_upload(local: str, name: str) -> None:
    ssh = await raw_connect()
    async with ssh, ssh.start_sftp_client() as sftp:
        # As hookbridge does: no bigger than the server's advertised write limit.
        block = min(256 * KiB, sftp.limits.max_write_len or 256 * KiB)
        await sftp.put(local, remote(name), max_requests=128, block_size=block)


async def hook_retrieve_large(name: str, dst: str) -> None:
    from airflow.providers.sftp.hooks.sftp import SFTPHookAsync

    await SFTPHookAsync(sftp_conn_id=CONN_ID).retrieve_file(remote(name), os.path.join(dst, name))


def sync_small(files: list[str], dst: str) -> None:
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    hook = SFTPHook(ssh_conn_id=CONN_ID)
    with hook.get_managed_conn():
        for rel in files:
            hook.retrieve_file(remote(rel), os.path.join(dst, os.path.basename(rel)))


# -- measuring ---------------------------------------------------------------------------------------


def _stat_fields(pid: int | str) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return []


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a server has used so far, from /proc (Linux).

    For a server that forks (sshd: a process per connection, in its own session), also every
    live descendant and the children it already reaped.
    """
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if SERVER_FORKS:
        ticks += int(fields[13]) + int(fields[14])
        for child in descendants(pid):
            other = _stat_fields(child)
            if other:
                ticks += int(other[11]) + int(other[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, by parent pid."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


SERVER_PID = 0
SERVER_FORKS = False


def timed(
    run: Callable[[], Awaitable[None]] | Callable[[], None], is_async: bool = True
) -> tuple[float, float, float]:
    """Wall seconds, client CPU seconds, server CPU seconds."""
    gc.collect()
    cpu, server = time.process_time(), process_cpu(SERVER_PID)
    started = time.perf_counter()
    if is_async:
        asyncio.run(run())  # type: ignore[arg-type]
    else:
        run()
    wall = time.perf_counter() - started
    return wall, time.process_time() - cpu, process_cpu(SERVER_PID) - server


def verify(dst: str, src_root: str, files: list[str]) -> None:
    from hookbridge.testing._sftp_files import sha256_of

    for rel in files[:: max(1, len(files) // 20)]:
        local = os.path.join(dst, os.path.basename(rel))
        if sha256_of(local) != sha256_of(os.path.join(src_root, rel)):
            raise SystemExit(f"content mismatch for {rel}")


def warm_up() -> None:
    """Import everything and resolve the connection once: no client pays Airflow's imports."""
    import airflow.providers.sftp.hooks.sftp
    import airflow.providers.sftp.pools.sftp

    import hookbridge.adapters.sftp  # noqa: F401
    from hookbridge.adapter import get_connection

    asyncio.run(get_connection(CONN_ID))

    async def connect_once() -> None:
        # asyncssh imports its key exchange and cipher modules on first use
        ssh = await airflow.providers.sftp.hooks.sftp.SFTPHookAsync(
            sftp_conn_id=CONN_ID
        )._get_conn()
        async with ssh, ssh.start_sftp_client():
            pass
        ssh = await raw_connect()
        async with ssh, ssh.start_sftp_client():
            pass

    asyncio.run(connect_once())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 small files and 20 MiB")
    parser.add_argument("--files", type=int, help="number of 10 KiB files (default 1000)")
    parser.add_argument("--large-mib", type=int, help="size of the large file (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--only",
        choices=["small", "large", "upload"],
        help="measure only small files, the large download or the large upload",
    )
    parser.add_argument(
        "--server",
        choices=["embedded", "openssh", "both"],
        default="both",
        help="which SFTP server to measure against (default: both)",
    )
    parser.add_argument(
        "--no-hooks",
        action="store_true",
        help="leave out the slow provider-hook anchors (retrieve_file, the sync SFTPHook)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="print each measurement as it is taken"
    )
    parser.add_argument(
        "--workdir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where the server root and the copies go (default: /dev/shm when present)",
    )
    args = parser.parse_args()
    n_files = args.files or (200 if args.quick else 1000)
    large_mib = args.large_mib or (20 if args.quick else 200)

    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="hookbridge-bench-airflow-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")
    # asyncssh and Airflow log every connection and every file at INFO
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    import logging

    from hookbridge.testing._sftp_files import populate_large, populate_small

    logging.disable(logging.INFO)

    work = tempfile.mkdtemp(prefix="hookbridge-bench-sftp-", dir=args.workdir)
    try:
        root = os.path.join(work, "root")
        os.makedirs(root)
        files = populate_small(root, "small", n_files, 10 * KiB)
        large = populate_large(root, "large.bin", large_mib * MiB)
        print(
            f"{n_files} files of 10 KiB, one of {large_mib} MiB; median of {args.repeat} runs; "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        servers = ["embedded", "openssh"] if args.server == "both" else [args.server]
        for server in servers:
            if server == "embedded":
                measure_embedded(args, work, root, files, large, large_mib)
            else:
                measure_openssh(args, work, root, files, large, large_mib)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_embedded(
    args: argparse.Namespace, work: str, root: str, files: list[str], large: str, large_mib: int
) -> None:
    global SERVER_PID, SERVER_FORKS, REMOTE
    proc, info = start_server(root)
    SERVER_PID, SERVER_FORKS, REMOTE = proc.pid, False, ""
    define_connection(info)
    print(f"\n== embedded asyncssh server, pid {proc.pid}, port {info['port']}", flush=True)
    try:
        measure(args, work, root, files, large, large_mib)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def measure_openssh(
    args: argparse.Namespace, work: str, root: str, files: list[str], large: str, large_mib: int
) -> None:
    from hookbridge.testing._openssh_server import OpenSSHServer, sshd_missing

    reason = sshd_missing()
    if reason is not None:
        print(f"\n== OpenSSH server: skipped ({reason})", flush=True)
        return
    global SERVER_PID, SERVER_FORKS, REMOTE
    with OpenSSHServer() as server:
        SERVER_PID, SERVER_FORKS, REMOTE = server.pid, True, root
        define_openssh_connection(server.airflow_connection())
        version = subprocess.run(["/usr/sbin/sshd", "-V"], capture_output=True, text=True)
        print(
            f"\n== OpenSSH server ({version.stderr.strip()}), pid {server.pid}, port "
            f"{server.port}, internal-sftp",
            flush=True,
        )
        measure(args, work, root, files, large, large_mib)


def measure(
    args: argparse.Namespace, work: str, root: str, files: list[str], large: str, large_mib: int
) -> None:
    warm_up()
    n_files = len(files)
    results: dict[str, list[tuple[float, float, float]]] = {}
    sync_files = files[: max(10, n_files // 10)]
    local_large = os.path.join(root, large)

    def record(name: str, measured: tuple[float, float, float]) -> None:
        results.setdefault(name, []).append(measured)
        if args.verbose:
            wall, client, server = measured
            print(f"  {name:<44} {wall:7.3f} s  CPU client {client:6.3f} s  server {server:6.3f} s")

    small_clients = [
        ("hookbridge", hookbridge_small),
        ("SFTPClientPool(4)", pool_small),
        ("asyncssh 1 conn, 128 open/read", raw_small),
    ]
    large_clients = [
        ("hookbridge", hookbridge_large),
        ("asyncssh get 128 x 256 KiB", raw_large),
    ]
    if not args.no_hooks:
        large_clients.append(("SFTPHookAsync.retrieve_file", hook_retrieve_large))
    upload_clients = [
        ("hookbridge", hookbridge_upload),
        ("asyncssh put 128 x 256 KiB", raw_upload),
    ]
    for round_number in range(args.repeat):
        # Every other round reversed: no client always runs first or after the same one.
        order = 1 if round_number % 2 == 0 else -1
        if args.only in (None, "small"):
            for name, fn in small_clients[::order]:
                dst = fresh_dir(work, "dst")
                record(f"small:{name}", timed(lambda fn=fn, dst=dst: fn(files, dst)))
                verify(dst, root, files)
            if not args.no_hooks:
                dst = fresh_dir(work, "dst")
                record(
                    "small:sync SFTPHook",
                    timed(lambda dst=dst: sync_small(sync_files, dst), is_async=False),
                )
        if args.only in (None, "large"):
            for name, fn in large_clients[::order]:
                dst = fresh_dir(work, "dst")
                record(f"large:{name}", timed(lambda fn=fn, dst=dst: fn(large, dst)))
                verify(dst, root, [large])
        if args.only in (None, "upload"):
            for name, up in upload_clients[::order]:
                record(f"upload:{name}", timed(lambda up=up: up(local_large, "uploaded.bin")))
                verify_upload(root, "uploaded.bin", local_large)
    fresh_dir(work, "dst")
    report(args, results, n_files, len(sync_files), large_mib)


def verify_upload(root: str, name: str, source: str) -> None:
    from hookbridge.testing._sftp_files import sha256_of

    target = os.path.join(root, name)
    if sha256_of(target) != sha256_of(source):
        raise SystemExit(f"uploaded content mismatch for {name}")
    os.remove(target)


def report(
    args: argparse.Namespace,
    results: dict[str, list[tuple[float, float, float]]],
    n_files: int,
    n_sync: int,
    large_mib: int,
) -> None:
    def median(name: str, column: int = 0) -> float:
        return statistics.median(m[column] for m in results[name])

    def paired(name: str, ours: str, scale: float = 1.0) -> float:
        """How many times faster ours was, median over rounds of the ratio within the round."""
        return statistics.median(
            scale * theirs[0] / mine[0]
            for theirs, mine in zip(results[name], results[ours], strict=True)
        )

    def cpu(name: str, count: float) -> str:
        # CPU per 1,000 files or per 100 MB, client / server
        client, server = median(name, 1) / count, median(name, 2) / count
        return f"{client:>9.2f} {server:>8.2f}"

    print()
    print(
        f"{'client':<44} {'files/s':>9} {'MB/s':>8} {'vs hookbridge':>14}  CPU s: client   server"
    )
    for name in results:
        if name.startswith("small:"):
            count = n_sync if name.startswith("small:sync") else n_files
            rate = count / median(name)
            mb = rate * 10 * KiB / 1e6
            label = f"{name} ({count} files)" if name.startswith("small:sync") else name
            per = cpu(name, count / 1000)
            vs = paired(name, "small:hookbridge", n_files / count)
            print(f"{label:<44} {rate:>9.0f} {mb:>8.1f} {vs:>13.2f}x  {per} /1k files")
    for kind in ("large", "upload"):
        for name in results:
            if name.startswith(kind + ":"):
                rate = large_mib * MiB / median(name) / 1e6
                per = cpu(name, large_mib * MiB / 100e6)
                vs = paired(name, kind + ":hookbridge")
                print(f"{name:<44} {'':>9} {rate:>8.1f} {vs:>13.2f}x  {per} /100 MB")
    print()
    checks = []
    if "small:SFTPClientPool(4)" in results:
        checks.append(("small files vs SFTPClientPool(4)", "small:SFTPClientPool(4)", 1.8))
    if "large:SFTPHookAsync.retrieve_file" in results:
        checks.append(
            ("large file vs SFTPHookAsync.retrieve_file", "large:SFTPHookAsync.retrieve_file", 1.3)
        )
    if "large:asyncssh get 128 x 256 KiB" in results:
        checks.append(("large download vs asyncssh get", "large:asyncssh get 128 x 256 KiB", 0.9))
    if "upload:asyncssh put 128 x 256 KiB" in results:
        checks.append(("large upload vs asyncssh put", "upload:asyncssh put 128 x 256 KiB", 0.9))
    for label, name, target in checks:
        ours = name.split(":")[0] + ":hookbridge"
        ratio = paired(name, ours)
        verdict = "ok" if ratio >= target else "BELOW TARGET"
        print(
            f"{label:<44} {ratio:>6.2f}x  (target >= {target}x)  {verdict}  "
            f"[ratio of medians {median(name) / median(ours):.2f}x]"
        )
    if "large:asyncssh get 128 x 256 KiB" in results:
        # client CPU per byte of the large download, ours over asyncssh get's (lower is better)
        mine = statistics.median(m[1] for m in results["large:hookbridge"])
        theirs = statistics.median(m[1] for m in results["large:asyncssh get 128 x 256 KiB"])
        verdict = "ok" if mine <= 1.15 * theirs else "ABOVE TARGET"
        print(
            f"{'download client CPU vs asyncssh get':<44} {mine / theirs:>6.2f}x  "
            f"(target <= 1.15x)  {verdict}"
        )


if __name__ == "__main__":
    main()
