"""The SFTP adapter against Debian's OpenSSH server (sshd, internal-sftp), not only our own.

Skipped when ``/usr/sbin/sshd`` is missing (CI installs ``openssh-server``). Real time here: the
server is another process, so virtual time would move on while it works.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from hookbridge import PathRefused, Retry, TransportError
from hookbridge.adapters.sftp import RemoteFileNotFound, SFTPAdapter
from hookbridge.testing._openssh_server import OpenSSHServer, sshd_missing
from hookbridge.testing._sftp_files import deterministic_bytes

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
    pytest.mark.skipif(sshd_missing() is not None, reason=str(sshd_missing())),
]

CONN_ID = "sftp_openssh"


@pytest.fixture(scope="module")
def openssh() -> Iterator[OpenSSHServer]:
    with OpenSSHServer() as server:
        yield server


@pytest.fixture
def conn_id(openssh: OpenSSHServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(openssh.airflow_connection()))
    return CONN_ID


async def test_files_and_trees_round_trip(conn_id: str, tmp_path: Path) -> None:
    base = tmp_path / "served"
    (base / "tree" / "sub").mkdir(parents=True)
    for i in range(5):
        (base / "tree" / f"f{i}.bin").write_bytes(deterministic_bytes(f"f{i}", 1000 + i))
    (base / "tree" / "sub" / "deep.bin").write_bytes(b"deep")
    large = deterministic_bytes("large", 3 * 1024 * 1024 + 7)
    (tmp_path / "large.bin").write_bytes(large)
    async with SFTPAdapter(conn_id, block_size=64 * 1024) as sftp:
        check = await sftp.check()
        assert check.ok
        assert check.detail.endswith("cipher aes256-gcm@openssh.com")
        await sftp.upload(tmp_path / "large.bin", f"{base}/large.bin")
        assert (base / "large.bin").read_bytes() == large
        assert await sftp.read_bytes(f"{base}/large.bin") == large
        assert await sftp.download(f"{base}/large.bin", tmp_path / "back.bin") == len(large)
        assert (tmp_path / "back.bin").read_bytes() == large
        result = await sftp.download_tree(f"{base}/tree", tmp_path / "copy")
        assert (result.files, result.directories) == (6, 1)
        assert (tmp_path / "copy" / "sub" / "deep.bin").read_bytes() == b"deep"
        names = sorted([e.name async for e in sftp.listdir(f"{base}/tree")])
        assert names == ["f0.bin", "f1.bin", "f2.bin", "f3.bin", "f4.bin", "sub"]
        with pytest.raises(RemoteFileNotFound) as caught:
            await sftp.stat(f"{base}/missing")
        assert caught.value.code == 2
        stats = sftp.statistics()
        assert (stats.retries, stats.pool.pool.discarded) == (0, 0)


async def test_root_confinement_holds_against_openssh_realpath(
    conn_id: str, tmp_path: Path
) -> None:
    jail = tmp_path / "jail"
    (jail / "in").mkdir(parents=True)
    (jail / "in" / "ok.txt").write_bytes(b"inside")
    (tmp_path / "jail-other").mkdir()
    (tmp_path / "jail-other" / "x.txt").write_bytes(b"SIBLING")
    os.symlink("../jail-other", jail / "sibling")
    async with SFTPAdapter(conn_id, root=str(jail)) as sftp:
        assert await sftp.read_bytes("in/ok.txt") == b"inside"
        for path in ("sibling/x.txt", "../jail-other/x.txt", f"{tmp_path}/jail-other/x.txt"):
            with pytest.raises(PathRefused):
                await sftp.read_bytes(path)


async def test_a_stopped_sshd_times_out_and_a_cancel_returns_promptly(
    openssh: OpenSSHServer, conn_id: str, tmp_path: Path
) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * 1000)
    path = f"{tmp_path}/f.bin"
    sftp = SFTPAdapter(conn_id, operation_timeout=1.0, retry=Retry.none())
    try:
        async with sftp:
            await sftp.stat(path)  # a live connection
            openssh.stop()  # SIGSTOP: connections stay open, nothing answers
            with pytest.raises(TransportError, match=rf"stat of {path!r}.*operation_timeout"):
                await sftp.stat(path)
            with anyio.move_on_after(0.5) as scope:
                await sftp.download(path, tmp_path / "copy.bin")
            assert scope.cancelled_caught
            closing = anyio.current_time()
        # Closing connections to a stopped server is bounded (3 s per close, in parallel).
        assert anyio.current_time() - closing < 8.0
    finally:
        openssh.cont()
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]
