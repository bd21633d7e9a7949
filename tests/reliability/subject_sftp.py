"""The SFTP adapter as a reliability subject, over the loopback SSH/SFTP server and its storm.

Read of item ``i``: ``read_bytes("storm/{i}")`` (open, fstat, read, close: a file handle each
time, so a leaked handle shows on the server). Write of item ``i``: ``write_bytes("stormw/{i}")``
(a temporary file, then the ``posix-rename`` onto the target, where the storm strikes: see
``hookbridge.testing._sftp_storm`` for how each fate is acted out over SSH).

SSH multiplexes: a dropped connection cuts every operation it carries, not only the one whose
fate it was. The storm's connection is set up (its extra's ``hookbridge.pool``) with one
operation per connection, as HTTP/1.1 carries one request per connection, so that each fate lands
on its own item and the retry budget is the issue's; the cancellation storm uses the adapter's
shared connections (128 operations each) instead, through ``cancel_options``.

The connection carries every kind of secret an SFTP connection has: a password, and an
encrypted private key (PKCS#8: its key derivation takes a millisecond, where OpenSSH's bcrypt
format takes a second per connection) with its passphrase.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from reliability_subjects import Subject

from hookbridge.testing._sftp_storm import StormSFTPServer

__all__ = ["SFTP_PASSPHRASE", "SFTP_PASSWORD", "sftp_only", "sftp_subject"]

SFTP_LOGIN = "rel-sftp-user"
SFTP_PASSWORD = "sftp/Pa55 w0rd&=+"  # characters that percent- and form-encoding change
SFTP_PASSPHRASE = "key phrase/&=+ 9Xq"
#: A memory file system where there is one: thousands of tiny files are opened per run.
_FAST_DISK = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
#: The storm's pool: one operation per SSH connection (see the module docstring).
STORM_POOL = {"max_connections": 64, "max_requests_per_connection": 1}


def _private_key(server: StormSFTPServer) -> str:
    # The key the server accepts for its user, exported encrypted with the passphrase.
    key = server._client_key
    return key.export_private_key("pkcs8-pem", passphrase=SFTP_PASSPHRASE).decode()


def _connection(server: StormSFTPServer, host: str, port: int, key: str) -> dict[str, Any]:
    return {
        "conn_type": "sftp",
        "host": host,
        "port": port,
        "login": SFTP_LOGIN,
        "password": SFTP_PASSWORD,
        "extra": {
            "host_key": server.host_key_line,
            "private_key": key,
            "passphrase": SFTP_PASSPHRASE,
            "hookbridge": {"pool": STORM_POOL},
        },
    }


@contextmanager
def _level_restored(logger: logging.Logger) -> Iterator[None]:
    saved = logger.level
    try:
        yield
    finally:
        logger.setLevel(saved)


@asynccontextmanager
async def sftp_subject(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Subject]:
    """The SFTP adapter over the loopback SFTP server (its ``storm/`` and ``stormw/`` paths)."""
    from hookbridge.adapters.sftp import SFTPAdapter

    async def read(api: Any, i: int) -> int:
        return int(await api.read_bytes(f"storm/{i}"))

    async def write(api: Any, i: int) -> int:
        await api.write_bytes(f"stormw/{i}", str(i).encode())
        return i

    asyncssh_log = logging.getLogger("asyncssh")
    with (
        _level_restored(asyncssh_log),
        tempfile.TemporaryDirectory(prefix="rel-sftp-", dir=_FAST_DISK) as scratch,
    ):
        # No ~/.ssh of the machine's user changes what is verified.
        monkeypatch.setenv("HOME", scratch)
        root = os.path.join(scratch, "root")
        os.mkdir(root)
        async with StormSFTPServer(root=root, user=SFTP_LOGIN, password=SFTP_PASSWORD) as server:
            key = _private_key(server)

            def connect_to(host: str, port: int) -> str:
                conn = _connection(server, host, port, key)
                monkeypatch.setenv("AIRFLOW_CONN_RELIABILITY_SFTP_HOSTILE", json.dumps(conn))
                return "reliability_sftp_hostile"

            def storm(seed: int, **fates: Any) -> Any:
                # A storm reconnects thousands of times, and asyncssh logs ~20 INFO lines per
                # connection through Airflow's structlog formatter: a third of the run's CPU.
                # Quiet unless the test asked for DEBUG (the secrets test reads every line).
                if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
                    asyncssh_log.setLevel(logging.WARNING)  # setLevel: it clears level caches
                return server.storm(seed, **fates)

            conn = _connection(server, server.host, server.port, key)
            monkeypatch.setenv("AIRFLOW_CONN_RELIABILITY_SFTP", json.dumps(conn))
            yield Subject(
                name="sftp",
                adapter=SFTPAdapter,
                conn_id="reliability_sftp",
                read=read,
                write=write,
                storm=storm,
                open_on_server=lambda: server.open_on_server,
                connect_to=connect_to,
                attempt_timeout=lambda s: {"operation_timeout": s, "connect_timeout": s},
                secrets=(SFTP_PASSWORD, SFTP_PASSPHRASE, key),
                server=server,
                cancel_options={"max_connections": 4, "max_requests_per_connection": 128},
                # A whole fan-out takes ~1 s (four requests a read): cut within its first 0.2 s
                # so that 100 rounds stay near 15 s of the CI budget.
                cancel_horizon=0.2,
                write_method="rename",
                connects_at_open=True,
            )


@pytest.fixture
async def sftp_only(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Subject]:
    """The SFTP subject alone, for the SFTP-only modules (not parametrized over SUBJECTS)."""
    async with sftp_subject(monkeypatch) as subject:
        yield subject
