"""Writes whose answer was lost are applied once; reads answered FX_FAILURE are retried.

Found by the reliability suite's fault storm (tests/reliability), here one fate at a time on the
storm server (``hookbridge.testing._sftp_storm``): an upload ends with a ``posix-rename`` of its
temporary file onto the target; when the connection drops after the server applied it and
before the answer, a retry used to upload again and rename again (the write applied twice, and a
newer write of someone else's in between overwritten). Now the retry settles the lost rename
first: the temporary file gone means it was applied.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hookbridge import Retry
from hookbridge.adapters.sftp import RemoteFailure, SFTPAdapter
from hookbridge.testing._sftp_storm import StormSFTPServer
from hookbridge.testing._storm import Storm

USER, PASSWORD = "storm-user", "storm-Pa55word-exactly-once"

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

RETRY = Retry(attempts=3, backoff=0.0)


@pytest.fixture
async def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StormSFTPServer]:
    async with StormSFTPServer(root=tmp_path, user=USER, password=PASSWORD) as made:
        monkeypatch.setenv("AIRFLOW_CONN_SFTP_STORM", json.dumps(made.airflow_connection()))
        yield made


def _item(storm: Storm, method: str, *fates: str) -> int:
    """The first item whose attempts meet ``fates`` in that order (the storm is seeded)."""
    return next(
        item
        for item in range(10_000)
        if all(storm.fate(method, item, n + 1) == fate for n, fate in enumerate(fates))
    )


@pytest.mark.parametrize("lost", ["drop-during", "drop-before", "429"])
async def test_a_write_whose_rename_answer_was_lost_is_applied_once(
    server: StormSFTPServer, lost: str
) -> None:
    storm = server.storm(1, drop=0.5, throttle=0.2, error=0.0)
    item = _item(storm, "rename", lost, "ok")
    async with SFTPAdapter("sftp_storm", retry=RETRY) as sftp:
        await sftp.write_bytes(f"stormw/{item}", b"content")
        stats = sftp.statistics()
    assert stats.retries == 1
    assert storm.fates[lost] == 1
    # drop-during: applied by the lost request and settled by the retry (no second rename);
    # drop-before and a shed connection: not applied then, so the retry renames the same file.
    assert storm.applied[item] == 1
    assert storm.attempts["rename", item] == (1 if lost == "drop-during" else 2)
    directory = server.root / "stormw"
    assert sorted(p.name for p in directory.iterdir()) == [str(item)]  # no temporary left
    assert (directory / str(item)).read_bytes() == b"content"


async def test_a_write_answered_fx_failure_is_reported_not_retried(
    server: StormSFTPServer,
) -> None:
    storm = server.storm(2, drop=0.0, error=0.5, throttle=0.0)
    item = _item(storm, "rename", "500", "ok")
    async with SFTPAdapter("sftp_storm", retry=RETRY) as sftp:
        with pytest.raises(RemoteFailure) as info:
            await sftp.write_bytes(f"stormw/{item}", b"content")
        assert sftp.statistics().retries == 0
    assert info.value.code == 4
    assert storm.applied[item] == 0 and storm.attempts["rename", item] == 1
    assert list((server.root / "stormw").iterdir()) == []  # its temporary file removed


async def test_a_read_answered_fx_failure_is_retried(server: StormSFTPServer) -> None:
    storm = server.storm(3, drop=0.0, error=0.5, throttle=0.0)
    item = _item(storm, "open", "503", "ok")
    async with SFTPAdapter("sftp_storm", retry=RETRY) as sftp:
        assert await sftp.read_bytes(f"storm/{item}") == str(item).encode()
        assert sftp.statistics().retries == 1
    assert storm.attempts["open", item] == 2
    # A caller's own policy without retries is still obeyed.
    storm = server.storm(4, drop=0.0, error=0.5, throttle=0.0)
    item = _item(storm, "open", "500")
    async with SFTPAdapter("sftp_storm", retry=Retry.none()) as sftp:
        with pytest.raises(RemoteFailure):
            await sftp.read_bytes(f"storm/{item}")
    assert storm.attempts["open", item] == 1
