"""Every SFTP adapter operation against the loopback SFTP server, over real Airflow connections."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import anyio
import pytest

import hookbridge
from hookbridge import AlreadyExists, ConfigurationError, NotFound, RemoteError, UsageError
from hookbridge import open as open_adapter
from hookbridge.adapters.sftp import (
    RemoteEntry,
    RemoteFileExists,
    RemoteFileNotFound,
    SFTPAdapter,
    TransferProgress,
)
from hookbridge.testing._sftp_files import deterministic_bytes, sha256_of
from hookbridge.testing._sftp_server import SFTPTestServer

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

KiB = 1024


def local_tree(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()
    }


async def test_open_picks_the_adapter_by_conn_type(conn_id: str) -> None:
    async with open_adapter(conn_id) as sftp:
        assert isinstance(sftp, SFTPAdapter)
        assert "logged in" in (await sftp.check()).detail


async def test_listdir_and_walk(sftp_server: SFTPTestServer, conn_id: str) -> None:
    files = sftp_server.populate_tree(depth=2, fanout=2, files_per_dir=2, size=100)
    sftp_server.make_symlink("tree/link", "file0.bin")
    async with SFTPAdapter(conn_id) as sftp:
        top = sorted([e async for e in sftp.listdir("/tree")], key=lambda e: e.name)
        assert [e.name for e in top] == ["d0", "d1", "file0.bin", "file1.bin", "link"]
        d0, _, f0, _, link = top
        # Against what the server's disk says (SFTP v3 carries whole seconds).
        d0_disk = (sftp_server.root / "tree" / "d0").stat()
        f0_disk = (sftp_server.root / "tree" / "file0.bin").stat()
        assert d0 == RemoteEntry(
            name="d0",
            path="/tree/d0",
            size=d0_disk.st_size,
            mtime=float(int(d0_disk.st_mtime)),
            is_dir=True,
            permissions=stat.S_IMODE(d0_disk.st_mode),
        )
        assert f0 == RemoteEntry(
            name="file0.bin",
            path="/tree/file0.bin",
            size=100,
            mtime=float(int(f0_disk.st_mtime)),
            is_dir=False,
            is_file=True,
            permissions=stat.S_IMODE(f0_disk.st_mode),
        )
        os.chmod(sftp_server.root / "tree" / "file0.bin", 0o640)
        os.utime(sftp_server.root / "tree" / "file0.bin", (1_000_000_000, 1_234_567_890))
        changed = await sftp.stat("/tree/file0.bin")
        assert (changed.permissions, changed.mtime, changed.size) == (0o640, 1_234_567_890.0, 100)
        assert link.is_symlink
        assert not link.is_file
        assert not link.is_dir

        walked = [e async for e in sftp.walk("/tree")]
        paths = {e.path for e in walked}
        assert "." not in {e.name for e in walked}
        assert ".." not in {e.name for e in walked}
        assert {"/" + f for f in files} <= paths
        assert len([e for e in walked if e.is_dir]) == 2 + 4
        assert len([e for e in walked if e.is_file]) == len(files)

        # Relative paths are the server's (the login directory is the server root here).
        assert sorted([e.name async for e in sftp.listdir("tree/d0/d1")]) == [
            "file0.bin",
            "file1.bin",
        ]


async def test_stat_exists_makedirs_remove_rmdir(sftp_server: SFTPTestServer, conn_id: str) -> None:
    sftp_server.populate_small(count=1, size=123)
    async with SFTPAdapter(conn_id) as sftp:
        entry = await sftp.stat("/small/f00000.bin")
        assert (entry.name, entry.size, entry.is_file) == ("f00000.bin", 123, True)
        assert await sftp.exists("/small/f00000.bin")
        assert not await sftp.exists("/small/nope.bin")

        await sftp.makedirs("/a/b/c")
        await sftp.makedirs("/a/b/c")  # mkdir -p: an existing directory is fine
        assert (await sftp.stat("/a/b/c")).is_dir

        await sftp.remove("/small/f00000.bin")
        assert not (sftp_server.root / "small" / "f00000.bin").exists()
        await sftp.rmdir("/a/b/c")
        assert not (sftp_server.root / "a" / "b" / "c").exists()


async def test_status_errors_keep_the_connection(sftp_server: SFTPTestServer, conn_id: str) -> None:
    async with SFTPAdapter(conn_id) as sftp:
        with pytest.raises(RemoteFileNotFound) as caught:
            await sftp.read_bytes("/missing.bin")
        assert isinstance(caught.value, FileNotFoundError)
        assert isinstance(caught.value, NotFound)  # the core's protocol-neutral tree
        assert caught.value.code == 2  # FX_NO_SUCH_FILE
        assert caught.value.target == "/missing.bin"
        assert "/missing.bin" in str(caught.value)
        assert conn_id in str(caught.value)
        with pytest.raises(RemoteFileNotFound):
            await sftp.stat("/missing.bin")
        with pytest.raises(RemoteFileNotFound):
            await sftp.remove("/missing.bin")
        (sftp_server.root / "exists.bin").write_bytes(b"x")
        with pytest.raises(RemoteError) as exists:
            async with sftp.open("/exists.bin", "xb"):
                pass
        # SFTP v3 servers (this one, OpenSSH) answer FX_FAILURE; v5+ FX_FILE_ALREADY_EXISTS.
        assert exists.value.code in (4, 11)
        if exists.value.code == 11:
            assert isinstance(exists.value, (RemoteFileExists, AlreadyExists, FileExistsError))
        assert exists.value.target == "/exists.bin"
        stats = sftp.statistics()
        assert stats.retries == 0  # a status answer is not retried
        assert stats.pool.pool.discarded == 0  # and keeps its connection
        assert stats.pool.pool.created == 1


async def test_bytes_and_streams(sftp_server: SFTPTestServer, conn_id: str) -> None:
    big = deterministic_bytes("big", 3 * 256 * KiB + 17)
    async with SFTPAdapter(conn_id) as sftp:
        assert await sftp.write_bytes("/data.bin", big) == len(big)
        assert (sftp_server.root / "data.bin").read_bytes() == big
        assert await sftp.read_bytes("/data.bin") == big
        assert await sftp.write_bytes("/empty.bin", b"") == 0
        assert await sftp.read_bytes("/empty.bin") == b""

        async with sftp.open("/data.bin") as f:
            assert await f.read(10) == big[:10]
            assert await f.tell() == 10
            assert await f.read() == big[10:]
            assert await f.read() == b""
            await f.seek(5)
            chunks = [chunk async for chunk in f]
            assert b"".join(chunks) == big[5:]
            assert (await f.stat()).size == len(big)

        async with sftp.open("/stream.bin", "wb") as f:
            for i in range(0, len(big), 100_000):
                await f.write(big[i : i + 100_000])
        async with sftp.open("/stream.bin", "ab") as f:
            await f.write(b"tail")
        assert (sftp_server.root / "stream.bin").read_bytes() == big + b"tail"

        with pytest.raises(UsageError, match="mode"):
            async with sftp.open("/data.bin", "rt"):
                pass


async def test_download_and_upload_one_file(
    sftp_server: SFTPTestServer, conn_id: str, tmp_path: Path
) -> None:
    name = await anyio.to_thread.run_sync(
        sftp_server.populate_large, "large.bin", 5 * 1024 * KiB + 3
    )
    seen: list[tuple[int, int]] = []
    async with SFTPAdapter(conn_id, block_size=64 * KiB, max_requests=16) as sftp:
        local = tmp_path / "large.bin"
        size = await sftp.download(
            "/" + name, local, progress=lambda done, total: seen.append((done, total))
        )
        assert size == local.stat().st_size == 5 * 1024 * KiB + 3
        assert sha256_of(local) == sftp_server.sha256_of(name)
        assert seen[-1] == (size, size)
        assert len(seen) > 1
        assert [done for done, _ in seen] == sorted(done for done, _ in seen)
        assert os.listdir(tmp_path) == ["large.bin"]  # no temporary file left

        sent = await sftp.upload(local, "/copy.bin", block_size=32 * KiB, max_requests=8)
        assert sent == size
        assert sftp_server.sha256_of("copy.bin") == sftp_server.sha256_of(name)
        # uploading over an existing file replaces it whole
        small = tmp_path / "small.bin"
        small.write_bytes(b"small")
        await sftp.upload(small, "/copy.bin")
        assert (sftp_server.root / "copy.bin").read_bytes() == b"small"
        assert sorted(p.name for p in sftp_server.root.iterdir()) == ["copy.bin", "large.bin"]
        assert sftp.statistics().pool.peak_load > 1


async def test_download_tree_and_upload_tree(
    sftp_server: SFTPTestServer, conn_id: str, tmp_path: Path
) -> None:
    files = sftp_server.populate_tree(depth=2, fanout=3, files_per_dir=3, size=2000)
    await anyio.to_thread.run_sync(sftp_server.populate_large, "tree/d1/big.bin", 700 * KiB)
    files.append("tree/d1/big.bin")
    (sftp_server.root / "tree" / "empty").mkdir()
    events: list[TransferProgress] = []
    async with SFTPAdapter(conn_id, max_connections=2) as sftp:
        result = await sftp.download_tree("/tree", tmp_path / "down", progress=events.append)
        expected_bytes = sum((sftp_server.root / f).stat().st_size for f in files)
        assert (result.files, result.bytes, result.failures) == (len(files), expected_bytes, ())
        assert result.directories == 3 + 9 + 1
        assert (tmp_path / "down" / "empty").is_dir()
        got = local_tree(tmp_path / "down")
        assert set(got) == {f.removeprefix("tree/") for f in files}
        for rel in files:
            assert sha256_of(tmp_path / "down" / rel.removeprefix("tree/")) == (
                sftp_server.sha256_of(rel)
            )
        assert len(events) == len(files)
        assert events[-1].files_done == len(files)
        assert events[-1].bytes_done == expected_bytes

        up = await sftp.upload_tree(tmp_path / "down", "/up/tree")
        assert (up.files, up.bytes) == (len(files), expected_bytes)
        for rel in files:
            assert sftp_server.sha256_of("up/" + rel) == sftp_server.sha256_of(rel)
        assert (sftp_server.root / "up" / "tree" / "empty").is_dir()
        leftovers = [p for p in sftp_server.root.rglob("*") if "hookbridge-part" in p.name]
        assert leftovers == []
        assert sftp.statistics().pool.pool.created <= 2


async def test_download_tree_collects_failures(
    sftp_server: SFTPTestServer, conn_id: str, tmp_path: Path
) -> None:
    sftp_server.populate_small(count=4, size=10)
    sftp_server.make_symlink("small/dangling.bin", "no-such-target.bin")
    sftp_server.make_symlink("small/good-link.bin", "f00000.bin")
    async with SFTPAdapter(conn_id) as sftp:
        # links are skipped by default
        plain = await sftp.download_tree("/small", tmp_path / "plain")
        assert (plain.files, plain.failures) == (4, ())

        result = await sftp.download_tree(
            "/small", tmp_path / "follow", follow_symlinks=True, on_error="collect"
        )
        assert result.files == 5  # the link to a file is copied as a file
        assert (tmp_path / "follow" / "good-link.bin").read_bytes() == (
            sftp_server.root / "small" / "f00000.bin"
        ).read_bytes()
        assert [f.item.name for f in result.failures] == ["dangling.bin"]
        assert isinstance(result.failures[0].error, RemoteFileNotFound)

        with pytest.raises(hookbridge.BatchError, match=r"dangling\.bin"):
            await sftp.download_tree("/small", tmp_path / "again", follow_symlinks=True)


async def test_many_concurrent_operations_share_few_connections(
    sftp_server: SFTPTestServer, conn_id: str
) -> None:
    names = sftp_server.populate_small(count=60, size=3000)
    async with SFTPAdapter(conn_id, max_connections=2) as sftp:
        results: dict[str, str] = {}

        async def fetch(rel: str) -> None:
            results[rel] = hashlib.sha256(await sftp.read_bytes("/" + rel)).hexdigest()

        async with anyio.create_task_group() as tg:
            for rel in names:
                tg.start_soon(fetch, rel)
        stats = sftp.statistics().pool
    assert results == {rel: sftp_server.sha256_of(rel) for rel in names}
    assert sftp_server.statistics().connections_total == 2
    # Unlike SFTPClientPool, more operations ran at once than there are connections.
    assert stats.peak_load > 2


async def test_options_validate_and_go_into_the_spec(conn_id: str) -> None:
    adapter = SFTPAdapter(conn_id, root="/data/", max_connections=3, block_size=65536)
    assert adapter.spec() == {
        "adapter": "sftp",
        "conn_id": conn_id,
        "options": {"root": "/data", "max_connections": 3, "block_size": 65536},
    }
    with pytest.raises(ConfigurationError, match="max_connections"):
        SFTPAdapter(conn_id, max_connections=0)
    with pytest.raises(ConfigurationError, match="root"):
        SFTPAdapter(conn_id, root="relative/path")
    with pytest.raises(hookbridge.AdapterClosed):
        await adapter.read_bytes("/x")


async def test_the_callers_own_errors_in_an_open_block_pass_unchanged(
    sftp_server: SFTPTestServer, conn_id: str
) -> None:
    async with SFTPAdapter(conn_id) as sftp:
        # A socket error of the caller's own (not the SFTP connection's): not translated into
        # a TransportError, and the connection is not blamed for it.
        mine = ConnectionResetError("the caller's own socket")

        async def write_then_fail() -> None:
            async with sftp.open("/mine.bin", "wb") as file:
                await file.write(b"data")
                raise mine

        with pytest.raises(ConnectionResetError) as caught:
            await write_then_fail()
        assert caught.value is mine
        stats = sftp.statistics()
        assert (stats.pool.pool.discarded, stats.holding, stats.limits.in_flight) == (0, 0, 0)
        assert await sftp.read_bytes("/mine.bin") == b"data"
