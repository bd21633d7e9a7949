"""The pytest plugin's fixtures populate the SFTP server and define working connections."""

from __future__ import annotations

import base64
import hashlib

import aiohttp
import pytest

import hookbridge
from hookbridge.testing import HTTPTestServer, SFTPTestServer, sha256_of

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


async def test_populating_fixtures_and_connection(
    sftp_server: SFTPTestServer,
    sftp_conn_id: str,
    sftp_small_files: list[str],
    sftp_tree: list[str],
    sftp_large_file: str,
) -> None:
    assert len(sftp_small_files) == 1000
    assert len(sftp_tree) > 100
    async with hookbridge.open(sftp_conn_id) as sftp:
        names = [entry.name async for entry in sftp.listdir("/small")]
        assert sorted(names) == sorted(p.rsplit("/", 1)[-1] for p in sftp_small_files)
        assert (await sftp.stat("/" + sftp_large_file)).size == 64 * 1024 * 1024
        first = sftp_small_files[0]
        data = await sftp.read_bytes("/" + first)
    assert hashlib.sha256(data).hexdigest() == sha256_of(sftp_server.local_path(first))


async def test_http_server_fixture_serves(http_server: HTTPTestServer) -> None:
    assert http_server.url.startswith("http://127.0.0.1:")
    assert http_server.password != "pass"
    basic = base64.b64encode(f"{http_server.user}:{http_server.password}".encode()).decode()
    async with aiohttp.ClientSession() as session:
        async with session.get(http_server.url_for("/items/7")) as response:
            assert response.status == 200
            assert await response.json() == {"id": 7, "name": "item-7"}
        async with session.get(
            http_server.url_for("/auth/basic"), headers={"Authorization": f"Basic {basic}"}
        ) as response:
            assert response.status == 200  # the fixture's server checks its own credentials
    assert [(r.method, r.path, r.status) for r in http_server.requests] == [
        ("GET", "/items/7", 200),
        ("GET", "/auth/basic", 200),
    ]
