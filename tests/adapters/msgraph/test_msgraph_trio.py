"""The Graph adapter is asyncio-only (kiota, httpx, azure-identity): trio is refused up front."""

from __future__ import annotations

import json

import pytest

import hookbridge
from hookbridge import ConfigurationError
from hookbridge.adapters.msgraph import MSGraphAdapter

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)]


async def test_trio_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {"conn_type": "msgraph", "host": "127.0.0.1:9", "login": "c", "password": "p"}
    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_TRIO", json.dumps(connection))
    with pytest.raises(ConfigurationError, match="asyncio-only libraries") as error:
        async with hookbridge.open("graph_trio"):
            pass
    assert "'msgraph'" in str(error.value) and "conn_id 'graph_trio'" in str(error.value)
    with pytest.raises(ConfigurationError, match="asyncio-only libraries"):
        async with MSGraphAdapter("graph_trio"):
            pass
