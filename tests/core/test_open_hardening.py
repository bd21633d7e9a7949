"""hookbridge.open under trio and without ``async with``: clear errors, and lookups that work."""

from __future__ import annotations

import json
from typing import Any

import pytest

import hookbridge
from hookbridge import ConfigurationError, UsageError
from hookbridge.adapter import Adapter, Option, positive_seconds

pytestmark = pytest.mark.anyio


class Widget(Adapter):
    """An adapter over no asyncio-only library: it runs on trio as well as on asyncio."""

    name = "widget-open-hardening"
    conn_types = ("widget_open_hardening",)
    declared_options = (Option("timeout", positive_seconds, default=30.0),)

    def __init__(self, conn_id: str, *, timeout: float | None = None, **common: Any) -> None:
        super().__init__(conn_id, timeout=timeout, **common)
        self.address = ""

    async def _open(self) -> None:
        conn = await self._connection()
        self.address = f"{conn.host}:{conn.port}"


@pytest.fixture(autouse=True)
def _registered() -> None:
    hookbridge.register(Widget, replace=True)


def _define(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn: dict[str, Any]) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


async def test_an_adapter_looks_its_connection_up_on_either_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn_id = _define(
        monkeypatch,
        "widget_conn",
        {
            "conn_type": "widget_open_hardening",
            "host": "widgets.example",
            "port": 8443,
            "extra": {"hookbridge": {"timeout": 2.5}},
        },
    )
    # Chosen by conn_type (a lookup before the adapter exists), then opened (a second one).
    async with hookbridge.open(conn_id) as widget:
        assert isinstance(widget, Widget)
        assert widget.address == "widgets.example:8443"
        assert widget.options["timeout"] == 2.5
        assert widget.option_source("timeout") == "extra"


async def test_an_undefined_connection_is_named_on_either_backend() -> None:
    with pytest.raises(ConfigurationError, match="not defined") as info:
        async with hookbridge.open("widget_nowhere", adapter=Widget):
            pass
    assert info.value.conn_id == "widget_nowhere"
    assert "AIRFLOW_CONN_WIDGET_NOWHERE" in str(info.value)


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_an_http_connection_under_trio_says_asyncio_only_not_undefined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn_id = _define(
        monkeypatch, "trio_http", {"conn_type": "http", "host": "127.0.0.1", "port": 9}
    )
    with pytest.raises(ConfigurationError) as info:
        async with hookbridge.open(conn_id):
            pass
    message = str(info.value)
    assert "asyncio-only" in message and "cannot run under trio" in message
    assert "not defined" not in message
    assert info.value.conn_id == conn_id


async def test_an_adapter_method_on_open_itself_says_to_use_async_with() -> None:
    opening = hookbridge.open("anything")
    with pytest.raises(UsageError) as info:
        opening.get("/items/1")  # type: ignore[attr-defined]
    message = str(info.value)
    assert "async with hookbridge.open('anything') as api:" in message
    assert "api.get(...)" in message
    assert info.value.argument == "get"
    # Still an AttributeError for code that probes with hasattr/getattr.
    assert not hasattr(opening, "stream")
    assert getattr(opening, "stream", None) is None
