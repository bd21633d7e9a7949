"""The Graph adapter runs the SDK's adapter contract against the Graph emulator."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hookbridge.adapters.msgraph import MSGraphAdapter
from hookbridge.testing import GraphTestServer
from hookbridge.testing.contract import AdapterContract, ContractSubject

Connect = Callable[..., str]
SECRET = "graph-client-secret-7f3a9c"  # the conftest's client secret


class TestMSGraphContract(AdapterContract):
    @pytest.fixture
    def contract_subject(self, connect: Connect, graph: GraphTestServer) -> ContractSubject:
        def throttle(seconds: float) -> None:
            graph.throttle(1, 429, retry_after=seconds)

        return ContractSubject(
            adapter=MSGraphAdapter,
            conn_id=connect(),
            operation=lambda api: api.get("users/u-000001", query={"$select": "id"}),
            # The tokens are issued while the contract runs: they are checked by the adapter's
            # own leak test (test_msgraph_requests.py); the client secret is known up front.
            secrets=[SECRET],
            options={"timeout": 5.0, "max_body_size": 1 << 20},
            open_on_server=lambda: graph.open_connections,
            throttle=throttle,
        )
