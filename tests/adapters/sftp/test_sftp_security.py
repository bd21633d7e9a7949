"""Host keys, authentication, root confinement, secrets and connection settings (SFTP adapter)."""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import asyncssh
import pytest

from hookbridge import ConfigurationError, HookBridgeError, PathRefused, Retry
from hookbridge.adapters.sftp import LocalFileError, SFTPAdapter
from hookbridge.testing._sftp_server import SFTPTestServer

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

Sent = Callable[[], list[str]]
Connect = Callable[..., str]


# -- host keys and authentication ----------------------------------------------------------------


async def test_unknown_host_key_is_refused(connect: Connect) -> None:
    conn_id = connect(host_key=None)  # no host_key, no known_hosts, no no_host_key_check
    with pytest.raises(ConfigurationError, match="host key") as caught:
        async with SFTPAdapter(conn_id):
            pass
    assert f"conn_id {conn_id!r}" in str(caught.value)
    assert "host_key" in str(caught.value)


async def test_wrong_host_key_is_refused(connect: Connect) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    conn_id = connect(host_key=other)
    with pytest.raises(ConfigurationError, match="host key"):
        async with SFTPAdapter(conn_id):
            pass


async def test_host_key_from_a_known_hosts_file(
    connect: Connect, sftp_server: SFTPTestServer, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(sftp_server.known_hosts_line + "\n")
    conn_id = connect(host_key=None, known_hosts=str(known))
    async with SFTPAdapter(conn_id) as sftp:
        assert "logged in" in (await sftp.check()).detail


async def test_no_host_key_check_is_an_explicit_opt_out(connect: Connect) -> None:
    conn_id = connect(host_key=None, no_host_key_check=True)
    async with SFTPAdapter(conn_id) as sftp:
        assert "logged in" in (await sftp.check()).detail


async def test_key_file_authentication(connect: Connect, sftp_server: SFTPTestServer) -> None:
    conn_id = connect(auth="key")
    sftp_server.populate_small(count=2, size=50)
    async with SFTPAdapter(conn_id) as sftp:
        assert len(await sftp.read_bytes("/small/f00001.bin")) == 50


async def test_wrong_password_is_a_configuration_error(connect: Connect) -> None:
    wrong = "wr0ng-Passw0rd-xyz"
    conn_id = connect(fields={"password": wrong})
    with pytest.raises(ConfigurationError, match="refused the login") as caught:
        async with SFTPAdapter(conn_id):
            pass
    assert wrong not in str(caught.value)
    assert wrong not in repr(caught.value)


# -- secrets ---------------------------------------------------------------------------------------


async def test_secrets_never_leak(
    connect: Connect,
    sftp_server: SFTPTestServer,
    caplog: pytest.LogCaptureFixture,
    sftp_password: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    key_text = sftp_server.client_key_path.read_text()
    key_lines = [line for line in key_text.splitlines() if line and "PRIVATE KEY" not in line]
    texts: list[str] = []

    password_conn = connect("sftp_pw")
    key_conn = connect("sftp_key", auth="key", key_file=None, private_key=key_text)
    bad_key_conn = connect(
        "sftp_badkey",
        auth="key",
        key_file=None,
        private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nbm90LWEta2V5LWF0LWFsbA==\n"
        "-----END OPENSSH PRIVATE KEY-----\n",
    )
    sftp_server.populate_small(count=3, size=10)
    for conn_id in (password_conn, key_conn):
        adapter = SFTPAdapter(conn_id, root="/small")
        async with adapter as sftp:
            await sftp.read_bytes("f00001.bin")
            texts += [repr(sftp), repr(sftp.statistics()), json.dumps(sftp.spec())]
            for call in (
                lambda: sftp.read_bytes("missing.bin"),
                lambda: sftp.read_bytes("../escape.bin"),
            ):
                with pytest.raises(HookBridgeError) as caught:
                    await call()
                texts += [str(caught.value), repr(caught.value)]
        texts.append(repr(adapter))
    for conn_id in (bad_key_conn,):
        with pytest.raises(HookBridgeError) as caught:
            async with SFTPAdapter(conn_id):
                pass
        texts += [str(caught.value), repr(caught.value)]
        assert isinstance(caught.value, ConfigurationError)

    everything = "\n".join(texts) + "\n" + caplog.text
    assert "Auth for user" in caplog.text  # the log did capture the logins
    assert sftp_password not in everything
    for line in key_lines:
        assert line not in everything
    assert "bm90LWEta2V5LWF0LWFsbA" not in everything


# -- the connection extra's hookbridge settings ------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"pool": {"max_connections": "four"}}, "hookbridge.pool.max_connections"),
        ({"pool": {"max_connections": 0}}, "hookbridge.pool.max_connections"),
        ({"pool": {"idle_timeout": -1}}, "hookbridge.pool.idle_timeout"),
        ({"pool": {"size": 3}}, "hookbridge.pool.size"),
        ({"root": "relative/dir"}, "hookbridge.root"),
        ({"block_size": True}, "hookbridge.block_size"),
        ({"bogus": 1}, "hookbridge.bogus"),
        ({"ciphers": ["3des-cbc"]}, "hookbridge.ciphers"),  # legacy: never offered
        ({"ciphers": "aes128-gcm@openssh.com, nonsense"}, "hookbridge.ciphers"),
        ({"ciphers": []}, "hookbridge.ciphers"),
        ({"ciphers": 128}, "hookbridge.ciphers"),
        ({"retry": {"attempts": 0}}, "hookbridge.retry.attempts"),
    ],
)
async def test_bad_hookbridge_extra_names_conn_id_and_key(
    connect: Connect, settings: dict[str, object], field: str
) -> None:
    conn_id = connect("sftp_bad_extra", hookbridge=settings)
    with pytest.raises(ConfigurationError) as caught:
        async with SFTPAdapter(conn_id):
            pass
    assert caught.value.conn_id == conn_id
    assert caught.value.field == field
    assert f"conn_id {conn_id!r}" in str(caught.value)


