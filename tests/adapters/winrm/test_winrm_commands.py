"""WinRM adapter commands: output, exit codes, PowerShell, stdin, streams, shell reuse."""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import hookbridge
from hookbridge.adapters.winrm import CommandFailed, OutputChunk, WinRMAdapter
from hookbridge.testing import WSManTestServer, expected_sha256

pytestmark = pytest.mark.anyio

Connect = Callable[..., str]
Emulator = Callable[..., Any]


async def test_run_returns_exit_code_stdout_and_stderr(
    server: WSManTestServer, connect: Connect
) -> None:
    async with WinRMAdapter(connect(server)) as winrm:
        result = await winrm.run("echo hello", "world", "&& stderr careful")
        assert (result.exit_code, result.stdout, result.stderr) == (
            0,
            "hello world\r\n",
            "careful\r\n",
        )
        assert result.stdout_bytes == b"hello world\r\n"
        assert result.command == "echo hello world && stderr careful"

        with pytest.raises(CommandFailed) as caught:
            await winrm.run("stderr no such file & exit 2")
        error = caught.value
        assert error.code == 2 and error.result.exit_code == 2
        assert error.result.stderr == "no such file\r\n"
        assert "exited with code 2" in str(error) and "no such file" in str(error)
        assert "conn_id 'winrm_test'" in str(error)

        result = await winrm.run("exit 7", check=False)
        assert result.exit_code == 7 and not result.ok


async def test_output_is_decoded_with_the_configured_encoding(
    server: WSManTestServer, connect: Connect
) -> None:
    async with WinRMAdapter(connect(server)) as winrm:  # code page 65001, utf-8
        assert (await winrm.run("echo Grüße ✓")).stdout == "Grüße ✓\r\n"
    async with WinRMAdapter(connect(server), codepage=437, encoding="cp437") as winrm:
        result = await winrm.run("echo Grüße")
        assert result.stdout == "Grüße\r\n"
        assert result.stdout_bytes == "Grüße\r\n".encode("cp437")


async def test_powershell_script_is_sent_encoded(server: WSManTestServer, connect: Connect) -> None:
    script = "Write-Output 'quoted';\nWrite-Error oops; exit 3"
    async with WinRMAdapter(connect(server)) as winrm:
        result = await winrm.run(script, powershell=True, check=False)
    assert result.exit_code == 3
    assert result.stdout == "'quoted'\r\n" and result.stderr == "oops\r\n"
    record = server.commands[-1]
    assert record.command_line.startswith("powershell -NoProfile -NonInteractive -EncodedCommand ")
    assert record.script == script


async def test_stdin_is_sent_and_closed(server: WSManTestServer, connect: Connect) -> None:
    async with WinRMAdapter(connect(server)) as winrm:
        assert (await winrm.run("cat", stdin="line one\nline two\n")).stdout == (
            "line one\nline two\n"
        )
        assert (await winrm.run("cat", stdin=b"")).stdout == ""
    assert server.commands[0].stdin_bytes == len("line one\nline two\n")


async def test_stream_yields_tagged_chunks_as_they_arrive(
    server: WSManTestServer, connect: Connect
) -> None:
    async with WinRMAdapter(connect(server)) as winrm:
        seen: list[tuple[OutputChunk, int]] = []
        async with winrm.stream("lines 3 0.2 & stderr done") as output:
            async for chunk in output:
                seen.append((chunk, server.commands[-1].receives))
            assert output.exit_code == 0
    assert [chunk for chunk, _ in seen] == [
        OutputChunk("stdout", b"line 1\r\n"),
        OutputChunk("stdout", b"line 2\r\n"),
        OutputChunk("stdout", b"line 3\r\n"),
        OutputChunk("stderr", b"done\r\n"),
    ]
    # each line came in its own Receive, before the command had ended
    assert [receives for _, receives in seen[:3]] == [1, 2, 3]


