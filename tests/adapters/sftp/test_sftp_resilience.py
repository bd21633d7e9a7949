"""Dropped connections, retries and cancellation of the SFTP adapter, against the real server."""

from __future__ import annotations

import os
import random
from pathlib import Path

import anyio
import pytest

from hookbridge import HookBridgeError, Retry, TransportError
from hookbridge.adapters.sftp import SFTPAdapter, TransferProgress
from hookbridge.testing._sftp_files import deterministic_bytes, sha256_of
from hookbridge.testing._sftp_server import SFTPTestServer

# indirect: the conftest's anyio_backend fixture, so that tests asking for mock_clock get
# virtual time (looptime) instead of sleeping for real.
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

KiB = 1024
MiB = 1024 * KiB
FAST_RETRY = Retry(attempts=3, backoff=0.01)
PART = "hookbridge-part"


async def test_connection_dropped_mid_download_is_retried_on_a_fresh_one(
    sftp_server: SFTPTestServer, conn_id: str, tmp_path: Path
) -> None:
    name = await anyio.to_thread.run_sync(sftp_server.populate_large, "large.bin", 6 * MiB + 5)
    async with SFTPAdapter(conn_id, retry=FAST_RETRY, block_size=128 * KiB) as sftp:
        sftp_server.drop_after_bytes(2 * MiB)
        local = tmp_path / "large.bin"
        assert await sftp.download("/" + name, local) == 6 * MiB + 5
        stats = sftp.statistics()
    assert sha256_of(local) == sftp_server.sha256_of(name)
    assert os.listdir(tmp_path) == ["large.bin"]
    assert sftp_server.statistics().drops == 1
    assert stats.retries == 1
    assert stats.pool.pool.discarded == 1  # the broken connection was thrown away
    assert stats.pool.pool.created == 2  # and the retry ran on a new one


async def test_dropped_connections_during_a_tree_download(
    sftp_server: SFTPTestServer, conn_id: str, tmp_path: Path
) -> None:
    files = sftp_server.populate_small(count=150, size=20 * KiB)
    async with SFTPAdapter(conn_id, retry=FAST_RETRY) as sftp:
        sftp_server.drop_after_bytes(1 * MiB)
        result = await sftp.download_tree("/small", tmp_path)
        assert sftp.statistics().retries >= 1
    assert result.files == len(files)
    for rel in files:
        assert sha256_of(tmp_path / os.path.basename(rel)) == sftp_server.sha256_of(rel)
    assert not [n for n in os.listdir(tmp_path) if PART in n]


async def test_listing_cut_part_way_is_completed_without_repeats(
    sftp_server: SFTPTestServer, conn_id: str
) -> None:
    files = sftp_server.populate_small(count=400, size=1)  # several READDIR batches
    async with SFTPAdapter(conn_id, retry=FAST_RETRY) as sftp:
        names: list[str] = []
        async for entry in sftp.listdir("/small"):
            if not names:
                sftp_server.drop_connections()  # the next batch will not come
            names.append(entry.name)
        assert sftp.statistics().pool.pool.discarded == 1
    assert sorted(names) == sorted(os.path.basename(f) for f in files)


async def test_upload_retried_after_a_drop_leaves_one_complete_file(
    sftp_server: SFTPTestServer, conn_id: str, tmp_path: Path
) -> None:
    data = deterministic_bytes("up", 4 * MiB)
    local = tmp_path / "up.bin"
    local.write_bytes(data)

    async def drop_mid_upload() -> None:
        # The first attempt's temporary file has data on the server's disk: drop it now. The
        # server has no event for disk writes, so this polls.
        def writing() -> bool:
            return any(PART in p.name and p.stat().st_size > 0 for p in sftp_server.root.iterdir())

        while not writing():  # noqa: ASYNC110
            await anyio.sleep(0.001)
        sftp_server.drop_connections()

    async with SFTPAdapter(conn_id, retry=FAST_RETRY, block_size=64 * KiB) as sftp:
        async with anyio.create_task_group() as tg:
            tg.start_soon(drop_mid_upload)
            assert await sftp.upload(local, "/up.bin") == len(data)
        assert sftp.statistics().retries == 1
    assert (sftp_server.root / "up.bin").read_bytes() == data
    # the retry removed the first attempt's temporary file
    assert sorted(p.name for p in sftp_server.root.iterdir()) == ["up.bin"]


@pytest.mark.usefixtures("mock_clock")
async def test_transport_errors_exhaust_retries_then_raise(
    sftp_server: SFTPTestServer, conn_id: str
) -> None:
    sftp_server.populate_small(count=1, size=10)
    async with SFTPAdapter(conn_id, retry=Retry.none()) as sftp:
        sftp_server.drop_connections()
        # Virtual time: the loop handles the pending I/O (the client sees its connection
        # reset) before the clock moves on; no real time passes.
        await anyio.sleep(1)
        # A dead idle connection fails its health check and is replaced transparently...
        content = (sftp_server.root / "small" / "f00000.bin").read_bytes()
        assert await sftp.read_bytes("/small/f00000.bin") == content
        # ...but a drop during a request without retries surfaces as a TransportError.
        sftp_server.drop_after_bytes(1)
        with pytest.raises(TransportError, match="conn_id"):
            await sftp.read_bytes("/small/f00000.bin")


