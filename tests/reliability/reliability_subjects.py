"""The adapters of the reliability suite: each one's Subject (adapter, server, operations).

An adapter joins every guarantee module by adding a factory to :data:`SUBJECTS`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from hookbridge import Adapter, Outcome, amap
from hookbridge.testing import secret_forms
from hookbridge.testing._storm import STORM_FATES

__all__ = ["ABSURD_RETRY_AFTER", "SUBJECTS", "Subject", "http_subject"]

#: Retry-After values no server should send, each with what the client does with it: 0 raises
#: Throttled at the first answer, None retries under the policy's own back-off.
ABSURD_RETRY_AFTER: list[tuple[str, int | None]] = [
    ("-5", None),  # negative: treated as 0, retried at once
    ("9" * 400, 0),  # too large for a float: never waited for, raised at once
    ("86400000", 0),  # above max_retry_after: raised at once
    ("Wed, 99 Foo 2020 99:99:99 GMT", None),  # garbage date: the policy's own back-off
    ("Thu, 01 Jan 1970 00:00:00 GMT", None),  # in the past: treated as 0
    ("nan", None),
]

# -- subjects -----------------------------------------------------------------------------------


@dataclass
class Subject:
    """One adapter and its loopback server, as the guarantee modules need them."""

    name: str
    adapter: type[Adapter]
    #: A connection to the subject's own server.
    conn_id: str
    #: One idempotent read of item ``i``; returns what identifies it (``i`` itself).
    read: Callable[[Any, int], Awaitable[int]]
    #: One write of item ``i`` (not idempotent); returns ``i``; None when the protocol has none.
    write: Callable[[Any, int], Awaitable[int]] | None
    #: Make the server misbehave at random (seeded): returns the server's per-item counts.
    storm: Callable[..., Any]
    #: Connections (channels, shells, handles) open on the server now.
    open_on_server: Callable[[], int]
    #: A connection id that reaches ``host:port`` (a hostile server) with the same credentials.
    connect_to: Callable[[str, int], str]
    #: Adapter options that bound one attempt to ``seconds``.
    attempt_timeout: Callable[[float], Mapping[str, Any]]
    #: Every secret of the connection: none may show anywhere.
    secrets: Sequence[str] = ()
    #: The server itself, for subject-specific tests.
    server: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Adapter options for the cancellation storm (a pool size, say).
    cancel_options: Mapping[str, Any] = field(default_factory=dict)
    #: The latest moment (seconds) the cancellation storm cuts a fan-out: its rounds stay short
    #: where a whole fan-out of 500 takes long.
    cancel_horizon: float = 0.5
    #: The storm's name for a write request (``storm.attempts[write_method, item]``).
    write_method: str = "POST"
    #: The adapter connects when it opens (SFTP: a wrong host key shows at open), so a server
    #: that never answers fails the open itself rather than each operation.
    connects_at_open: bool = False
    #: The storm fates its server serves (one without a 429 serves that roll as another fate).
    storm_fates: Sequence[str] = STORM_FATES

    def secret_forms(self) -> list[str]:
        return [form for secret in self.secrets for form in secret_forms(secret)]


# HTTP: a password (Basic auth) and an API-key header, on a real Airflow connection.
HTTP_LOGIN = "reliability-user"
HTTP_PASSWORD = "rel/Pa55 w0rd&=+"  # characters that percent- and form-encoding change
HTTP_API_KEY = "key-7Hq2!Zx9#Lm4"


def _http_connection(host: str, port: int) -> dict[str, Any]:
    return {
        "conn_type": "http",
        "host": host,
        "port": port,
        "login": HTTP_LOGIN,
        "password": HTTP_PASSWORD,
        "extra": {"X-Api-Key": HTTP_API_KEY},
    }


@asynccontextmanager
async def http_subject(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Subject]:
    """The HTTP adapter over the loopback HTTP API (its ``/storm/{id}`` endpoint)."""
    from hookbridge.adapters.http import HttpAdapter
    from hookbridge.testing._http_server import HTTPTestServer

    def connect_to(host: str, port: int) -> str:
        monkeypatch.setenv(
            "AIRFLOW_CONN_RELIABILITY_HOSTILE", json.dumps(_http_connection(host, port))
        )
        return "reliability_hostile"

    async def read(api: Any, i: int) -> int:
        return int((await api.get(f"/storm/{i}")).json()["id"])

    async def write(api: Any, i: int) -> int:
        return int((await api.post(f"/storm/{i}", json={"value": i})).json()["id"])

    async with HTTPTestServer(
        user=HTTP_LOGIN, password=HTTP_PASSWORD, log_requests=False, items=10**9
    ) as server:
        monkeypatch.setenv(
            "AIRFLOW_CONN_RELIABILITY_HTTP", json.dumps(_http_connection(server.host, server.port))
        )
        yield Subject(
            name="http",
            adapter=HttpAdapter,
            conn_id="reliability_http",
            read=read,
            write=write,
            storm=server.storm,
            open_on_server=lambda: server.open_connections,
            connect_to=connect_to,
            attempt_timeout=lambda seconds: {"timeout": seconds},
            secrets=(HTTP_PASSWORD, HTTP_API_KEY, _basic_token(HTTP_LOGIN, HTTP_PASSWORD)),
            server=server,
        )


def _basic_token(login: str, password: str) -> str:
    return base64.b64encode(f"{login}:{password}".encode()).decode()


#: Every adapter of the suite: name -> a context manager giving its Subject.
SUBJECTS: dict[str, Callable[[pytest.MonkeyPatch], AbstractAsyncContextManager[Subject]]] = {
    "http": http_subject,
    "msgraph": lambda mp: __import__("subject_msgraph").msgraph_subject(mp),  # imported lazily
    "sftp": lambda mp: __import__("subject_sftp").sftp_subject(mp),  # imported lazily
    "winrm": lambda mp: __import__("subject_winrm").winrm_subject(mp),  # imported lazily
}


async def timed_reads(
    subject: Subject, api: Any, count: int
) -> tuple[list[Outcome[int, int]], dict[int, float]]:
    """Read items 0..count-1 all at once: every item's outcome, and how long each read took."""
    elapsed: dict[int, float] = {}

    async def timed(i: int) -> int:
        started = anyio.current_time()
        try:
            return await subject.read(api, i)
        finally:
            elapsed[i] = anyio.current_time() - started

    async with amap(timed, range(count), max_at_once=count, on_error="collect") as out:
        return [outcome async for outcome in out], elapsed
