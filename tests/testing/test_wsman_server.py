"""The WS-Management emulator answers pywinrm and the WinRMHook as a Windows host would."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
import pytest
from airflow.providers.microsoft.winrm.hooks.winrm import WinRMHook
from airflow.providers.microsoft.winrm.triggers.winrm import WinRMCommandOutputTrigger
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WSManFaultError
from winrm.protocol import Protocol

from hookbridge.testing import WSManTestServer, expected_sha256, serve_in_thread
from hookbridge.testing._wsman_shell import decode_powershell, parse_steps

pytestmark = pytest.mark.anyio
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """pywinrm blocks: run it on a worker thread so the emulator's loop keeps serving."""
    return await anyio.to_thread.run_sync(fn, *args)


def connect(
    server: WSManTestServer, monkeypatch: pytest.MonkeyPatch, conn_id: str = "wsman", **options: Any
) -> WinRMHook:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(server.airflow_connection(**options))
    )
    return WinRMHook(ssh_conn_id=conn_id)


@pytest.fixture
async def server() -> AsyncIterator[WSManTestServer]:
    async with WSManTestServer(max_shells_per_user=3) as server:
        yield server


def drain(protocol: Protocol, shell_id: str, command_id: str) -> tuple[list[bytes], bytes, int]:
    """Receive until Done; the non-empty stdout chunks as they came, stderr, exit code."""
    chunks: list[bytes] = []
    stderr = b""
    while True:
        try:
            out, err, code, done = protocol.get_command_output_raw(shell_id, command_id)
        except WinRMOperationTimeoutError:
            continue
        if out:
            chunks.append(out)
        stderr += err
        if done:
            return chunks, stderr, code


# -- the provider's hook -------------------------------------------------------------------------


