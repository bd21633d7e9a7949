"""Fixtures of the WinRM adapter tests: the WS-Management emulator and real Airflow connections.

The adapter runs pywinrm on worker threads, so these tests run on asyncio and on trio. The
emulator (aiohttp) serves on the test's own loop under asyncio and from its own asyncio loop in a
thread under trio.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from hookbridge.testing import WSManTestServer, serve_in_thread

#: A password long enough for Airflow's secret masker; the leak tests look for it everywhere.
PASSWORD = "Winrm-Pa55word-for-tests"

Emulator = Callable[..., Any]
Connect = Callable[..., str]


def backend_name(anyio_backend: Any) -> str:
    return anyio_backend if isinstance(anyio_backend, str) else str(anyio_backend[0])


@pytest.fixture
def emulator(anyio_backend: Any) -> Emulator:
    """``async with emulator(**options) as server``: on this loop (asyncio) or in a thread."""

    @asynccontextmanager
    async def start(**options: Any) -> AsyncIterator[WSManTestServer]:
        options.setdefault("password", PASSWORD)
        if backend_name(anyio_backend) == "asyncio":
            async with WSManTestServer(**options) as server:
                yield server
        else:
            with serve_in_thread(**options) as server:
                yield server

    return start


@pytest.fixture
async def server(emulator: Emulator) -> AsyncIterator[WSManTestServer]:
    async with emulator(max_shells_per_user=5) as server:
        yield server


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``connect(server, conn_id=..., password=..., **hookbridge_options)`` -> conn_id."""

    def define(
        server: WSManTestServer,
        conn_id: str = "winrm_test",
        *,
        password: str | None = None,
        operation_timeout_sec: int = 2,
        **hookbridge: Any,
    ) -> str:
        extra: dict[str, Any] = {"hookbridge": hookbridge} if hookbridge else {}
        conn = server.airflow_connection(
            password=password, operation_timeout_sec=operation_timeout_sec, extra=extra
        )
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return define