async def test_extra_settings_apply_and_explicit_options_win(
    connect: Connect, sftp_server: SFTPTestServer
) -> None:
    conn_id = connect(
        hookbridge={"root": "/small", "pool": {"max_connections": 1}, "retry": {"attempts": 5}}
    )
    sftp_server.populate_small(count=1, size=10)
    async with SFTPAdapter(conn_id) as sftp:
        assert sftp.statistics().pool.pool.max_size == 1
        assert sftp.retry.attempts == 5
        assert len(await sftp.read_bytes("f00000.bin")) == 10  # relative to the extra's root
    async with SFTPAdapter(conn_id, max_connections=3, root="/") as sftp:
        assert sftp.statistics().pool.pool.max_size == 3
        assert len(await sftp.read_bytes("small/f00000.bin")) == 10


# -- root confinement ------------------------------------------------------------------------------


@pytest.fixture
def jail(sftp_server: SFTPTestServer, tmp_path: Path) -> Path:
    """/jail inside the served root, with links that lead out of it (and out of the server)."""
    root = sftp_server.root
    (root / "jail" / "sub").mkdir(parents=True)
    (root / "jail" / "ok.txt").write_bytes(b"inside")
    (root / "outside.txt").write_bytes(b"OUTSIDE")
    secret = tmp_path / "secret.txt"  # not served at all
    secret.write_bytes(b"SECRET")
    sftp_server.make_symlink("jail/link-out", "../outside.txt")
    sftp_server.make_symlink("jail/abs-out", str(secret))
    sftp_server.make_symlink("jail/sub/dir-out", "../..")
    sftp_server.make_symlink("jail/link-in", "ok.txt")
    return root


@pytest.mark.parametrize(
    "path", ["../outside.txt", "/outside.txt", "sub/../../outside.txt", "/", "/jail/../outside.txt"]
)
async def test_lexical_escapes_are_refused_before_anything_is_sent(
    conn_id: str, jail: Path, sent_requests: Sent, tmp_path: Path, path: str
) -> None:
    async with SFTPAdapter(conn_id, root="/jail") as sftp:
        sent_requests()
        for call in (
            lambda: sftp.read_bytes(path),
            lambda: sftp.write_bytes(path, b"x"),
            lambda: sftp.stat(path),
            lambda: sftp.exists(path),
            lambda: sftp.remove(path),
            lambda: sftp.makedirs(path),
            lambda: sftp.download(path, tmp_path / "x"),
            lambda: sftp.upload(jail / "jail" / "ok.txt", path),
            lambda: sftp.download_tree(path, tmp_path / "t"),
        ):
            with pytest.raises(PathRefused) as caught:
                await call()
            assert caught.value.path == path
        with pytest.raises(PathRefused):
            [e async for e in sftp.listdir(path)]
        with pytest.raises(PathRefused):
            async with sftp.open(path, "wb"):
                pass
        assert sent_requests() == []
    assert (jail / "outside.txt").read_bytes() == b"OUTSIDE"


