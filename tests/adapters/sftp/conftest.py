"""Fixtures of the SFTP adapter tests: the loopback SFTP server and Airflow connections to it.

Connections are real Airflow connections defined as operators define them without a deployment:
an ``AIRFLOW_CONN_<ID>`` environment variable holding JSON. ``HOME`` points at an empty directory
so that no ``~/.ssh/known_hosts`` or ``~/.ssh/config`` of the machine changes what is verified.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from hookbridge.testing._sftp_server import SFTPTestServer

#: Credentials of the test server; the secret-leak tests look for them everywhere.
USER = "hb-user"
PASSWORD = "s3cret-SFTP-Pa55word"

Connect = Callable[..., str]


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
async def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SFTPTestServer]:
    """The loopback SFTP server with this suite's credentials, serving an empty root."""
    root = tmp_path_factory.mktemp("sftp-root")
    async with SFTPTestServer(root=root, user=USER, password=PASSWORD) as server:
        yield server


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch, sftp_server: SFTPTestServer) -> Connect:
    """Define an Airflow connection to ``sftp_server``: ``conn_id = connect(hookbridge={...})``.

    Keywords become the connection's extra (``host_key`` is pinned unless given as None);
    ``conn_id``, ``auth`` ("password" or "key") and ``fields`` shape the connection itself.
    """

    def define(
        conn_id: str = "sftp_test",
        *,
        auth: str = "password",
        fields: dict[str, Any] | None = None,
        **extra: Any,
    ) -> str:
        conn = sftp_server.airflow_connection(auth="key" if auth == "key" else "password")
        merged = dict(conn["extra"])
        merged.update(extra)
        conn["extra"] = {k: v for k, v in merged.items() if v is not None}
        conn.update(fields or {})
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return define


@pytest.fixture
def sftp_password() -> str:
    """The password of ``sftp_server``'s user, for tests that look for leaks."""
    return PASSWORD


@pytest.fixture
def conn_id(connect: Connect) -> str:
    """A password connection with the server's host key pinned."""
    return connect()


@pytest.fixture
def sent_requests(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """What the asyncssh SFTP client sent since the last call, read from its DEBUG log.

    asyncssh logs every request it sends ("Sending open for ...") at DEBUG: a record of the
    traffic without patching the client.
    """
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    seen = 0

    def take() -> list[str]:
        nonlocal seen
        records = caplog.records[seen:]
        seen = len(caplog.records)
        return [m for m in map(_message, records) if m.startswith(_CLIENT_REQUESTS)]

    return take


#: What the client logs per request; the in-process server logs its answers differently
#: ("Sending OK", "Sending handle ...", "Sending 3 names").
_CLIENT_REQUESTS = tuple(
    f"Sending {verb}"
    for verb in (
        "open",
        "close",
        "read",
        "write",
        "stat",
        "lstat",
        "fstat",
        "realpath",
        "opendir",
        "readdir",
        "remove",
        "mkdir",
        "rmdir",
        "rename",
        "OpenSSH POSIX rename",
    )
)


def _message(record: logging.LogRecord) -> str:
    """The message without asyncssh's "[conn=3, chan=0] " context prefix."""
    if not record.name.startswith("asyncssh"):
        return ""
    message = record.getMessage()
    if message.startswith("["):
        message = message.partition("] ")[2]
    return message
