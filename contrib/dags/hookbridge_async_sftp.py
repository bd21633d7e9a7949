"""Example DAG: one ``@task async def`` that lists an SFTP directory and reads every file.

Connection ``hookbridge_example_sftp`` (conn_type sftp, host key pinned in the extra). The listing
streams into a fan-out of reads over the adapter's pooled SSH connections; the task returns a
small aggregate (count, bytes, a digest of the contents in name order) through XCom.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pendulum
from airflow.sdk import dag, task

import hookbridge

CONN_ID = "hookbridge_example_sftp"


@dag(
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    params={"directory": "/small", "max_at_once": 32},
    tags=["hookbridge", "example"],
)
def hookbridge_async_sftp() -> None:
    @task
    async def read_directory(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every file of ``directory``, read concurrently; returns counts and a digest."""
        params = params or {}
        async with hookbridge.open(CONN_ID) as sftp:
            files = (entry async for entry in sftp.listdir(params["directory"]) if entry.is_file)

            async def read(entry: Any) -> tuple[str, str, int]:
                data = await sftp.read_bytes(entry.path)
                return entry.name, hashlib.sha256(data).hexdigest(), len(data)

            digests: dict[str, str] = {}
            size = 0
            async with hookbridge.amap(
                read, files, max_at_once=int(params["max_at_once"]), ordered=False
            ) as results:
                async for name, digest, length in results:
                    digests[name] = digest
                    size += length
        combined = hashlib.sha256("".join(digests[n] for n in sorted(digests)).encode())
        return {"files": len(digests), "bytes": size, "digest": combined.hexdigest()}

    read_directory()


example = hookbridge_async_sftp()
