"""What a failed request means for a command: re-run, reported, never sent twice, nothing left open.

Focused tests of what the reliability suite's storm found (tests/reliability): the emulator's
storm (seeded) strikes the Command and Receive of ``echo storm read|write N``; a seed is picked
for the fate each test needs.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from hookbridge import ConnectFailed, Retry, Throttled, TransportError
from hookbridge.adapters.winrm import ServerFault, WinRMAdapter
from hookbridge.testing import WSManTestServer
from hookbridge.testing._storm import Storm

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

Connect = Callable[..., str]
RETRY = Retry(attempts=3, backoff=0.0)


def strike(
    server: WSManTestServer,
    fates: dict[str, tuple[str, ...]],
    *,
    drop: float = 0.0,
    error: float = 0.0,
) -> Storm:
    """Start a storm whose first attempts of each method for item 0 meet its ``fates`` in turn."""
    for seed in range(100_000):
        storm = Storm(seed, drop=drop, error=error)
        if all(
            storm.fate(method, 0, n + 1) == fate
            for method, wanted in fates.items()
            for n, fate in enumerate(wanted)
        ):
            return server.storm(seed, drop=drop, error=error, throttle=0.0)
    raise AssertionError(f"no seed gives {fates}")


async def no_connection_left(server: WSManTestServer) -> None:
    with anyio.fail_after(5):
        # The server learns of a closed connection a loop iteration later.
        while server.open_connections:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_a_write_whose_command_answer_was_cut_is_reported_not_sent_again(
    server: WSManTestServer, connect: Connect
) -> None:
    storm = strike(server, {"Command:write": ("drop-during",)}, drop=1.0)
    async with WinRMAdapter(connect(server), retry=RETRY) as winrm:
        with pytest.raises(TransportError) as info:
            await winrm.run("echo storm write 0")
    # Sent, then cut: not ConnectFailed, which would claim that nothing reached the server.
    assert not isinstance(info.value, ConnectFailed)
    assert storm.attempts["Command:write", 0] == 1 and storm.applied[0] == 1
    await no_connection_left(server)


async def test_a_write_refused_with_503_is_sent_again_and_runs_once(
    server: WSManTestServer, connect: Connect
) -> None:
    storm = strike(server, {"Command:write": ("503", "ok"), "Receive:write": ("ok",)}, error=0.5)
    async with WinRMAdapter(connect(server), retry=RETRY) as winrm:
        result = await winrm.run("echo storm write 0")
        assert result.stdout.strip() == "storm write 0"
        assert winrm.statistics().throttled == 1
    assert storm.attempts["Command:write", 0] == 2 and storm.applied[0] == 1
    await no_connection_left(server)


async def test_an_idempotent_read_is_run_again_after_its_receive_was_cut(
    server: WSManTestServer, connect: Connect
) -> None:
    storm = strike(
        server, {"Command:read": ("ok", "ok"), "Receive:read": ("drop-during", "ok")}, drop=0.5
    )
    async with WinRMAdapter(connect(server), retry=RETRY) as winrm:
        result = await winrm.run("echo storm read 0", idempotent=True)
        assert result.stdout.strip() == "storm read 0"
        server.storm(storm.seed, drop=0.5, error=0.0, throttle=0.0)  # the same cut again
        with pytest.raises(TransportError):  # without idempotent=True: reported
            await winrm.run("echo storm read 0")
    await no_connection_left(server)


async def test_a_server_side_fault_is_a_retryable_server_fault(
    server: WSManTestServer, connect: Connect
) -> None:
    strike(server, {"Command:read": ("500",)}, error=1.0)
    async with WinRMAdapter(connect(server), retry=Retry.none()) as winrm:
        with pytest.raises(ServerFault) as info:
            await winrm.run("echo storm read 0", idempotent=True)
    assert info.value.status == 500 and info.value.code == 1726
    assert RETRY.retry_on(info.value)


async def test_error_answers_leave_no_connection_open_after_aclose(
    server: WSManTestServer, connect: Connect
) -> None:
    # urllib3 2 closes a pool's connections only when the pool is garbage collected, and an
    # error keeps its response (and pool) alive in a reference cycle: the adapter closes them.
    strike(server, {"Command:read": ("503", "503", "503")}, error=1.0)
    async with WinRMAdapter(connect(server), retry=Retry.none()) as winrm:
        for _ in range(3):
            with pytest.raises(Throttled):
                await winrm.run("echo storm read 0")
    await no_connection_left(server)
    assert server.statistics().shells_open == 0
