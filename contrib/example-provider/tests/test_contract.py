"""The SDK's contract suite run against KeyValueAdapter, plus what is specific to it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from hookbridge_example_provider import KeyValueAdapter
from hookbridge_example_provider.server import KeyValueServer

import hookbridge
from hookbridge.testing.contract import AdapterContract, ContractSubject

PASSWORD = "kv-example-s3cret-password"


@pytest.fixture
async def kv_server() -> AsyncIterator[KeyValueServer]:
    async with KeyValueServer(password=PASSWORD) as server:
        yield server


@pytest.fixture
def kv_conn(kv_server: KeyValueServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_EXAMPLE_KV", json.dumps(kv_server.connection()))
    return "example_kv"


class TestKeyValueContract(AdapterContract):
    @pytest.fixture
    def contract_subject(self, kv_server: KeyValueServer, kv_conn: str) -> ContractSubject:
        return ContractSubject(
            adapter=KeyValueAdapter,
            conn_id=kv_conn,
            operation=lambda kv: kv.get("answer"),
            secrets=[PASSWORD],
            options={"timeout": 5.0},
            open_on_server=lambda: kv_server.open_connections,
            throttle=kv_server.busy_next,
            cancellation_rounds=10,
        )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_entry_point_registers_it_for_its_conn_type(kv_conn: str) -> None:
    assert hookbridge.get_adapter(conn_type="kv") is KeyValueAdapter
    async with hookbridge.open(kv_conn) as kv:
        assert isinstance(kv, KeyValueAdapter)
        await kv.set("greeting", {"text": "hello"})
        assert await kv.get("greeting") == {"text": "hello"}
        with pytest.raises(hookbridge.NotFound, match="no such key"):
            await kv.get("nothing-here")
