"""Fixtures of the HTTP adapter tests: the loopback HTTP server and Airflow connections to it.

Connections are real Airflow connections defined the way operators define them without a
deployment: an ``AIRFLOW_CONN_<ID>`` environment variable holding JSON (configuration, not a patch).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from hookbridge.testing._http_server import HTTPTestServer

#: Credentials of the test connections; the secret-leak test looks for them everywhere.
LOGIN = "user"
PASSWORD = "s3cret-Pa55word"
TOKEN = "tok-9f8e7d6c5b4a"

Connect = Callable[..., str]


@pytest.fixture
async def http_server() -> AsyncIterator[HTTPTestServer]:
    """A loopback HTTP API server (until the lead's plugin publishes one)."""
    async with HTTPTestServer(password=PASSWORD) as server:
        yield server


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch, http_server: HTTPTestServer) -> Connect:
    """Define an Airflow connection to ``http_server``: ``conn_id = connect(hookbridge={...})``.

    Keyword ``hookbridge`` is the extra's settings; other keywords go into the extra as well
    (the provider sends them as headers); ``conn_id``, ``login``, ``password`` and ``fields``
    (top-level connection fields) shape the connection itself.
    """

    def define(
        conn_id: str = "api",
        *,
        login: str | None = LOGIN,
        password: str | None = PASSWORD,
        fields: dict[str, Any] | None = None,
        **extra: Any,
    ) -> str:
        conn: dict[str, Any] = {
            "conn_type": "http",
            "host": http_server.host,
            "port": http_server.port,
            "extra": extra,
        }
        if login is not None:
            conn["login"] = login
        if password is not None:
            conn["password"] = password
        conn.update(fields or {})
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return define