# tracemalloc slows this down several times: one backend is enough (under trio the emulator runs
# in a thread of this process, so its buffers count too).
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_twenty_megabytes_stream_with_flat_memory(
    emulator: Emulator, connect: Connect
) -> None:
    size = 20 * 1024 * 1024
    async with emulator() as server, WinRMAdapter(connect(server)) as winrm:
        digest, received = hashlib.sha256(), 0
        tracemalloc.start()
        try:
            async with winrm.stream(f"bytes {size}") as output:
                async for chunk in output:
                    digest.update(chunk.data)
                    received += len(chunk.data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert output.exit_code == 0
        assert (received, digest.hexdigest()) == (size, expected_sha256(size))
        # client and emulator together: a few buffers of 64 KiB, not the 20 MiB
        assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
        assert server.statistics().max_buffered <= server.buffer_limit + 64 * 1024


async def test_commands_reuse_one_shell_and_cost_two_requests(
    server: WSManTestServer, connect: Connect
) -> None:
    async with WinRMAdapter(connect(server)) as winrm:
        server.clear()
        for i in range(10):
            assert (await winrm.run(f"echo {i}")).stdout == f"{i}\r\n"
        stats = server.statistics()
        assert stats.shells_created == 1
        assert list(server.shell_commands_run().values()) == [10]
        assert stats.requests == 1 + 10 * 2  # one Create, then Command + Receive each
    stats = server.statistics()
    assert (stats.shells_open, stats.commands_open, stats.commands_running) == (0, 0, 0)


async def test_shells_are_replaced_after_commands_per_shell(
    server: WSManTestServer, connect: Connect
) -> None:
    async with WinRMAdapter(connect(server), commands_per_shell=3) as winrm:
        for i in range(7):
            await winrm.run(f"echo {i}")
        assert server.statistics().commands_open <= 3  # Delete released the finished ones
    assert sorted(server.shell_commands_run().values()) == [1, 3, 3]
    assert server.statistics().shells_open == 0


async def test_working_directory_and_env_get_a_shell_of_their_own(
    server: WSManTestServer, connect: Connect
) -> None:
    async with WinRMAdapter(connect(server), max_shells=1) as winrm:
        await winrm.run("echo plain")
        result = await winrm.run(
            "cd & echo %GREETING%", working_directory="D:\\jobs", env={"GREETING": "hej"}
        )
        assert result.stdout == "D:\\jobs\r\nhej\r\n"
        again = await winrm.run(
            "echo %GREETING%", working_directory="D:\\jobs", env={"GREETING": "hej"}
        )
        assert again.stdout == "hej\r\n"
        assert (await winrm.run("cd")).stdout == "C:\\Users\\winrm-user\r\n"
    # plain, custom (reused once), plain again: three shells, never two at once
    stats = server.statistics()
    assert (stats.shells_created, stats.max_shells_open, stats.shells_open) == (3, 1, 0)


async def test_fifty_concurrent_commands_stay_within_the_shell_quota(
    emulator: Emulator, connect: Connect
) -> None:
    async with emulator(max_shells_per_user=5) as server:
        async with WinRMAdapter(connect(server), max_shells=5) as winrm:
            started = time.monotonic()
            commands = [f"sleep 0.2 & echo {i}" for i in range(50)]
            async with winrm.map(winrm.run, commands) as results:
                outputs = [result.stdout async for result in results]
            elapsed = time.monotonic() - started
            assert outputs == [f"{i}\r\n" for i in range(50)]
            pool = winrm.statistics().pool
            assert pool.pool.created == 5 and pool.shells_opened == 5
        stats = server.statistics()
        assert stats.quota_faults == 0 and stats.max_shells_open == 5
        assert stats.shells_created == 5 and stats.commands_started == 50
        assert stats.shells_open == 0
        assert elapsed < 50 * 0.2  # in parallel over the five shells (10 rounds of 0.2 s)


async def test_registry_opens_it_for_a_winrm_connection(
    server: WSManTestServer, connect: Connect
) -> None:
    async with hookbridge.open(connect(server)) as adapter:
        assert isinstance(adapter, WinRMAdapter)
        assert (await adapter.run("hostname")).stdout == "WIN-HOOKBRIDGE\r\n"


async def test_check_opens_and_closes_a_shell(server: WSManTestServer, connect: Connect) -> None:
    async with WinRMAdapter(connect(server)) as winrm:
        await winrm.run("echo warm")
        result = await winrm.check()
        assert result.ok, result
        assert "WIN-HOOKBRIDGE" in result.detail and server.endpoint in result.detail
        assert server.statistics().shells_open == 0  # the probe's shell is gone, and the old one
        assert (await winrm.run("echo after")).stdout == "after\r\n"


async def test_map_keeps_the_event_loop_ticking(server: WSManTestServer, connect: Connect) -> None:
    gaps: list[float] = []

    async def tick() -> None:
        last = anyio.current_time()
        while True:
            await anyio.sleep(0.01)
            now = anyio.current_time()
            gaps.append(now - last)
            last = now

    async with (
        WinRMAdapter(connect(server), max_shells=5) as winrm,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(tick)
        async with winrm.map(winrm.run, ["sleep 0.5"] * 10 + ["bytes 2000000"] * 5) as results:
            async for _ in results:
                pass
        tg.cancel_scope.cancel()
    assert len(gaps) > 50
    assert max(gaps) < 0.25, f"the loop stalled for {max(gaps):.3f} s"
