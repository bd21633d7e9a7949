"""The SFTP part of ``hookbridge demo``: a tree download from a loopback server, checksummed.

Starts the in-process SFTP test server on a temporary root, fills it with a directory tree and
one larger file, defines the Airflow connection in-process, downloads the tree through the
adapter with progress while the server drops one connection mid-transfer, and verifies every
file's SHA-256 against the server's copy.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile

import anyio

from hookbridge import Retry
from hookbridge._demos import DemoResult, DemoUI, airflow_connection
from hookbridge.adapters.sftp import SFTPAdapter, TransferProgress

__all__ = ["run"]

CONN_ID = "hookbridge_demo_sftp"
MiB = 1024 * 1024


def _populate(server_root: str) -> tuple[list[str], int]:
    from hookbridge.testing._sftp_files import populate_large, populate_tree

    files = populate_tree(server_root, "tree", depth=3, fanout=3, files_per_dir=4, size=8192)
    files.append(populate_large(server_root, "tree/big.bin", 24 * MiB))
    return files, sum(os.path.getsize(os.path.join(server_root, rel)) for rel in files)


def _checksums_match(server_root: str, local_root: str, files: list[str]) -> list[str]:
    from hookbridge.testing._sftp_files import sha256_of

    bad = []
    for rel in files:
        local = os.path.join(local_root, *rel.split("/")[1:])
        if sha256_of(local) != sha256_of(os.path.join(server_root, rel)):
            bad.append(rel)
    return bad


async def run(ui: DemoUI) -> DemoResult:
    """Download a tree through the SFTP adapter and check it, for ``hookbridge demo``."""
    from hookbridge.testing._sftp_server import SFTPTestServer

    # Importing Airflow creates $AIRFLOW_HOME/logs (~/airflow by default). A directory that
    # outlives this part: Airflow keeps using it for the rest of the process.
    os.environ.setdefault(
        "AIRFLOW_HOME", os.path.join(tempfile.gettempdir(), "hookbridge-demo-airflow")
    )
    work = tempfile.mkdtemp(prefix="hookbridge-demo-sftp-")
    server_root = os.path.join(work, "server")
    local_root = os.path.join(work, "download")
    os.makedirs(server_root)
    try:
        files, total_bytes = await anyio.to_thread.run_sync(_populate, server_root)
        # Airflow's import takes seconds: pay it before the clock starts, off the event loop.
        await anyio.to_thread.run_sync(importlib.import_module, "airflow.providers.sftp.hooks.sftp")
        async with SFTPTestServer(root=server_root) as server:
            with airflow_connection(CONN_ID, server.airflow_connection()):
                ui.log(
                    f"sftp: serving {len(files)} files ({total_bytes / MiB:.1f} MiB) on "
                    f"127.0.0.1:{server.port}; one connection will be dropped mid-transfer"
                )
                bar = ui.progress("sftp: download_tree", total=len(files))

                def advance(event: TransferProgress) -> None:
                    bar.advance(1)

                # The server aborts the connection serving the middle of the large file.
                server.drop_after_bytes(12 * MiB)
                started = anyio.current_time()
                async with SFTPAdapter(CONN_ID, retry=Retry(attempts=3, backoff=0.1)) as sftp:
                    result = await sftp.download_tree("/tree", local_root, progress=advance)
                    stats = sftp.statistics()
                seconds = anyio.current_time() - started
                drops = server.statistics().drops
        bad = await anyio.to_thread.run_sync(_checksums_match, server_root, local_root, files)
        pool = stats.pool
        notes = (
            f"{result.files} files in {result.directories + 1} dirs, "
            f"{'checksums ok' if not bad else f'{len(bad)} CHECKSUM MISMATCHES'}; "
            f"{pool.pool.created} SSH connections, up to {pool.peak_load} requests in flight; "
            f"{drops} connection dropped by the server mid-transfer, "
            f"{stats.retries} {'operation' if stats.retries == 1 else 'operations'} on it "
            "retried on a fresh one"
        )
        return DemoResult(
            part="sftp",
            operations=result.files,
            seconds=seconds,
            retries=stats.retries,
            failed=len(bad) + (len(files) - result.files),
            bytes=result.bytes,
            notes=notes,
        )
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(shutil.rmtree, work, True)
