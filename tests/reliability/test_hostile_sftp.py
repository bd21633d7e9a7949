"""Hostile input over SFTP: paths out of the root, a stalled server, endless and lying files.

- Every path operation refuses a path that leaves the adapter's ``root`` (``..``, an absolute
  path elsewhere, a link inside the root to a directory outside it, a link out of the server's
  own jail) with :class:`~hookbridge.PathRefused`, and nothing outside changes.
- A server that stops answering under open connections ends every item of a fan-out with a
  timeout :class:`~hookbridge.TransportError` within the retry deadline (the shared stalled-server
  module covers servers that never answer the SSH handshake: SFTP connects at open).
- A file that grows forever is read to the size it had when the read began (the adapter has no
  size cap; the read's own bound is that size), and a server that claims 2**62 bytes gets a
  hookbridge error at its real end of file, without memory for the claim.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from reliability_subjects import Subject, timed_reads
from subject_sftp import sftp_only  # noqa: F401 -- the fixture

from hookbridge import HookBridgeError, PathRefused, Retry, TransportError

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
    pytest.mark.timeout(60),
]

HARD_DEADLINE = 20
SECRET = b"outside the root"


@pytest.fixture
def sftp(sftp_only: Subject) -> Subject:  # noqa: F811 -- the fixture imported above
    return sftp_only


@pytest.fixture
async def jailed(sftp: Subject, tmp_path: Path) -> AsyncIterator[tuple[Any, Path]]:
    """The adapter confined to ``/jail`` of the server, beside ``/outside`` and links out."""
    root: Path = sftp.server.root
    (root / "jail").mkdir()
    (root / "jail" / "inside.txt").write_bytes(b"inside")
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_bytes(SECRET)
    sftp.server.make_symlink("jail/out", root / "outside")  # in the server, out of the jail
    sftp.server.make_symlink("jail/etc", "/etc")  # out of the server's own root
    retry = Retry(attempts=2, backoff=0.0)
    with anyio.fail_after(HARD_DEADLINE):
        async with sftp.adapter(sftp.conn_id, root="/jail", retry=retry) as api:
            assert await api.read_bytes("inside.txt") == b"inside"  # the jail itself works
            yield api, tmp_path


ESCAPES = [
    "../outside/secret.txt",
    "/outside/secret.txt",
    "sub/../../outside/secret.txt",
    "out/secret.txt",  # a link inside the root to a directory outside it
    "etc/passwd",  # a link out of the server's own root
]


async def _listdir(api: Any, path: str) -> None:
    [_ async for _ in api.listdir(path)]


async def _open(api: Any, path: str) -> None:
    async with api.open(path, "rb") as file:
        await file.read()


def _operations(local: Path) -> dict[str, Callable[[Any, str], Awaitable[Any]]]:
    return {
        "read_bytes": lambda api, p: api.read_bytes(p),
        "stat": lambda api, p: api.stat(p),
        "exists": lambda api, p: api.exists(p),
        "listdir": lambda api, p: _listdir(api, p.rpartition("/")[0] or p),
        "open": _open,
        "download": lambda api, p: api.download(p, local / "copy"),
        "write_bytes": lambda api, p: api.write_bytes(p, b"overwritten"),
        "remove": lambda api, p: api.remove(p),
        "makedirs": lambda api, p: api.makedirs(p + ".d"),
    }


@pytest.mark.parametrize("path", ESCAPES)
@pytest.mark.parametrize(
    "operation",
    ["read_bytes", "stat", "exists", "listdir", "open", "download", "write_bytes", "remove",
     "makedirs"],
)  # fmt: skip
async def test_a_path_out_of_the_root_is_refused(
    sftp: Subject, jailed: tuple[Any, Path], operation: str, path: str
) -> None:
    api, local = jailed
    with pytest.raises(PathRefused):
        await _operations(local)[operation](api, path)
    assert _untouched(sftp.server.root / "outside", local)
    assert await api.read_bytes("inside.txt") == b"inside"  # the adapter is fine afterwards


def _untouched(outside: Path, local: Path) -> bool:
    # Small, local checks of the test's own files (ASYNC240 is about the loop's time).
    return (
        (outside / "secret.txt").read_bytes() == SECRET
        and sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
        and not (local / "copy").exists()
    )


ITEMS = 20
ATTEMPT_TIMEOUT = 0.4
DEADLINE = 1.0
SLACK = 1.5


async def test_a_server_that_stops_answering_times_out_every_item(sftp: Subject) -> None:
    server = sftp.server
    retry = Retry(attempts=3, backoff=0.0, deadline=DEADLINE)
    with anyio.fail_after(HARD_DEADLINE):
        async with sftp.adapter(
            sftp.conn_id, retry=retry, **sftp.attempt_timeout(ATTEMPT_TIMEOUT)
        ) as api:
            assert await sftp.read(api, 1) == 1
            server.stall()
            try:
                outcomes, elapsed = await timed_reads(sftp, api, ITEMS)
            finally:
                server.resume()
        with anyio.fail_after(10):
            while sftp.open_on_server():  # noqa: ASYNC110
                await anyio.sleep(0.01)
    assert sorted(o.index for o in outcomes) == list(range(ITEMS))
    errors = [o.error for o in outcomes]
    assert all(isinstance(e, HookBridgeError) for e in errors), errors
    assert all(
        "timeout" in str(e) or "deadline" in str(e).lower() for e in errors
    ), errors  # fmt: skip
    assert min(elapsed.values()) >= ATTEMPT_TIMEOUT * 0.9
    assert max(elapsed.values()) <= DEADLINE + SLACK, max(elapsed.values())
    print(
        f"\n[sftp] stalled under open connections: attempted={ITEMS} timed_out={ITEMS} "
        f"max_elapsed={max(elapsed.values()):.2f}s deadline={DEADLINE}s"
    )


async def test_a_file_that_grows_forever_is_read_to_its_size_at_the_start(sftp: Subject) -> None:
    async with sftp.adapter(sftp.conn_id, retry=Retry.none()) as api:
        with anyio.fail_after(HARD_DEADLINE):
            data = await api.read_bytes("hostile/growing")
            assert data == b"g" * 64 * 1024  # the first fstat's size, however much more there is
            async with api.open("hostile/growing") as file:
                assert len(await file.read()) == 64 * 1024
                assert len(await file.read(100)) == 100  # and no more than asked


async def test_a_server_that_lies_about_a_size_gets_an_error_not_the_memory(
    sftp: Subject,
) -> None:
    async with sftp.adapter(sftp.conn_id, retry=Retry.none()) as api:
        tracemalloc.start()
        try:
            with anyio.fail_after(HARD_DEADLINE), pytest.raises(HookBridgeError) as info:
                await api.read_bytes("hostile/liar")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert not isinstance(info.value, TransportError), repr(info.value)
    assert "hostile/liar" in str(info.value)
    assert peak < 32 * 1024 * 1024, peak  # read_bytes preallocates 16 MiB at most


async def test_a_stream_read_of_a_lying_size_stops_at_the_real_end(sftp: Subject) -> None:
    async with sftp.adapter(sftp.conn_id, retry=Retry.none()) as api:
        with anyio.fail_after(HARD_DEADLINE):
            async with api.open("hostile/liar") as file:
                assert await file.read() == b"small"  # not 2**62 requests, nor their tasks
