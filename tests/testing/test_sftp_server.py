"""The in-process SFTP test server, driven by a raw asyncssh client and by the Airflow provider."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncssh
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import hookbridge
from hookbridge.testing._sftp_files import (
    deterministic_bytes,
    populate_large,
    populate_small,
    populate_tree,
    sha256_of,
)
from hookbridge.testing._sftp_server import SFTPTestServer

# asyncssh is asyncio-only: the direct parametrization overrides the two-backend fixture of
# tests/conftest.py for this module.
pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

CHUNK = 16 * 1024
# The subprocess must import this checkout even before the project is installed.
REPO = str(Path(hookbridge.__file__).resolve().parents[1])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SFTPTestServer]:
    root = tmp_path / "root"
    root.mkdir()
    async with SFTPTestServer(root=root) as srv:
        yield srv


def client_options(server: SFTPTestServer, **overrides: Any) -> dict[str, Any]:
    """Password login that trusts exactly the server's host key and nothing of the user's ~/.ssh."""
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "username": server.user,
        "password": server.password,
        "known_hosts": asyncssh.import_known_hosts(server.known_hosts_line),
        "client_keys": None,
        "agent_path": None,
        "config": None,
    }
    options.update(overrides)
    return options


async def read_all(sftp: asyncssh.SFTPClient, path: str) -> bytes:
    """Sequential reads of CHUNK bytes (asyncssh's parallel ``get`` leaks task errors on a drop)."""
    parts: list[bytes] = []
    await read_into(sftp, path, parts)
    return b"".join(parts)


async def read_into(sftp: asyncssh.SFTPClient, path: str, parts: list[bytes]) -> None:
    """Like ``read_all``, keeping what arrived in ``parts`` when the read fails part-way."""
    async with sftp.open(path, "rb") as file:
        offset = 0
        while data := await file.read(CHUNK, offset):
            assert isinstance(data, bytes)
            parts.append(data)
            offset += len(data)


# --- host key and authentication -----------------------------------------------------------------


async def test_host_key_line_is_an_openssh_public_key(server: SFTPTestServer) -> None:
    kind, blob = server.host_key_line.split(" ")
    assert kind == "ssh-ed25519"
    assert asyncssh.import_public_key(server.host_key_line).get_algorithm() == "ssh-ed25519"
    assert server.known_hosts_line == f"[127.0.0.1]:{server.port} ssh-ed25519 {blob}"


@pytest.mark.parametrize("line", ["with_port", "provider_style"])
async def test_client_trusting_the_host_key_connects(server: SFTPTestServer, line: str) -> None:
    # The provider builds "<host> <type> <key>" without the port; asyncssh falls back to it.
    text = server.known_hosts_line if line == "with_port" else f"127.0.0.1 {server.host_key_line}"
    options = client_options(server, known_hosts=asyncssh.import_known_hosts(text))
    async with asyncssh.connect(**options) as conn, conn.start_sftp_client() as sftp:
        assert await sftp.realpath(".") == "/"


@pytest.mark.parametrize("known", ["empty", "other_key"])
async def test_client_without_the_host_key_is_refused(server: SFTPTestServer, known: str) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    text = "" if known == "empty" else f"[127.0.0.1]:{server.port} {other}"
    options = client_options(server, known_hosts=asyncssh.import_known_hosts(text))
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await asyncssh.connect(**options)


async def test_key_authentication(server: SFTPTestServer) -> None:
    assert server.client_key_path.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    options = client_options(server, password=None, client_keys=[str(server.client_key_path)])
    async with asyncssh.connect(**options) as conn, conn.start_sftp_client() as sftp:
        assert await sftp.listdir("/") == [".", ".."]


@pytest.mark.parametrize(
    "overrides",
    [
        {"password": "wrong"},
        {"username": "someone-else"},
        {"password": None, "client_keys": [asyncssh.generate_private_key("ssh-ed25519")]},
    ],
    ids=["wrong-password", "wrong-user", "unknown-key"],
)
async def test_bad_credentials_are_refused(
    server: SFTPTestServer, overrides: dict[str, Any]
) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(**client_options(server, **overrides))
    with anyio.fail_after(5):
        await server.wait_idle()


# --- content --------------------------------------------------------------------------------------


async def test_listdir_of_a_populated_directory(server: SFTPTestServer) -> None:
    paths = server.populate_small(count=40, size=100)
    assert paths[:2] == ["small/f00000.bin", "small/f00001.bin"]
    async with asyncssh.connect(**client_options(server)) as conn, conn.start_sftp_client() as sftp:
        names = await sftp.listdir("/small")
        entries = await sftp.readdir("/small")
    assert sorted(names) == sorted([".", ".."] + [p.split("/")[1] for p in paths])
    assert {e.attrs.size for e in entries if e.filename not in (".", "..")} == {100}


async def test_read_file_matches_sha256(server: SFTPTestServer) -> None:
    paths = server.populate_small(count=3, size=50_000)
    async with asyncssh.connect(**client_options(server)) as conn, conn.start_sftp_client() as sftp:
        for path in paths:
            data = await read_all(sftp, "/" + path)
            assert hashlib.sha256(data).hexdigest() == server.sha256_of(path)
            assert data == deterministic_bytes(path, 50_000)


async def test_populated_content_is_reproducible(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert populate_small(first, count=3, size=1000) == populate_small(second, count=3, size=1000)
    assert sha256_of(first / "small/f00002.bin") == sha256_of(second / "small/f00002.bin")
    assert sha256_of(first / "small/f00001.bin") != sha256_of(first / "small/f00002.bin")

    size = 2 * 1024 * 1024 + 3  # more than one write chunk, and a partial last one
    name = populate_large(first, "big.bin", size)
    assert (first / name).stat().st_size == size
    assert sha256_of(first / name) == hashlib.sha256(deterministic_bytes(name, size)).hexdigest()


async def test_populate_tree_shape(tmp_path: Path) -> None:
    files = populate_tree(tmp_path, "t", depth=2, fanout=2, files_per_dir=1, size=10)
    assert len(files) == 1 + 2 + 4
    assert "t/d1/d0/file0.bin" in files
    assert not (tmp_path / "t/d0/d0/d0").exists()
    assert len(populate_tree(tmp_path / "default")) == 3 * (1 + 3 + 9 + 27 + 81)


# --- the chroot -----------------------------------------------------------------------------------


async def test_client_is_jailed_in_the_root(server: SFTPTestServer) -> None:
    (server.root / "inside.txt").write_bytes(b"inside")
    (server.root.parent / "outside.txt").write_bytes(b"outside")
    async with asyncssh.connect(**client_options(server)) as conn, conn.start_sftp_client() as sftp:
        assert await sftp.realpath("/") == "/"
        assert await sftp.realpath("/..") == "/"
        assert "inside.txt" in await sftp.listdir("/..")
        for path in ("/../outside.txt", "../outside.txt", "/a/../../outside.txt"):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat(path)
        assert await read_all(sftp, "/../inside.txt") == b"inside"


async def test_symlink_out_of_the_root_is_followed_but_not_resolved(
    server: SFTPTestServer,
) -> None:
    # Documents asyncssh's chroot semantics for the adapter's path checks (module docstring).
    outside = server.root.parent / "secret.txt"
    outside.write_bytes(b"secret")
    (server.root / "in.txt").write_bytes(b"in")
    server.make_symlink("/links/out", outside)
    server.make_symlink("links/in", server.root / "in.txt")
    async with asyncssh.connect(**client_options(server)) as conn, conn.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.realpath("/links/out")
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.readlink("/links/out")
        assert (await sftp.lstat("/links/out")).type == asyncssh.FILEXFER_TYPE_SYMLINK
        assert (await sftp.stat("/links/out")).size == 6
        assert await read_all(sftp, "/links/out") == b"secret"
        assert await sftp.realpath("/links/in") == "/in.txt"
        assert await sftp.readlink("/links/in") == "/in.txt"


async def test_helpers_refuse_paths_outside_the_root(server: SFTPTestServer) -> None:
    with pytest.raises(ValueError, match="outside the SFTP root"):
        server.sha256_of("../x")
    for link in ("/", "../x", "a/../../x"):
        with pytest.raises(ValueError, match="inside the SFTP root"):
            server.make_symlink(link, "x")


# --- connections, channels and drops -------------------------------------------------------------


async def test_connections_and_channels_are_counted_until_closed(server: SFTPTestServer) -> None:
    assert (server.connection_count, server.open_channels) == (0, 0)
    async with asyncssh.connect(**client_options(server)) as conn:
        assert server.connection_count == 1
        async with conn.start_sftp_client() as sftp:
            await sftp.listdir("/")
            assert server.open_channels == 1
        with anyio.fail_after(5):
            await server.wait_for(lambda s: s.open_channels == 0)
        assert server.connection_count == 1
    with anyio.fail_after(5):
        await server.wait_idle()
    stats = server.statistics()
    assert (stats.connections_total, stats.channels_total, stats.drops) == (1, 1, 0)


async def test_drop_connections_fails_an_operation_in_flight(server: SFTPTestServer) -> None:
    server.populate_large(size=1024 * 1024)
    failures: list[BaseException] = []

    async def read_forever(sftp: asyncssh.SFTPClient) -> None:
        try:
            while True:
                await read_all(sftp, "/large.bin")
        except (OSError, asyncssh.Error) as exc:
            failures.append(exc)

    with anyio.fail_after(10):  # without the drop the reader never ends
        async with (
            asyncssh.connect(**client_options(server)) as conn,
            conn.start_sftp_client() as sftp,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(read_forever, sftp)
            await server.wait_for(lambda s: s.bytes_read >= 4 * CHUNK)
            assert server.drop_connections() == 1
    assert len(failures) == 1
    assert isinstance(failures[0], (asyncssh.ConnectionLost, asyncssh.SFTPConnectionLost))
    with anyio.fail_after(5):
        stats = await server.wait_for(lambda s: s.connections == 0 and s.open_channels == 0)
    assert stats.drops == 1


async def test_drop_after_bytes_fires_once(server: SFTPTestServer) -> None:
    server.populate_large(size=256 * 1024)
    threshold = 100_000
    server.drop_after_bytes(threshold)
    parts: list[bytes] = []
    async with asyncssh.connect(**client_options(server)) as conn, conn.start_sftp_client() as sftp:
        with pytest.raises((asyncssh.ConnectionLost, asyncssh.SFTPConnectionLost)):
            await read_into(sftp, "/large.bin", parts)
    # The read that reaches the threshold is not delivered.
    assert sum(map(len, parts)) == (threshold // CHUNK) * CHUNK
    with anyio.fail_after(5):
        await server.wait_idle()

    async with asyncssh.connect(**client_options(server)) as conn, conn.start_sftp_client() as sftp:
        data = await read_all(sftp, "/large.bin")
    assert hashlib.sha256(data).hexdigest() == server.sha256_of("large.bin")
    assert server.statistics().drops == 1


async def test_close_disconnects_live_clients(tmp_path: Path) -> None:
    async with SFTPTestServer(root=tmp_path) as server:
        conn = await asyncssh.connect(**client_options(server))
        key_path = server.client_key_path
    assert server.connection_count == 0
    with anyio.fail_after(5):
        await conn.wait_closed()
    assert not key_path.exists()
    with pytest.raises(RuntimeError, match="create a new one"):
        await server.start()


async def test_root_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="create it first"):
        SFTPTestServer(root=tmp_path / "missing")


# --- own process ----------------------------------------------------------------------------------


async def test_runs_in_its_own_process(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_bytes(b"hello")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "hookbridge.testing._sftp_server", "--root", str(tmp_path)]
    async with await anyio.open_process(command, env=env, stderr=None) as process:
        assert process.stdout is not None
        try:
            with anyio.fail_after(15):
                line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 4096)
            info = json.loads(line)
            assert set(info) == {"host", "port", "user", "password", "host_key", "client_key_path"}
            known = asyncssh.import_known_hosts(
                f"[{info['host']}]:{info['port']} {info['host_key']}"
            )
            options = {
                "host": info["host"],
                "port": info["port"],
                "username": info["user"],
                "known_hosts": known,
                "agent_path": None,
                "config": None,
            }
            async with (
                asyncssh.connect(**options, password=info["password"], client_keys=None) as conn,
                conn.start_sftp_client() as sftp,
            ):
                assert await read_all(sftp, "/hello.txt") == b"hello"
            async with asyncssh.connect(**options, client_keys=[info["client_key_path"]]) as conn:
                assert conn.get_extra_info("username") == "user"
        finally:
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                code = await process.wait()
    assert code == 0
    assert not await anyio.Path(info["client_key_path"]).exists()


# --- the Airflow provider -------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["password", "key"])
async def test_airflow_sftp_hook_async_lists_a_directory(
    server: SFTPTestServer, monkeypatch: pytest.MonkeyPatch, auth: str
) -> None:
    from airflow.providers.sftp.hooks.sftp import SFTPHookAsync

    server.populate_small(count=3, size=10)
    connection = server.airflow_connection(auth="key" if auth == "key" else "password")
    monkeypatch.setenv("AIRFLOW_CONN_HOOKBRIDGE_SFTP_TEST", json.dumps(connection))
    hook = SFTPHookAsync(sftp_conn_id="hookbridge_sftp_test")
    names = await hook.list_directory("/small")
    assert names == [".", "..", "f00000.bin", "f00001.bin", "f00002.bin"]
    with anyio.fail_after(5):
        await server.wait_idle()
