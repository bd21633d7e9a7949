"""Fixtures of the Graph adapter tests: the Graph emulator and Airflow msgraph connections to it.

Connections are real Airflow connections (``AIRFLOW_CONN_<ID>`` holding JSON), read by the
provider's ``KiotaRequestAdapterHook`` settings; tokens come from the emulator's TLS token endpoint.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from hookbridge.testing import GraphTestServer

#: The client secret of the test connections; the leak tests look for it everywhere.
SECRET = "graph-client-secret-7f3a9c"

Connect = Callable[..., str]


@pytest.fixture
async def graph() -> AsyncIterator[GraphTestServer]:
    async with GraphTestServer(users=1000, client_secret=SECRET) as server:
        yield server


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch, graph: GraphTestServer) -> Connect:
    """Define a connection to ``graph``: ``conn_id = connect(hookbridge={...}, password=...)``."""

    def define(
        conn_id: str = "graph",
        *,
        password: str | None = None,
        hookbridge: dict[str, Any] | None = None,
        **extra: Any,
    ) -> str:
        if hookbridge is not None:
            extra["hookbridge"] = hookbridge
        conn = graph.airflow_connection(**extra)
        if password is not None:
            conn["password"] = password
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return define


async def _wait_until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(400):
        if condition():
            return
        await anyio.sleep(0.005)
    raise AssertionError(f"not reached within 2 s: {what}")


@pytest.fixture
def wait_until() -> Callable[[Callable[[], bool], str], Awaitable[None]]:
    """Poll a condition the server reaches a loop iteration or two later (a closed socket)."""
    return _wait_until
