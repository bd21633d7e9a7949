"""The Microsoft Graph adapter as a reliability subject, over the loopback Graph emulator.

A real Airflow ``msgraph`` connection (``AIRFLOW_CONN_RELIABILITY_MSGRAPH``) read by the
provider's ``KiotaRequestAdapterHook`` settings; tokens come from the emulator's TLS token
endpoint. The storm (``hookbridge.testing._graph_storm``) strikes real Graph resources:

- read of item ``i``: ``GET users/u-{i:06d}?$select=id`` (the directory computes users from their
  index, so a million of them cost nothing);
- write of item ``i``: ``POST users`` creating the user ``storm-{i}@...``: not idempotent, so the
  adapter retries it only when Graph cannot have acted on it (throttled, never connected).

Secrets: the client secret and every bearer token the emulator issued (tokens are issued during
the run, so :data:`Subject.secrets` is read live from the server).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, overload

import pytest
from reliability_subjects import Subject

from hookbridge.testing._graph_storm import storm_user

__all__ = ["GRAPH_CLIENT_SECRET", "graph_subject", "msgraph_subject"]

# Characters that percent- and form-encoding change, as real Entra ID secrets have (~ . _ -).
GRAPH_CLIENT_SECRET = "rel~Gr4ph.s3cret_+/= &x"
#: Users in the emulated directory: every read item exists (computed, not stored).
USERS = 10**6


class _LiveSecrets(Sequence[str]):
    """The client secret and every token issued so far, read when asked (tokens come later)."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def _now(self) -> list[str]:
        return [self._server.login.client_secret, *self._server.issued_tokens]

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._now()[index]

    def __len__(self) -> int:
        return len(self._now())

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())


@asynccontextmanager
async def msgraph_subject(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Subject]:
    """The Graph adapter over the Graph emulator (storm on user reads and user creation)."""
    from hookbridge.adapters.msgraph import MSGraphAdapter
    from hookbridge.testing import GraphTestServer

    async def read(api: Any, i: int) -> int:
        user = await api.get(f"users/u-{i:06d}", query={"$select": "id"})
        return int(user["id"].removeprefix("u-"))

    async def write(api: Any, i: int) -> int:
        user = await api.request("POST", "users", json_body=storm_user(i))
        return int(user["userPrincipalName"].removeprefix("storm-").partition("@")[0])

    async with GraphTestServer(
        users=USERS, client_secret=GRAPH_CLIENT_SECRET, log_requests=False
    ) as server:

        def connect_to(host: str, port: int) -> str:
            # Same tenant, client, secret and token endpoint; Graph requests go to host:port.
            conn = server.airflow_connection()
            conn["host"] = f"{host}:{port}"
            monkeypatch.setenv("AIRFLOW_CONN_RELIABILITY_MSGRAPH_HOSTILE", json.dumps(conn))
            return "reliability_msgraph_hostile"

        monkeypatch.setenv(
            "AIRFLOW_CONN_RELIABILITY_MSGRAPH", json.dumps(server.airflow_connection())
        )
        yield Subject(
            name="msgraph",
            adapter=MSGraphAdapter,
            conn_id="reliability_msgraph",
            read=read,
            write=write,
            storm=server.storm,
            open_on_server=lambda: server.open_connections,
            connect_to=connect_to,
            attempt_timeout=lambda seconds: {"timeout": seconds},
            secrets=_LiveSecrets(server),
            server=server,
            # A whole fan-out of 500 Graph reads takes ~2 s here (kiota's middleware per request):
            # rounds cut within 0.2 s keep the 100 rounds inside the suite's time budget.
            cancel_horizon=0.2,
        )


@pytest.fixture
async def graph_subject(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Subject]:
    """The Graph subject alone, for the Graph-only modules (not parametrized over SUBJECTS)."""
    async with msgraph_subject(monkeypatch) as subject:
        yield subject