@pytest.mark.parametrize("link", ["link-out", "abs-out", "sub/dir-out/outside.txt"])
async def test_links_out_of_the_root_are_refused_before_the_operation(
    conn_id: str, sftp_server: SFTPTestServer, jail: Path, sent_requests: Sent, link: str
) -> None:
    async with SFTPAdapter(conn_id, root="/jail") as sftp:
        read_before = sftp_server.statistics().bytes_read
        sent_requests()
        with pytest.raises(PathRefused, match=r"outside|will not resolve"):
            await sftp.read_bytes(link)
        with pytest.raises(PathRefused):
            await sftp.stat(link)
        with pytest.raises(PathRefused):
            async with sftp.open(link, "wb") as f:
                await f.write(b"overwritten")
        sent = sent_requests()
        # Only questions about the path were asked; no open, read, write or remove went out.
        assert sent
        assert all(m.startswith(("Sending realpath", "Sending lstat")) for m in sent), sent
        assert sftp_server.statistics().bytes_read == read_before
    assert (jail / "outside.txt").read_bytes() == b"OUTSIDE"


async def test_paths_inside_the_root_work(
    conn_id: str, jail: Path, tmp_path: Path, sent_requests: Sent
) -> None:
    async with SFTPAdapter(conn_id, root="/jail") as sftp:
        assert await sftp.read_bytes("ok.txt") == b"inside"
        assert await sftp.read_bytes("/jail/ok.txt") == b"inside"
        assert await sftp.read_bytes("link-in") == b"inside"  # a link that stays inside
        assert await sftp.exists("sub")
        names = sorted([e.name async for e in sftp.listdir(".")])
        assert names == ["abs-out", "link-in", "link-out", "ok.txt", "sub"]
        # Writing onto a link replaces the link itself: the outside file is never written.
        await sftp.write_bytes("link-out", b"new")
        assert (jail / "jail" / "link-out").read_bytes() == b"new"
        assert not (jail / "jail" / "link-out").is_symlink()
        assert (jail / "outside.txt").read_bytes() == b"OUTSIDE"
        # A tree download follows links only when asked, and never out of the root.
        result = await sftp.download_tree(".", tmp_path / "t", on_error="collect")
        assert sorted(os.listdir(tmp_path / "t")) == ["link-out", "ok.txt", "sub"]
        assert result.failures == ()
        followed = await sftp.download_tree(
            ".", tmp_path / "f", follow_symlinks=True, on_error="collect"
        )
        # link-out became a file above; the links that still lead out are refused
        refused = sorted(f.item.name for f in followed.failures)
        assert refused == ["abs-out", "dir-out"]
        assert all(isinstance(f.error, PathRefused) for f in followed.failures)
        assert (tmp_path / "f" / "link-in").read_bytes() == b"inside"


# -- SSH ciphers -----------------------------------------------------------------------------------


async def test_aes_gcm_is_preferred_and_the_ciphers_option_applies(connect: Connect) -> None:
    conn_id = connect()
    async with SFTPAdapter(conn_id) as sftp:
        # check() reports the cipher the live connection negotiated
        assert (await sftp.check()).detail.endswith(", cipher aes256-gcm@openssh.com")
    conn_id = connect("sftp_chacha", hookbridge={"ciphers": ["chacha20-poly1305@openssh.com"]})
    async with SFTPAdapter(conn_id) as sftp:
        assert (await sftp.check()).detail.endswith(", cipher chacha20-poly1305@openssh.com")
    async with SFTPAdapter(conn_id, ciphers="aes128-ctr, aes128-gcm@openssh.com") as sftp:
        assert sftp.spec()["options"] == {
            "ciphers": ["aes128-ctr", "aes128-gcm@openssh.com"]
        }  # explicit wins over the extra, and goes into the spec
        assert (await sftp.check()).detail.endswith(", cipher aes128-ctr")
    with pytest.raises(ConfigurationError) as caught:
        SFTPAdapter(conn_id, ciphers=["aes128-gcm@openssh.com", "arcfour"])
    assert caught.value.conn_id == conn_id
    assert caught.value.field == "ciphers"
    assert "aes256-gcm@openssh.com" in str(caught.value)  # says what is allowed


