"""The SFTP adapter runs the SDK's adapter contract against the loopback SFTP server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hookbridge.adapters.sftp import SFTPAdapter
from hookbridge.testing._sftp_server import SFTPTestServer
from hookbridge.testing.contract import AdapterContract, ContractSubject

Connect = Callable[..., str]

FILE = "/small/f00000.bin"


class TestSftpContract(AdapterContract):
    @pytest.fixture
    def contract_subject(
        self, connect: Connect, sftp_server: SFTPTestServer, sftp_password: str
    ) -> ContractSubject:
        sftp_server.populate_small(count=1, size=1000)
        return ContractSubject(
            adapter=SFTPAdapter,
            conn_id=connect(),
            # open, read, close: cancellation lands between handle requests too
            operation=lambda sftp: sftp.read_bytes(FILE),
            secrets=[sftp_password],
            options={"max_connections": 2, "operation_timeout": 30.0},
            open_on_server=lambda: sftp_server.connection_count + sftp_server.open_channels,
        )
