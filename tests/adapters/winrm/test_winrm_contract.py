"""The WinRM adapter runs the SDK's adapter contract against the WS-Management emulator."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hookbridge.adapters.winrm import WinRMAdapter
from hookbridge.testing import WSManTestServer
from hookbridge.testing.contract import AdapterContract, ContractSubject

Connect = Callable[..., str]

PASSWORD = "Winrm-Pa55word-for-tests"  # the conftest's connection password


class TestWinRMContract(AdapterContract):
    @pytest.fixture
    def contract_subject(self, connect: Connect, server: WSManTestServer) -> ContractSubject:
        def held() -> int:
            stats = server.statistics()
            return stats.shells_open + stats.commands_running

        return ContractSubject(
            adapter=WinRMAdapter,
            conn_id=connect(server),
            operation=lambda winrm: winrm.run("echo contract"),
            secrets=[PASSWORD],
            options={"max_shells": 3, "cleanup_timeout": 5.0},
            open_on_server=held,
        )