async def test_close_while_operations_run_closes_every_connection(
    sftp_server: SFTPTestServer, conn_id: str
) -> None:
    await anyio.to_thread.run_sync(sftp_server.populate_large, "large.bin", 8 * MiB)
    errors: list[BaseException] = []
    sftp = SFTPAdapter(conn_id)
    await sftp.__aenter__()

    async def read() -> None:
        try:
            await sftp.read_bytes("/large.bin")
        except HookBridgeError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(read)
        with anyio.fail_after(5):
            # Close once the server is serving the reads' data (they are in flight).
            await sftp_server.wait_for(lambda s: s.bytes_read > 0)
        await sftp.aclose()
    with anyio.fail_after(5):
        await sftp_server.wait_idle()
    assert errors  # the running reads failed instead of hanging


def _tree(server: SFTPTestServer) -> list[str]:
    files = server.populate_tree(depth=2, fanout=2, files_per_dir=5, size=3 * KiB)
    for i in range(3):
        files.append(server.populate_large(f"tree/d{i % 2}/big{i}.bin", 600 * KiB + i))
    return [rel.removeprefix("tree/") for rel in files]


def _present(dest: Path) -> dict[str, Path]:
    if not dest.exists():
        return {}
    return {p.relative_to(dest).as_posix(): p for p in dest.rglob("*") if p.is_file()}


async def test_cancelling_tree_downloads_leaves_nothing_behind(
    sftp_server: SFTPTestServer, conn_id: str, tmp_path: Path
) -> None:
    files = await anyio.to_thread.run_sync(_tree, sftp_server)
    expected = {rel: sftp_server.sha256_of("tree/" + rel) for rel in files}

    def adapter() -> SFTPAdapter:
        return SFTPAdapter(conn_id, max_connections=3, block_size=64 * KiB, max_requests=8)

    # Full runs say how long a download takes, so that cancel times span all of it; the
    # quickest of three, as the first one also pays for cold caches.
    durations = []
    for attempt in range(3):
        async with adapter() as sftp:
            started = anyio.current_time()
            await sftp.download_tree("/tree", tmp_path / f"full{attempt}", max_at_once=16)
            durations.append(anyio.current_time() - started)
        present = {rel: sha256_of(p) for rel, p in _present(tmp_path / f"full{attempt}").items()}
        assert present == expected
    full = min(durations)

    rng = random.Random(20240611)
    cancelled = 0
    for iteration in range(20):
        dest = tmp_path / f"run{iteration}"
        # Half the runs stop after a random number of finished files (others are then in
        # flight at random points), half after a random time.
        stop_after_files = rng.randrange(0, len(files))
        stop_after_time = rng.uniform(0.0, 0.9 * full)
        by_files = iteration % 2 == 0
        async with adapter() as sftp:
            with anyio.CancelScope() as scope:

                def progress(
                    event: TransferProgress,
                    scope: anyio.CancelScope = scope,
                    limit: int = stop_after_files if by_files else len(files) + 1,
                ) -> None:
                    if event.files_done >= limit:
                        scope.cancel()

                if not by_files:
                    scope.deadline = anyio.current_time() + stop_after_time
                await sftp.download_tree("/tree", dest, max_at_once=16, progress=progress)
            cancelled += scope.cancel_called
        with anyio.fail_after(5):
            await sftp_server.wait_idle()  # no connection, no SFTP channel left open
        present = _present(dest)
        assert not [rel for rel in present if PART in rel], iteration
        for rel, path in present.items():
            assert sha256_of(path) == expected[rel], (iteration, rel)
    assert cancelled >= 15  # the runs did stop part-way
    stats = sftp_server.statistics()
    assert (stats.connections, stats.open_channels) == (0, 0)


@pytest.mark.usefixtures("mock_clock")
async def test_connections_past_max_lifetime_drain_and_retire(
    sftp_server: SFTPTestServer, conn_id: str
) -> None:
    sftp_server.populate_small(count=1, size=100)
    async with SFTPAdapter(conn_id, max_lifetime=20, max_connections=2) as sftp:
        async with sftp.open("/small/f00000.bin") as held:  # keeps connection #1 busy
            # Young connections: #1 busy, so a second one opens, and is reused after.
            for _ in range(2):
                assert len(await sftp.read_bytes("/small/f00000.bin")) == 100
            assert sftp.statistics().pool.pool.created == 2
            await anyio.sleep(30)  # virtual time: both are past their lifetime now
            # Neither takes a new operation: #1 drains, the pool retires idle #2, #3 opens.
            assert len(await sftp.read_bytes("/small/f00000.bin")) == 100
            stats = sftp.statistics().pool.pool
            assert (stats.created, stats.disposed) == (3, 1)
            assert len(await held.read()) == 100  # what runs on #1 finishes there
        stats = sftp.statistics().pool.pool
        assert stats.disposed == 2  # #1 drained and the pool retired it too
        assert stats.discarded == 0  # retired, not broken
