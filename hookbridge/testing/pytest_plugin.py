"""pytest plugin of hookbridge: loopback server fixtures. Imports server libraries lazily.

Registered through the ``pytest11`` entry point, so any project that installs ``hookbridge[test]``
gets ``http_server``, ``http_server_process``, ``sftp_server``, ``sftp_conn_id`` and the
``sftp_small_files``, ``sftp_tree`` and ``sftp_large_file`` fixtures that populate it, and
``redis_server``/``redis_url`` (a redis-server process, on any backend). The servers
run on asyncio (aiohttp, asyncssh): on another anyio backend the fixtures skip the test.

``wsman_server`` and ``winrm_conn_id`` serve the WinRM (WS-Management) emulator, on any backend.

``graph_server`` and ``graph_conn_id`` serve the Microsoft Graph emulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._graph_server import GraphTestServer
    from ._http_server import HTTPTestServer
    from ._redis_server import RedisTestServer
    from ._sftp_server import SFTPTestServer
    from ._wsman_server import WSManTestServer


def _backend_name(anyio_backend: Any) -> str:
    return anyio_backend if isinstance(anyio_backend, str) else str(anyio_backend[0])


def _require_asyncio(anyio_backend: Any, what: str) -> None:
    if _backend_name(anyio_backend) != "asyncio":
        pytest.skip(f"{what} is asyncio-only: parametrize anyio_backend to 'asyncio'")


def _conn_id(monkeypatch: pytest.MonkeyPatch, name: str, connection: dict[str, Any]) -> str:
    """Set ``AIRFLOW_CONN_HOOKBRIDGE_<NAME>`` to ``connection`` as JSON; return its id."""
    monkeypatch.setenv(f"AIRFLOW_CONN_HOOKBRIDGE_{name.upper()}", json.dumps(connection))
    return f"hookbridge_{name}"


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
    return _conn_id(monkeypatch, "sftp", sftp_server.airflow_connection())


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


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTestServer]:
    """A real redis-server (password, no persistence) on a free 127.0.0.1 port; any backend.

    Skips the test when the ``redis-server`` binary is missing (``apt-get install redis-server``).
    """
    from ._redis_server import RedisTestServer, redis_server_binary

    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed: apt-get install redis-server to run this test")
    with RedisTestServer(
        password="redis-test-secret", directory=tmp_path_factory.mktemp("redis")
    ) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisTestServer) -> str:
    """redis_server's URL, password included."""
    return redis_server.url


@pytest.fixture
async def graph_server(anyio_backend: Any) -> AsyncIterator[GraphTestServer]:
    """The Microsoft Graph emulator (aiohttp): TLS token endpoint, OData, $batch, delta."""
    _require_asyncio(anyio_backend, "graph_server (aiohttp)")
    from ._graph_server import GraphTestServer

    async with GraphTestServer() as server:
        yield server


@pytest.fixture
def graph_conn_id(graph_server: GraphTestServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Airflow connection id of graph_server (AIRFLOW_CONN_*, msgraph, client credentials)."""
    return _conn_id(monkeypatch, "graph", graph_server.airflow_connection())


@pytest.fixture
async def wsman_server(anyio_backend: Any) -> AsyncIterator[WSManTestServer]:
    """The WS-Management (WinRM) emulator: on the test's loop under asyncio, else in a thread.

    pywinrm is synchronous, so a WinRM client runs on trio as well; the emulator (aiohttp) then
    serves from its own asyncio loop in a thread.
    """
    from ._wsman_serve import serve_in_thread
    from ._wsman_server import WSManTestServer

    if _backend_name(anyio_backend) == "asyncio":
        async with WSManTestServer() as server:
            yield server
    else:
        with serve_in_thread() as server:
            yield server


@pytest.fixture
def winrm_conn_id(wsman_server: WSManTestServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Airflow connection id of wsman_server (AIRFLOW_CONN_*, Basic auth over http)."""
    return _conn_id(monkeypatch, "winrm", wsman_server.airflow_connection())
