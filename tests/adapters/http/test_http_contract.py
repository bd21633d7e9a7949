"""The HTTP adapter runs the SDK's adapter contract against the loopback HTTP server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hookbridge.adapters.http import HttpAdapter
from hookbridge.testing._http_server import HTTPTestServer
from hookbridge.testing.contract import AdapterContract, ContractSubject

Connect = Callable[..., str]

PASSWORD = "s3cret-Pa55word"  # the conftest's connection password
API_KEY = "an-api-key-secret"


class TestHttpContract(AdapterContract):
    @pytest.fixture
    def contract_subject(self, connect: Connect, http_server: HTTPTestServer) -> ContractSubject:
        conn_id = connect(**{"X-Api-Key": API_KEY})

        def throttle(seconds: float) -> None:
            http_server.throttle(1, retry_after=seconds)

        return ContractSubject(
            adapter=HttpAdapter,
            conn_id=conn_id,
            operation=lambda api: api.get("/items/1"),
            secrets=[PASSWORD, API_KEY],
            options={"max_connections": 8, "timeout": 5.0},
            open_on_server=lambda: http_server.open_connections,
            throttle=throttle,
        )