@asyncio_only
async def test_hook_run_gives_output_stderr_exit_code_and_leaves_nothing(
    server: WSManTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = connect(server, monkeypatch)
    code, out, err = await in_thread(hook.run, "echo hello && stderr oops && exit 3")
    assert (code, b"".join(out), b"".join(err)) == (3, b"hello\r\n", b"oops\r\n")
    stats = server.statistics()
    assert (stats.shells_created, stats.shells_deleted, stats.shells_open) == (1, 1, 0)
    assert (stats.commands_started, stats.commands_open, stats.commands_running) == (1, 0, 0)
    assert server.action_counts["Create"] == server.action_counts["Delete"] == 1
    assert server.action_counts["Signal"] == 1
    assert stats.requests == sum(server.action_counts.values())
    assert server.commands[0].exit_code == 3 and server.commands[0].state == "done"


@asyncio_only
async def test_steps_after_a_failed_and_and_are_skipped(
    server: WSManTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = connect(server, monkeypatch)
    code, out, err = await in_thread(hook.run, "nosuch && echo skipped ; echo next")
    assert code == 0
    assert b"".join(out) == b"next\r\n"
    assert b"'nosuch' is not recognized" in b"".join(err)
    code, _, err = await in_thread(hook.run, "lines x")
    assert code == 1
    assert b"lines: N must be an integer >= 0, got 'x'" in b"".join(err)


@asyncio_only
async def test_powershell_encoded_command_is_decoded(
    server: WSManTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = connect(server, monkeypatch)
    script = "Write-Output hello\nWrite-Error bad; exit 4"
    code, out, err = await in_thread(lambda: hook.run(script, ps_path="powershell"))
    assert code == 4
    assert b"".join(out) == b"hello\r\n"
    assert b"".join(err) == b"bad\r\n"
    record = server.commands[-1]
    assert record.script == script
    assert record.command_line.startswith("powershell -encodedcommand ")


def test_powershell_lines_and_steps_parse() -> None:
    encoded = base64.b64encode("echo a; exit 2".encode("utf-16-le")).decode()
    assert decode_powershell(f"pwsh.exe -NoProfile -EncodedCommand {encoded}") == "echo a; exit 2"
    assert decode_powershell('powershell -Command "echo b"') == "echo b"
    assert decode_powershell("echo powershell") is None
    with pytest.raises(ValueError, match="not base64 of UTF-16LE"):
        decode_powershell("powershell -e !!!")
    assert parse_steps("a && b & c;d\r\ne") == [
        ("", "a"),
        ("&&", "b"),
        ("&", "c"),
        (";", "d"),
        ("", "e"),
    ]


@asyncio_only
async def test_provider_deferrable_pieces_and_trigger(
    server: WSManTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = connect(server, monkeypatch)
    shell_id, command_id = await in_thread(hook.run_command, "lines 3 0.1")
    trigger = WinRMCommandOutputTrigger(
        ssh_conn_id="wsman", shell_id=shell_id, command_id=command_id, poll_interval=0.05
    )
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == "success" and payload["return_code"] == 0
    stdout = b"".join(base64.b64decode(chunk) for chunk in payload["stdout"])
    assert stdout == b"line 1\r\nline 2\r\nline 3\r\n"
    assert server.statistics().commands_open == 1  # the trigger leaves the clean-up to its operator
    conn = await in_thread(hook.get_conn)
    await in_thread(conn.cleanup_command, shell_id, command_id)
    await in_thread(conn.close_shell, shell_id)
    stats = server.statistics()
    assert (stats.shells_open, stats.commands_open, stats.commands_terminated) == (0, 0, 0)


# -- pywinrm's Protocol directly -----------------------------------------------------------------


@asyncio_only
async def test_lines_over_time_arrive_in_several_receives(
    server: WSManTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    protocol = await in_thread(connect(server, monkeypatch).get_conn)
    shell_id = await in_thread(protocol.open_shell)
    command_id = await in_thread(protocol.run_command, shell_id, "lines 3 0.2")
    chunks, _, code = await in_thread(drain, protocol, shell_id, command_id)
    assert code == 0
    assert chunks == [b"line 1\r\n", b"line 2\r\n", b"line 3\r\n"]
    await in_thread(protocol.cleanup_command, shell_id, command_id)
    await in_thread(protocol.close_shell, shell_id)


@asyncio_only
async def test_silent_command_times_out_then_terminate_and_delete_clean_up(
    server: WSManTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = connect(server, monkeypatch, operation_timeout_sec=1, read_timeout_sec=3)
    protocol = await in_thread(hook.get_conn)
    shell_id = await in_thread(protocol.open_shell)
    command_id = await in_thread(protocol.run_command, shell_id, "echo started & hang")
    out, _, _, done = await in_thread(protocol.get_command_output_raw, shell_id, command_id)
    assert (out, done) == (b"started\r\n", False)
    with pytest.raises(WinRMOperationTimeoutError):
        await in_thread(protocol.get_command_output_raw, shell_id, command_id)
    stats = server.statistics()
    assert (stats.receive_timeouts, stats.commands_running) == (1, 1)
    await in_thread(protocol.cleanup_command, shell_id, command_id)
    stats = server.statistics()
    assert (stats.commands_terminated, stats.commands_running, stats.commands_open) == (1, 0, 0)
    assert server.commands[0].state == "terminated"
    # A second command in the same shell, then Delete ends a hanging one as well.
    second = await in_thread(protocol.run_command, shell_id, "hang")
    assert server.open_shells() == {shell_id: [second]}
    await in_thread(protocol.close_shell, shell_id)
    stats = server.statistics()
    assert (stats.commands_terminated, stats.commands_running, stats.shells_open) == (2, 0, 0)
    assert server.shell_commands_run() == {shell_id: 2}


@asyncio_only
async def test_stdin_reaches_cat(server: WSManTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    protocol = await in_thread(connect(server, monkeypatch).get_conn)
    shell_id = await in_thread(protocol.open_shell)
    command_id = await in_thread(protocol.run_command, shell_id, "cat")
    await in_thread(protocol.send_command_input, shell_id, command_id, b"abc")
    await in_thread(lambda: protocol.send_command_input(shell_id, command_id, "déf", end=True))
    chunks, _, code = await in_thread(drain, protocol, shell_id, command_id)
    assert (b"".join(chunks), code) == (b"abc" + "déf".encode("cp437"), 0)
    assert server.commands[0].stdin_bytes == 6
    await in_thread(protocol.close_shell, shell_id)


@asyncio_only
async def test_large_output_comes_in_capped_receives_with_a_flat_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    size = 8_000_000
    async with WSManTestServer(max_receive_bytes=32 * 1024, buffer_limit=128 * 1024) as server:
        protocol = await in_thread(connect(server, monkeypatch).get_conn)
        shell_id = await in_thread(protocol.open_shell)
        command_id = await in_thread(protocol.run_command, shell_id, f"bytes {size}")

        def hash_output() -> tuple[str, int, int]:
            digest, total = hashlib.sha256(), 0
            while True:
                out, _, code, done = protocol.get_command_output_raw(shell_id, command_id)
                assert len(out) <= 32 * 1024
                digest.update(out)
                total += len(out)
                if done:
                    return digest.hexdigest(), total, code

        digest, total, code = await in_thread(hash_output)
        assert (digest, total, code) == (expected_sha256(size), size, 0)
        assert server.commands[0].receives >= size // (32 * 1024)
        # the pipe: one 64 KiB block may land on a buffer just under its limit
        assert server.statistics().max_buffered <= 128 * 1024 + 64 * 1024
        await in_thread(protocol.close_shell, shell_id)


@asyncio_only
async def test_shell_quota_is_per_user_and_answered_with_the_real_fault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with WSManTestServer(max_shells_per_user=2, users={"other": "other-secret"}) as server:
        protocol = await in_thread(connect(server, monkeypatch).get_conn)
        shells = [await in_thread(protocol.open_shell) for _ in range(2)]
        with pytest.raises(WSManFaultError) as caught:
            await in_thread(protocol.open_shell)
        assert caught.value.wsman_fault_code == 2150859173
        assert caught.value.code == 500
        assert "maximum number of 2 concurrent shells" in caught.value.reason
        other = connect(server, monkeypatch, "other", login="other", password="other-secret")
        other_protocol = await in_thread(other.get_conn)
        other_shell = await in_thread(other_protocol.open_shell)  # another user's own quota
        await in_thread(protocol.close_shell, shells[0])
        shells[0] = await in_thread(protocol.open_shell)
        for shell_id in shells:
            await in_thread(protocol.close_shell, shell_id)
        await in_thread(other_protocol.close_shell, other_shell)
        stats = server.statistics()
        assert (stats.quota_faults, stats.max_shells_open, stats.shells_open) == (1, 3, 0)


@asyncio_only
async def test_wrong_password_is_401_and_unknown_shell_a_fault(
    server: WSManTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = await in_thread(connect(server, monkeypatch, "bad", password="wrong-password").get_conn)
    with pytest.raises(InvalidCredentialsError):
        await in_thread(bad.open_shell)
    assert server.statistics().auth_failures == 1
    assert server.statistics().shells_created == 0
    protocol = await in_thread(connect(server, monkeypatch).get_conn)
    with pytest.raises(WSManFaultError) as caught:
        await in_thread(protocol.run_command, "NO-SUCH-SHELL", "echo")
    assert caught.value.wsman_fault_code == 2150858843
    assert "shell was not found" in caught.value.reason


@asyncio_only
async def test_shell_environment_working_directory_and_identity(
    server: WSManTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    protocol = await in_thread(connect(server, monkeypatch).get_conn)
    shell_id = await in_thread(
        lambda: protocol.open_shell(
            working_directory="D:\\work", env_vars={"GREETING": "hej"}, codepage=65001
        )
    )
    command_id = await in_thread(
        protocol.run_command, shell_id, "cd & echo %GREETING% ✓ & whoami & hostname"
    )
    chunks, _, code = await in_thread(drain, protocol, shell_id, command_id)
    assert code == 0
    assert b"".join(chunks).decode("utf-8").split("\r\n") == [
        "D:\\work",
        "hej ✓",
        "win-hookbridge\\winrm-user",
        "WIN-HOOKBRIDGE",
        "",
    ]
    await in_thread(protocol.close_shell, shell_id)


@asyncio_only
async def test_tls_with_the_ca_from_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    async with WSManTestServer(tls=True) as server:
        assert server.endpoint.startswith("https://127.0.0.1:")
        hook = connect(server, monkeypatch)
        code, out, _ = await in_thread(hook.run, "hostname")
        assert (code, b"".join(out)) == (0, b"WIN-HOOKBRIDGE\r\n")
        assert server.ca_path is not None and server.ca_path.exists()
        ca_path = server.ca_path
    assert not ca_path.exists()


@asyncio_only
async def test_stop_terminates_what_the_client_left_open(monkeypatch: pytest.MonkeyPatch) -> None:
    async with WSManTestServer() as server:
        protocol = await in_thread(connect(server, monkeypatch).get_conn)
        shell_id = await in_thread(protocol.open_shell)
        await in_thread(protocol.run_command, shell_id, "hang")
        assert server.statistics().commands_running == 1
    assert server.statistics().commands_running == 0
    protocol.transport.close_session()


# -- other ways to run it ------------------------------------------------------------------------


async def test_fixtures_serve_on_both_backends(
    wsman_server: WSManTestServer, winrm_conn_id: str
) -> None:
    code, out, _ = await in_thread(WinRMHook(ssh_conn_id=winrm_conn_id).run, "echo ok")
    assert (code, b"".join(out)) == (0, b"ok\r\n")
    assert wsman_server.statistics().shells_open == 0


def test_serve_in_thread_and_standalone_process(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_in_thread(hostname="THREADED") as server:
        code, out, _ = connect(server, monkeypatch).run("hostname")
        assert (code, b"".join(out)) == (0, b"THREADED\r\n")

    process = subprocess.Popen(
        [sys.executable, "-m", "hookbridge.testing._wsman_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        endpoint = process.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:") and endpoint.endswith("/wsman")
        monkeypatch.setenv(
            "AIRFLOW_CONN_PROC",
            json.dumps(
                {
                    "conn_type": "winrm",
                    "host": "127.0.0.1",
                    "login": "winrm-user",
                    "password": "winrm-test-secret",
                    "extra": {"endpoint": endpoint, "operation_timeout_sec": 2},
                }
            ),
        )
        code, out, _ = WinRMHook(ssh_conn_id="proc").run("lines 2")
        assert (code, b"".join(out)) == (0, b"line 1\r\nline 2\r\n")
        url = endpoint.replace("/wsman", "/hookbridge/statistics")
        with urllib.request.urlopen(url, timeout=10) as response:
            stats = json.load(response)
        assert stats["commands_started"] == 1 and stats["shells_open"] == 0
        assert stats["actions"]["Create"] == 1
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
    assert process.returncode in (0, -15)