async def test_a_server_without_aes_gcm_still_negotiates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SFTPTestServer(
        root=tmp_path, user="hb-user", password="s3cret-SFTP-Pa55word", ciphers=["aes192-ctr"]
    ) as server:
        conn = server.airflow_connection(auth="password")
        monkeypatch.setenv("AIRFLOW_CONN_SFTP_OLD_CIPHERS", json.dumps(conn))
        async with SFTPAdapter("sftp_old_ciphers") as sftp:
            assert (await sftp.check()).detail.endswith(", cipher aes192-ctr")
            await sftp.write_bytes("x.bin", b"data")
            assert await sftp.read_bytes("x.bin") == b"data"


@pytest.mark.parametrize(
    "path",
    ["../jail-other/x.txt", "/jail-other/x.txt", "/jailbreak", "../jailbreak", "sibling/x.txt"],
)
async def test_siblings_sharing_the_roots_prefix_are_outside_it(
    conn_id: str, sftp_server: SFTPTestServer, jail: Path, sent_requests: Sent, path: str
) -> None:
    # "/jail-other" and "/jailbreak" start with "/jail" but are not below it; "sibling" is a
    # link inside the jail into "/jail-other", which only the server's realpath reveals.
    (jail / "jail-other").mkdir()
    (jail / "jail-other" / "x.txt").write_bytes(b"SIBLING")
    (jail / "jailbreak").write_bytes(b"BREAK")
    sftp_server.make_symlink("jail/sibling", "../jail-other")
    async with SFTPAdapter(conn_id, root="/jail") as sftp:
        sent_requests()
        with pytest.raises(PathRefused) as caught:
            await sftp.read_bytes(path)
        assert "outside" in str(caught.value)
        with pytest.raises(PathRefused):
            await sftp.write_bytes(path, b"overwritten")
        with pytest.raises(PathRefused):
            await sftp.stat(path)
        sent = sent_requests()
        # At most questions about the path (the link case); nothing was opened or written.
        assert all(m.startswith(("Sending realpath", "Sending lstat")) for m in sent), sent
    assert (jail / "jail-other" / "x.txt").read_bytes() == b"SIBLING"
    assert (jail / "jailbreak").read_bytes() == b"BREAK"


async def test_a_missing_key_file_is_a_configuration_error_at_once(
    connect: Connect, sftp_server: SFTPTestServer, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-key")
    conn_id = connect("sftp_no_key", auth="key", key_file=missing)
    with pytest.raises(ConfigurationError) as caught:
        async with SFTPAdapter(conn_id, retry=Retry(attempts=4, backoff=30.0)):
            pass
    assert caught.value.conn_id == conn_id
    assert caught.value.field == "extra.key_file"
    assert missing in str(caught.value)
    # Refused before connecting, and not retried (a 30 s backoff would have shown).
    assert sftp_server.statistics().connections_total == 0


async def test_downloading_into_a_missing_local_directory_names_it(
    conn_id: str, sftp_server: SFTPTestServer, tmp_path: Path
) -> None:
    sftp_server.populate_small(count=1, size=100)
    large = sftp_server.populate_large("large.bin", 600 * 1024)
    missing = tmp_path / "no" / "such-dir"
    async with SFTPAdapter(conn_id, block_size=64 * 1024) as sftp:
        for remote in ("/small/f00000.bin", "/" + large):  # one request / parallel blocks
            with pytest.raises(LocalFileError) as caught:
                await sftp.download(remote, missing / "copy.bin")
            message = str(caught.value)
            assert f"the local directory {str(missing)!r} does not exist" in message
            assert "hookbridge-part" not in message  # not the internal temporary name
            assert isinstance(caught.value, OSError)
            assert caught.value.errno == errno.ENOENT
        stats = sftp.statistics()
        assert stats.retries == 0
        assert stats.pool.pool.discarded == 0  # the connection was not blamed
    assert not (tmp_path / "no").exists()
