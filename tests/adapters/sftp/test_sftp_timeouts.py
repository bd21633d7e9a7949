"""A server that stops answering: every operation times out, and cancelling returns promptly.

On virtual time (``mock_clock``): the loopback server runs in the test's event loop, so when it
stalls nothing is left to do but wait, and the clock jumps to the next deadline.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from hookbridge import Retry, TransportError
from hookbridge.adapters.sftp import SFTPAdapter
from hookbridge.testing._sftp_server import SFTPTestServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

PATH = "/small/f00000.bin"


async def _listed(sftp: SFTPAdapter, path: str) -> list[str]:
    return [entry.name async for entry in sftp.listdir(path)]


async def _streamed(sftp: SFTPAdapter, path: str) -> bytes:
    async with sftp.open(path) as file:
        return await file.read()


@pytest.mark.usefixtures("mock_clock")
async def test_each_operation_on_a_stalled_server_fails_naming_itself_and_the_path(
    sftp_server: SFTPTestServer, conn_id: str, tmp_path: Path
) -> None:
    sftp_server.populate_small(count=1, size=100)
    operations: list[tuple[str, str, Callable[[SFTPAdapter], Awaitable[object]]]] = [
        ("stat", PATH, lambda sftp: sftp.stat(PATH)),
        ("read", PATH, lambda sftp: sftp.read_bytes(PATH)),
        ("download", PATH, lambda sftp: sftp.download(PATH, tmp_path / "f.bin")),
        ("upload", "/up.bin", lambda sftp: sftp.write_bytes("/up.bin", b"data")),
        ("listdir", "/small", lambda sftp: _listed(sftp, "/small")),
        ("makedirs", "/a/b", lambda sftp: sftp.makedirs("/a/b")),
        ("open", PATH, lambda sftp: _streamed(sftp, PATH)),
    ]
    async with SFTPAdapter(conn_id, retry=Retry.none()) as sftp:
        assert sftp.options["operation_timeout"] == 60.0  # the default
        for name, path, operation in operations:
            sftp_server.resume()
            await sftp.stat("/")  # a live connection to stall on
            sftp_server.stall()
            started = anyio.current_time()
            with pytest.raises(TransportError) as caught:
                await operation(sftp)
            waited = anyio.current_time() - started
            message = str(caught.value)
            assert f"{name} of {path!r}" in message, message
            assert "operation_timeout" in message
            assert conn_id in message
            # An upload also tries, for CLEANUP_TIMEOUT (5 s), to remove its temporary file.
            assert 60.0 <= waited < (66.0 if name == "upload" else 61.0), (name, waited)
        sftp_server.resume()
    assert os.listdir(tmp_path) == []  # the download left no temporary file


@pytest.mark.usefixtures("mock_clock")
async def test_a_stalled_file_read_times_out_and_the_option_comes_from_the_extra(
    sftp_server: SFTPTestServer, connect: Callable[..., str]
) -> None:
    sftp_server.populate_small(count=1, size=100)
    conn_id = connect(hookbridge={"operation_timeout": 5})
    async with SFTPAdapter(conn_id, retry=Retry.none()) as sftp:
        assert sftp.option_source("operation_timeout") == "extra"
        async with sftp.open(PATH) as file:
            assert await file.read(10) == (sftp_server.root / PATH[1:]).read_bytes()[:10]
            sftp_server.stall()
            started = anyio.current_time()
            with pytest.raises(TransportError, match=r"read of '/small/f00000.bin'.* 5 s"):
                await file.read()
            assert 5.0 <= anyio.current_time() - started < 6.0
            sftp_server.resume()


@pytest.mark.usefixtures("mock_clock")
async def test_a_long_transfer_that_keeps_answering_is_not_cut_off(
    sftp_server: SFTPTestServer, conn_id: str
) -> None:
    # The timeout is on silence: a slow server that answers every 0.4 s goes on for 4 s.
    name = await anyio.to_thread.run_sync(sftp_server.populate_large, "large.bin", 10 * 32 * 1024)
    async with SFTPAdapter(conn_id, operation_timeout=1, block_size=32 * 1024) as sftp:
        sftp_server.read_delay = 0.4
        started = anyio.current_time()
        data = await sftp.read_bytes("/" + name)
        assert anyio.current_time() - started >= 4.0
        assert data == (sftp_server.root / name).read_bytes()
        sftp_server.read_delay = 1.5  # now slower than the timeout
        with pytest.raises(TransportError, match=r"read of '/large\.bin'"):
            await sftp.read_bytes("/" + name)
    with anyio.fail_after(60):
        # The server finishes the reads it was sitting on, then sees the connection gone.
        await sftp_server.wait_idle()


@pytest.mark.usefixtures("mock_clock")
async def test_connecting_to_a_stalled_server_times_out(
    sftp_server: SFTPTestServer, conn_id: str
) -> None:
    sftp_server.stall()
    started = anyio.current_time()
    with pytest.raises(TransportError, match="connect_timeout of 7 s"):
        async with SFTPAdapter(conn_id, connect_timeout=7, retry=Retry.none()):
            pass
    assert 7.0 <= anyio.current_time() - started < 8.0
    sftp_server.resume()


@pytest.mark.usefixtures("mock_clock")
@pytest.mark.parametrize("operation", ["download", "upload", "listdir"])
async def test_cancelling_on_a_stalled_server_returns_within_seconds(
    sftp_server: SFTPTestServer, conn_id: str, tmp_path: Path, operation: str
) -> None:
    name = await anyio.to_thread.run_sync(sftp_server.populate_large, "large.bin", 1024**2)
    local = tmp_path / "up.bin"
    local.write_bytes(b"x" * 1024**2)
    sftp = SFTPAdapter(conn_id)
    async with sftp:
        await sftp.stat("/")
        sftp_server.stall()
        with anyio.move_on_after(1.0) as scope:
            if operation == "download":
                await sftp.download("/" + name, tmp_path / "down.bin")
            elif operation == "upload":
                await sftp.upload(local, "/up.bin")
            else:
                await _listed(sftp, "/")
        cancelled_at = anyio.current_time()
    closed_in = anyio.current_time() - cancelled_at
    assert scope.cancelled_caught
    # The close of a connection that no longer answers is bounded by a few seconds (it was
    # 30 s for a pending open and 10 s per connection at close).
    assert closed_in < 4.0, closed_in
    assert sorted(os.listdir(tmp_path)) == ["up.bin"]
    sftp_server.resume()
