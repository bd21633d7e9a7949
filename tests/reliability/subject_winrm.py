"""The WinRM subject of the reliability suite: the adapter over the WS-Management emulator.

An operation is a command run in a pooled shell (a Command and a Receive at least): a read is
``echo storm read N`` run with ``idempotent=True`` (its output names the item), a write is
``echo storm write N`` run as a command that must not run twice (the emulator logs every command
it starts, and its storm counts each start of a write in ``Storm.applied``). The emulator's
storm strikes those commands' Command and Receive requests; it has no 429 (WinRM has no
Retry-After): that roll is served as the 503 HTTP.sys sends when WinRM is overloaded, see
``hookbridge/testing/_wsman_storm.py``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from reliability_subjects import Subject

__all__ = ["WINRM_LOGIN", "WINRM_PASSWORD", "winrm_only", "winrm_subject"]

WINRM_LOGIN = "reliability-winrm"
WINRM_PASSWORD = "rel/WinRM Pa55&=+w0rd"  # characters that percent- and form-encoding change
# Shells in the pool: commands run one after another in a shell, so this is the parallelism.
MAX_SHELLS = 8


def _connection(host: str, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "conn_type": "winrm",
        "host": host,
        "login": WINRM_LOGIN,
        "password": WINRM_PASSWORD,
        "extra": {
            "endpoint": f"http://{host}:{port}/wsman",
            "transport": "plaintext",
            "operation_timeout_sec": 1,
            "read_timeout_sec": 5,
            **extra,
        },
    }


async def _read(api: Any, i: int) -> int:
    result = await api.run("echo", "storm", "read", str(i), idempotent=True)
    return int(result.stdout.split()[-1])


async def _write(api: Any, i: int) -> int:
    result = await api.run("echo", "storm", "write", str(i))
    return int(result.stdout.split()[-1])


@asynccontextmanager
async def winrm_subject(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Subject]:
    """The WinRM adapter over the WS-Management emulator (Basic auth over plain HTTP)."""
    # Imported here: reliability_subjects imports this module to list it in SUBJECTS.
    from reliability_subjects import Subject

    from hookbridge.adapters.winrm import WinRMAdapter
    from hookbridge.testing import WSManTestServer

    def connect_to(host: str, port: int) -> str:
        monkeypatch.setenv(
            "AIRFLOW_CONN_RELIABILITY_WINRM_HOSTILE", json.dumps(_connection(host, port))
        )
        return "reliability_winrm_hostile"

    def open_on_server() -> int:
        stats = server.statistics()
        return stats.shells_open + stats.commands_open + server.open_connections

    async with WSManTestServer(
        user=WINRM_LOGIN, password=WINRM_PASSWORD, max_shells_per_user=4 * MAX_SHELLS
    ) as server:
        conn = _connection(
            server.host, server.port, hookbridge={"pool": {"max_shells": MAX_SHELLS}}
        )
        monkeypatch.setenv("AIRFLOW_CONN_RELIABILITY_WINRM", json.dumps(conn))
        basic = base64.b64encode(f"{WINRM_LOGIN}:{WINRM_PASSWORD}".encode()).decode()
        yield Subject(
            name="winrm",
            adapter=WinRMAdapter,
            conn_id="reliability_winrm",
            read=_read,
            write=_write,
            storm=server.storm,
            open_on_server=open_on_server,
            connect_to=connect_to,
            attempt_timeout=lambda seconds: {"request_timeout": seconds},
            secrets=(WINRM_PASSWORD, basic),
            server=server,
            cancel_horizon=0.15,
            storm_fates=("drop-before", "drop-during", "drop-after", "500", "503"),
            write_method="Command:write",
        )


@pytest.fixture
async def winrm_only(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Subject]:
    """The WinRM subject alone, for the WinRM-only modules (not parametrized over SUBJECTS)."""
    async with winrm_subject(monkeypatch) as subject:
        yield subject
