"""Under trio the HTTP adapter (aiohttp is asyncio-only) refuses to open, with a clear error."""

from __future__ import annotations

import json

import pytest

from hookbridge import ConfigurationError
from hookbridge.adapters.http import HttpAdapter

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)]


async def test_opening_under_trio_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TRIOAPI", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9})
    )
    api = HttpAdapter("trioapi")
    with pytest.raises(ConfigurationError, match=r"asyncio-only.*cannot run under trio") as info:
        async with api:
            pass
    assert info.value.conn_id == "trioapi"
