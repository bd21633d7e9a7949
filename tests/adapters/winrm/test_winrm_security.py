"""WinRM adapter: authentication, secrets, configuration errors, TLS, lifecycle, spec, quota."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import hookbridge
from hookbridge import (
    AdapterClosed,
    ConfigurationError,
    ConnectFailed,
    PermissionDenied,
    UsageError,
)
from hookbridge.adapters.winrm import (
    CommandFailed,
    CommandTimeout,
    ShellQuotaExceeded,
    WinRMAdapter,
    WinRMAuthenticationError,
)
from hookbridge.testing import WSManTestServer

pytestmark = pytest.mark.anyio

Connect = Callable[..., str]
Emulator = Callable[..., Any]
PASSWORD = "Winrm-Pa55word-for-tests"


async def test_wrong_password_is_a_clear_authentication_error(
    server: WSManTestServer, connect: Connect
) -> None:
    conn_id = connect(server, "winrm_wrong", password="Not-the-Right-Pa55word")
    async with WinRMAdapter(conn_id) as winrm:
        with pytest.raises(WinRMAuthenticationError) as caught:
            await winrm.run("hostname")
        result = await winrm.check()
    error = caught.value
    assert isinstance(error, PermissionDenied) and error.code == 401
    assert "conn_id 'winrm_wrong'" in str(error) and "login and password" in str(error)
    assert "Not-the-Right-Pa55word" not in str(error)
    assert not result.ok and "WinRMAuthenticationError" in result.detail
    assert server.statistics().auth_failures == 2 and server.statistics().shells_created == 0


async def test_secrets_never_in_logs_reprs_errors_or_spec(
    server: WSManTestServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    conn_id = connect(server, pool={"max_shells": 2})
    texts: list[str] = []
    async with WinRMAdapter(conn_id) as winrm:
        texts += [repr(winrm), json.dumps(winrm.spec()), repr(winrm.statistics())]
        result = await winrm.run("echo not-a-secret & stderr warned", check=False)
        texts += [repr(result)]
        for failing in (
            winrm.run("exit 4"),
            winrm.run("hang", timeout=0.2),
        ):
            with pytest.raises((CommandFailed, CommandTimeout)) as caught:
                await failing
            texts += [str(caught.value), repr(caught.value), repr(caught.value.result)]
        texts.append(str(await winrm.check()))
    bad = connect(server, "winrm_bad", password=PASSWORD + "-wrong")
    async with WinRMAdapter(bad) as winrm:
        with pytest.raises(WinRMAuthenticationError) as auth:
            await winrm.run("echo x")
        texts += [str(auth.value), repr(auth.value)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    assert texts
    for text in texts:
        assert PASSWORD not in text
        assert PASSWORD + "-wrong" not in text


async def test_options_from_the_extra_and_bad_values_name_the_field(
    server: WSManTestServer, connect: Connect
) -> None:
    conn_id = connect(server, pool={"max_shells": 2, "commands_per_shell": 4})
    async with WinRMAdapter(conn_id) as winrm:
        assert winrm.options["max_shells"] == 2 and winrm.option_source("max_shells") == "extra"
        assert winrm.statistics().pool.pool.max_size == 2
    bad = connect(server, "winrm_bad_option", pool={"max_shells": 0})
    with pytest.raises(ConfigurationError) as caught:
        async with WinRMAdapter(bad):
            pass
    assert "hookbridge.pool.max_shells" in str(caught.value) and "winrm_bad_option" in str(
        caught.value
    )
    with pytest.raises(ConfigurationError, match="encoding"):
        WinRMAdapter(conn_id, encoding="no-such-codec")
    async with WinRMAdapter(conn_id) as winrm:
        with pytest.raises(UsageError, match="timeout"):
            await winrm.run("echo", timeout=-1)
        with pytest.raises(UsageError, match="command"):
            await winrm.run("  ")
        with pytest.raises(UsageError, match="env"):
            await winrm.run("echo", env={"A": 1})  # type: ignore[dict-item]


async def test_unreachable_endpoint_is_connect_failed(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = {
        "conn_type": "winrm",
        "host": "127.0.0.1",
        "login": "u",
        "password": PASSWORD,
        "extra": {"endpoint": f"http://127.0.0.1:{port}/wsman", "operation_timeout_sec": 1,
                  "read_timeout_sec": 2},
    }  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_WINRM_DOWN", json.dumps(conn))
    async with WinRMAdapter("winrm_down", retry=hookbridge.Retry(attempts=1)) as winrm:
        with pytest.raises(ConnectFailed, match="cannot reach the WinRM endpoint"):
            await winrm.run("echo")
        assert not (await winrm.check()).ok


async def test_missing_connection_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="AIRFLOW_CONN_WINRM_NOWHERE"):
        async with WinRMAdapter("winrm_nowhere"):
            pass
    monkeypatch.setenv("AIRFLOW_CONN_WINRM_NOHOST", json.dumps({"conn_type": "winrm"}))
    with pytest.raises(ConfigurationError, match="remote_host") as caught:
        async with WinRMAdapter("winrm_nohost"):
            pass
    assert "winrm_nohost" in str(caught.value)


async def test_tls_endpoint_with_the_ca_from_the_connection(
    emulator: Emulator, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with emulator(tls=True) as server:
        async with WinRMAdapter(connect(server)) as winrm:
            assert (await winrm.run("hostname")).stdout == "WIN-HOOKBRIDGE\r\n"
        # the same endpoint without its CA: a clear TLS error, not a hang or a retry loop
        conn = server.airflow_connection(password=PASSWORD)
        del conn["extra"]["ca_trust_path"]
        monkeypatch.setenv("AIRFLOW_CONN_WINRM_UNTRUSTED", json.dumps(conn))
        async with WinRMAdapter("winrm_untrusted") as winrm:
            with pytest.raises(ConfigurationError, match="ca_trust_path"):
                await winrm.run("hostname")


async def test_shell_quota_fault_is_its_own_error(emulator: Emulator, connect: Connect) -> None:
    async with emulator(max_shells_per_user=1) as server:
        conn_id = connect(server)
        winrm = WinRMAdapter(conn_id, max_shells=2)
        async with winrm, anyio.create_task_group() as tg:
            tg.start_soon(winrm.run, "sleep 0.5")
            await anyio.sleep(0.2)
            with pytest.raises(ShellQuotaExceeded) as caught:
                await winrm.run("echo second")
        assert caught.value.code == 2150859173
        assert "MaxShellsPerUser" in str(caught.value) and "max_shells" in str(caught.value)
        assert server.statistics().shells_open == 0


async def test_lifecycle_spec_and_reopen(server: WSManTestServer, connect: Connect) -> None:
    conn_id = connect(server)
    winrm = WinRMAdapter(conn_id, max_shells=3, encoding="cp437", codepage=437)
    with pytest.raises(AdapterClosed):
        await winrm.run("echo too early")
    async with winrm:
        spec = winrm.spec()
        assert spec == {
            "adapter": "winrm",
            "conn_id": conn_id,
            "options": {"max_shells": 3, "encoding": "cp437", "codepage": 437},
        }
        async with hookbridge.open_spec(json.loads(json.dumps(spec)), shared=False) as twin:
            assert isinstance(twin, WinRMAdapter) and twin.spec() == spec
            assert (await twin.run("echo twin")).stdout == "twin\r\n"
    with pytest.raises(AdapterClosed):
        async with winrm:
            pass
    with pytest.raises(AdapterClosed):
        await winrm.run("echo after")
    assert server.statistics().shells_open == 0
