"""pytest plugin of hookbridge: loopback server fixtures. Imports server libraries lazily.

Registered through the ``pytest11`` entry point, so any project that installs ``hookbridge[test]``
gets ``http_server``, ``http_server_process``, ``sftp_server``, ``sftp_conn_id`` and the
``sftp_small_files``, ``sftp_tree`` and ``sftp_large_file`` fixtures that populate it. The servers
run on asyncio (aiohttp, asyncssh): on another anyio backend the fixtures skip the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._http_server import HTTPTestServer
    from ._sftp_server import SFTPTestServer


def _backend_name(anyio_backend: Any) -> str:
    return anyio_backend if isinstance(anyio_backend, str) else str(anyio_backend[0])


def _require_asyncio(anyio_backend: Any, what: str) -> None:
    if _backend_name(anyio_backend) != "asyncio":
        pytest.skip(f"{what} is asyncio-only: parametrize anyio_backend to 'asyncio'")


@pytest.fixture
async def http_server(anyio_backend: Any) -> AsyncIterator[HTTPTestServer]:
    """The loopback HTTP API (aiohttp) on the test's own event loop."""
    _require_asyncio(anyio_backend, "http_server (aiohttp)")
    from ._http_server import HTTPTestServer

    # A password long enough for Airflow's secret masker, so leak tests mean something.
    async with HTTPTestServer(password="http-test-secret") as server:
        yield server


@pytest.fixture(scope="session")
def http_server_process() -> Iterator[str]:
    """The loopback HTTP API in its own process (for load): yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hookbridge.testing._http_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the HTTP test server did not start (exit code {process.poll()})")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.fixture
async def sftp_server(
    tmp_path_factory: pytest.TempPathFactory, anyio_backend: Any
) -> AsyncIterator[SFTPTestServer]:
    """A real SSH/SFTP server (asyncssh) on 127.0.0.1 serving an empty temporary root as "/"."""
    _require_asyncio(anyio_backend, "sftp_server (asyncssh)")
    from ._sftp_server import SFTPTestServer

    async with SFTPTestServer(
        root=tmp_path_factory.mktemp("sftp-root"), password="sftp-test-secret"
    ) as server:
        yield server


@pytest.fixture
def sftp_conn_id(sftp_server: SFTPTestServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Airflow connection id of sftp_server (AIRFLOW_CONN_*, password auth, host key pinned)."""
    monkeypatch.setenv("AIRFLOW_CONN_HOOKBRIDGE_SFTP", json.dumps(sftp_server.airflow_connection()))
    return "hookbridge_sftp"


@pytest.fixture
def sftp_small_files(sftp_server: SFTPTestServer) -> list[str]:
    """1,000 files of 10 KiB under /small on sftp_server; their root-relative paths."""
    return sftp_server.populate_small()


@pytest.fixture
def sftp_tree(sftp_server: SFTPTestServer) -> list[str]:
    """A tree 4 levels deep (3 sub-directories, 3 files of 1 KiB each per level) under /tree."""
    return sftp_server.populate_tree()


@pytest.fixture
def sftp_large_file(sftp_server: SFTPTestServer) -> str:
    """One 64 MiB file, /large.bin, on sftp_server (written in chunks, never whole in memory)."""
    return sftp_server.populate_large(size=64 * 1024 * 1024)
