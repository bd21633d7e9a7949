"""Timeouts, cancellation and early exits terminate the remote command and keep the pool whole."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from blockbuster import blockbuster_ctx

from hookbridge.adapters.winrm import CommandTimeout, WinRMAdapter
from hookbridge.testing import WSManTestServer, serve_in_thread

pytestmark = pytest.mark.anyio

Connect = Callable[..., str]


def quiet(server: WSManTestServer) -> None:
    """Nothing runs on the emulator and no command is left in a shell but finished ones."""
    stats = server.statistics()
    assert stats.commands_running == 0, stats
    assert all(record.state != "running" for record in server.commands)


async def test_timeout_terminates_and_the_shell_is_reused(
    server: WSManTestServer, connect: Connect
) -> None:
    async with WinRMAdapter(connect(server)) as winrm:
        started = anyio.current_time()
        with pytest.raises(CommandTimeout) as caught:
            await winrm.run("echo begun & hang", timeout=0.5)
        elapsed = anyio.current_time() - started
        error = caught.value
        assert error.terminated and error.result.stdout == "begun\r\n"
        assert error.result.exit_code == -1 and "timeout=0.5 s" in str(error)
        assert 0.5 <= elapsed < 2.0  # the Receive in flight came back on the terminate
        quiet(server)
        assert server.commands[0].state == "terminated"
        assert server.statistics().commands_terminated == 1
        assert (await winrm.run("echo next")).stdout == "next\r\n"
        assert server.statistics().shells_created == 1  # the same shell ran the next command
        assert winrm.statistics().pool.terminated == 1


async def test_cancellation_terminates_and_the_shell_is_reused(
    server: WSManTestServer, connect: Connect
) -> None:
    async with WinRMAdapter(connect(server)) as winrm:
        with anyio.move_on_after(0.3) as scope:
            await winrm.run("hang")
        assert scope.cancelled_caught
        quiet(server)
        assert server.statistics().commands_terminated == 1
        assert (await winrm.run("echo again")).stdout == "again\r\n"
        assert server.statistics().shells_created == 1
        pool = winrm.statistics().pool.pool
        assert (pool.in_use, pool.idle, pool.discarded) == (0, 1, 0)


async def test_leaving_a_stream_early_terminates_the_command(
    server: WSManTestServer, connect: Connect
) -> None:
    async with WinRMAdapter(connect(server), stream_buffer=1) as winrm:
        async with winrm.stream("lines 100000") as output:
            async for chunk in output:
                assert chunk.data.startswith(b"line 1\r\n")
                break
        quiet(server)
        assert server.commands[0].terminated
        assert server.commands[0].stdout_bytes < 2_000_000  # held back, not run to its end
        assert (await winrm.run("echo fine")).stdout == "fine\r\n"


async def test_cancellation_at_random_points_leaves_nothing(
    server: WSManTestServer, connect: Connect
) -> None:
    rng = random.Random(11)
    async with WinRMAdapter(connect(server), max_shells=3) as winrm:

        async def one(i: int) -> None:
            with anyio.move_on_after(rng.uniform(0, 0.3)):
                await winrm.run(rng.choice(["hang", "sleep 0.1", "lines 50 0.01", "cat"]))

        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(one, i)
        quiet(server)
        pool = winrm.statistics().pool.pool
        assert pool.in_use == 0 and pool.waiting == 0
        assert server.statistics().shells_open <= 3
        # the pool still works after all that
        async with winrm.map(winrm.run, [f"echo {i}" for i in range(6)]) as results:
            assert [r.stdout async for r in results] == [f"{i}\r\n" for i in range(6)]
    stats = server.statistics()
    assert (stats.shells_open, stats.commands_open, stats.commands_running) == (0, 0, 0)


async def test_a_failed_terminate_replaces_the_shell(
    server: WSManTestServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = connect(server)
    async with WinRMAdapter(conn_id, cleanup_timeout=0.5) as winrm:
        await winrm.run("echo first")
        (first_shell,) = server.open_shells()

        async def lock_out() -> None:
            # Once the command runs, the server stops accepting this user: the terminate that
            # the cancellation sends cannot get through.
            await anyio.sleep(0.15)
            server.users[server.user] = "changed-password-now"

        async with anyio.create_task_group() as tg:
            tg.start_soon(lock_out)
            with anyio.move_on_after(0.3):
                await winrm.run("sleep 0.6")
        server.users[server.user] = server.password
        assert winrm.statistics().pool.terminated == 0
        result = await winrm.run("echo replaced")
        assert result.stdout == "replaced\r\n"
        assert first_shell not in server.open_shells()  # Deleted before the next command
        quiet(server)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_no_blocking_call_on_the_event_loop(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator serves from a thread, so that only the adapter runs on this loop.
    with serve_in_thread(password="Winrm-Pa55word-for-tests") as server:
        conn_id = connect(server)
        # Opened first: the connection lookup is Airflow's async path (the core's business).
        async with WinRMAdapter(conn_id, max_shells=2) as winrm:
            with blockbuster_ctx(scanned_modules=["hookbridge", "winrm", "requests", "urllib3"]):
                commands = ["echo a", "lines 3 0.05", "bytes 300000"]
                async with winrm.map(winrm.run, commands) as results:
                    outputs: list[Any] = [r.stdout async for r in results]
                with anyio.move_on_after(0.2):
                    await winrm.run("hang")
                assert (await winrm.check()).ok
                await winrm.aclose()  # closing deletes the shells: off the loop too
        assert outputs[0] == "a\r\n"
        quiet(server)
