"""The loopback HTTP test server answers every endpoint family as its docstring says."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from yarl import URL

import hookbridge
from hookbridge.testing._http_server import (
    HTTPTestServer,
    expected_sha256,
    pattern_bytes,
    retry_after_date,
)

# aiohttp is asyncio-only: this overrides the asyncio+trio parametrization of tests/conftest.py.
pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

REPO_ROOT = Path(hookbridge.__file__).resolve().parents[1]


@pytest.fixture
async def server() -> AsyncIterator[HTTPTestServer]:
    async with HTTPTestServer() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(session: aiohttp.ClientSession, url: str | URL, **kwargs: Any) -> Any:
    async with session.get(url, **kwargs) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 2 s")


# -- items -----------------------------------------------------------------------------------------


async def test_item_get_and_missing(server: HTTPTestServer, session: aiohttp.ClientSession) -> None:
    assert await get_json(session, server.url_for("/items/7")) == {"id": 7, "name": "item-7"}
    for path in ("/items/1000", "/items/-1", "/items/5?total=5"):
        async with session.get(server.url_for(path)) as response:
            assert response.status == 404
            assert (await response.json())["error"].startswith("no item")
    assert (await get_json(session, server.url_for("/items/1500?total=2000")))["id"] == 1500
    async with session.get(server.url_for("/items/abc")) as response:
        assert response.status == 400
        assert "integer" in (await response.json())["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_item_writes_echo(
    server: HTTPTestServer, session: aiohttp.ClientSession, method: str
) -> None:
    headers = {"X-Trace": "abc", "Authorization": "Bearer secret-token"}
    async with session.request(
        method, server.url_for("/items/3?q=1"), json={"name": "new"}, headers=headers
    ) as response:
        assert response.status == 200
        echo = await response.json()
    assert echo["method"] == method
    assert echo["id"] == 3
    assert echo["json"] == {"name": "new"}
    assert echo["query"] == {"q": "1"}
    assert echo["headers"]["x-trace"] == "abc"
    assert echo["headers"]["authorization"] == "<present>"
    assert "secret-token" not in await response.text()

    async with session.request(method, server.url_for("/items/3"), data=b"plain") as response:
        echo = await response.json()
    assert (echo["json"], echo["data"], echo["size"]) == (None, "plain", 5)


# -- pagination ------------------------------------------------------------------------------------

Traverse = Callable[[aiohttp.ClientSession, str, int], Awaitable[list[int]]]
MAX_PAGES = 50


async def traverse_nextlink(session: aiohttp.ClientSession, url: str, total: int) -> list[int]:
    ids: list[int] = []
    next_url: URL | None = URL(f"{url}/paged/nextlink?size=100&total={total}")
    for _ in range(MAX_PAGES):
        if next_url is None:
            return ids
        body = await get_json(session, next_url)
        ids += [item["id"] for item in body["value"]]
        link = body.get("@odata.nextLink")
        next_url = None if link is None else URL(link)
    raise AssertionError("no end of pages")


async def traverse_link_header(session: aiohttp.ClientSession, url: str, total: int) -> list[int]:
    ids: list[int] = []
    next_url: URL | None = URL(f"{url}/paged/link?size=100&total={total}")
    for _ in range(MAX_PAGES):
        if next_url is None:
            return ids
        async with session.get(next_url) as response:
            ids += [item["id"] for item in await response.json()]
            assert "last" in response.links
            next_link = response.links.get("next")
            next_url = None if next_link is None else URL(str(next_link["url"]))
    raise AssertionError("no end of pages")


async def traverse_page_number(session: aiohttp.ClientSession, url: str, total: int) -> list[int]:
    ids: list[int] = []
    for page in range(1, MAX_PAGES):
        body = await get_json(session, f"{url}/paged/page?page={page}&size=100&total={total}")
        assert body["page"] == page
        ids += [item["id"] for item in body["items"]]
        if page >= body["total_pages"]:
            return ids
    raise AssertionError("no end of pages")


async def traverse_offset(session: aiohttp.ClientSession, url: str, total: int) -> list[int]:
    ids: list[int] = []
    offset = 0
    for _ in range(MAX_PAGES):
        body = await get_json(session, f"{url}/paged/offset?offset={offset}&total={total}")
        ids += [item["id"] for item in body["items"]]
        offset += len(body["items"])
        if offset >= body["total"] or not body["items"]:
            return ids
    raise AssertionError("no end of pages")


async def traverse_cursor(session: aiohttp.ClientSession, url: str, total: int) -> list[int]:
    ids: list[int] = []
    params = {"size": "100", "total": str(total)}
    for _ in range(MAX_PAGES):
        body = await get_json(session, f"{url}/paged/cursor", params=params)
        ids += [item["id"] for item in body["items"]]
        if body["next_cursor"] is None:
            return ids
        assert "offset" not in body["next_cursor"]  # opaque, not a readable number
        params["cursor"] = body["next_cursor"]
    raise AssertionError("no end of pages")


@pytest.mark.parametrize(
    "traverse",
    [
        traverse_nextlink,
        traverse_link_header,
        traverse_page_number,
        traverse_offset,
        traverse_cursor,
    ],
)
@pytest.mark.parametrize("total", [0, 1, 200, 250])
async def test_pagination_visits_every_item_once(
    server: HTTPTestServer, session: aiohttp.ClientSession, traverse: Traverse, total: int
) -> None:
    assert await traverse(session, server.url, total) == list(range(total))


async def test_pagination_default_total_and_size(
    server: HTTPTestServer, session: aiohttp.ClientSession
) -> None:
    body = await get_json(session, server.url_for("/paged/page"))
    assert (len(body["items"]), body["total_pages"]) == (100, 10)
    assert await traverse_nextlink(session, server.url, server.items) == list(range(1000))


async def test_nextlink_relative_and_foreign_host(
    server: HTTPTestServer, session: aiohttp.ClientSession
) -> None:
    first = server.url_for("/paged/nextlink?size=10&total=30&relative=1")
    body = await get_json(session, first)
    link = body["@odata.nextLink"]
    assert link.startswith("/paged/nextlink?")
    second = await get_json(session, URL(first).join(URL(link)))
    assert second["value"][0]["id"] == 10

    body = await get_json(session, server.url_for("/paged/nextlink?size=10&total=30&host=other"))
    link_url = URL(body["@odata.nextLink"])
    assert (link_url.host, link_url.port) == ("localhost", server.port)
    assert link_url.query["host"] == "other"  # every later page points away too

    body = await get_json(
        session, server.url_for("/paged/nextlink?size=10&total=30&host=evil.invalid:8080")
    )
    assert URL(body["@odata.nextLink"]).host == "evil.invalid"


async def test_bad_pagination_arguments_are_400(
    server: HTTPTestServer, session: aiohttp.ClientSession
) -> None:
    for path in ("/paged/page?size=0", "/paged/offset?offset=-1", "/paged/cursor?cursor=@@@"):
        async with session.get(server.url_for(path)) as response:
            assert response.status == 400
            assert (await response.json())["status"] == 400


# -- throttling and the request log ----------------------------------------------------------------


async def test_throttle_schedule(server: HTTPTestServer, session: aiohttp.ClientSession) -> None:
    server.throttle(count=2, status=429, retry_after="2", path_prefix="/items")
    server.throttle(count=1, status=503, retry_after=None)
    assert server.pending_faults == 3

    statuses = []
    for path in ("/headers", "/items/1", "/items/2", "/items/3", "/items/4"):
        async with session.get(server.url_for(path)) as response:
            statuses.append((response.status, response.headers.get("Retry-After")))
    # /headers matches only the unfiltered 503 rule, which comes after the /items rule in order.
    assert statuses == [(503, None), (429, "2"), (429, "2"), (200, None), (200, None)]
    assert server.pending_faults == 0
    assert [record.status for record in server.requests] == [503, 429, 429, 200, 200]


async def test_throttle_by_method_and_clear_faults(
    server: HTTPTestServer, session: aiohttp.ClientSession
) -> None:
    server.throttle(count=1, retry_after=1.0, method="post")
    async with session.get(server.url_for("/items/1")) as response:
        assert response.status == 200
    async with session.post(server.url_for("/items/1")) as response:
        assert (response.status, response.headers["Retry-After"]) == (429, "1")
    server.throttle(count=5)
    server.clear_faults()
    async with session.get(server.url_for("/items/1")) as response:
        assert response.status == 200


async def test_retry_after_http_date(
    server: HTTPTestServer, session: aiohttp.ClientSession
) -> None:
    before = datetime.now(timezone.utc)
    server.throttle(count=1, status=503, retry_after=retry_after_date(30))
    async with session.get(server.url_for("/items/1")) as response:
        assert response.status == 503
        header = response.headers["Retry-After"]
    assert header.endswith(" GMT")
    when = email.utils.parsedate_to_datetime(header)
    # Rounded up to whole seconds: never earlier than asked, at most a second (plus run time) later.
    assert when >= before + timedelta(seconds=30)
    assert when <= datetime.now(timezone.utc) + timedelta(seconds=31)
    now = datetime.now(timezone.utc)
    assert email.utils.parsedate_to_datetime(retry_after_date(0.5)) >= now + timedelta(seconds=0.5)


async def test_request_log_times_and_count(
    server: HTTPTestServer, session: aiohttp.ClientSession
) -> None:
    loop = asyncio.get_running_loop()
    loop_before, mono_before = loop.time(), time.monotonic()
    await get_json(session, server.url_for("/items/1?x=y"), headers={"X-Thing": "1"})
    await get_json(session, server.url_for("/headers"))
    async with session.post(server.url_for("/items/2"), json={}) as response:
        assert response.status == 200
    loop_after, mono_after = loop.time(), time.monotonic()

    records = server.requests
    assert [(r.method, r.path) for r in records] == [
        ("GET", "/items/1"),
        ("GET", "/headers"),
        ("POST", "/items/2"),
    ]
    assert records[0].query == {"x": "y"}
    assert records[0].headers["x-thing"] == "1"
    assert all(r.status == 200 for r in records)
    assert loop_before <= records[0].loop_time <= records[1].loop_time <= records[2].loop_time
    assert records[2].loop_time <= loop_after
    assert mono_before <= records[0].time <= records[2].time <= mono_after
    assert server.count() == 3
    assert server.count("/items") == 2
    assert server.count("/items", method="post") == 1
    assert server.request_count == 3
    server.clear()
    assert (server.requests, server.count(), server.request_count) == ([], 0, 0)


async def test_request_log_can_be_disabled(session: aiohttp.ClientSession) -> None:
    async with HTTPTestServer(log_requests=False) as server:
        await get_json(session, server.url_for("/items/1"))
        assert server.requests == []
        assert server.request_count == 1


# -- slow, big, dropped ----------------------------------------------------------------------------


async def test_slow_and_slow_stream(server: HTTPTestServer, session: aiohttp.ClientSession) -> None:
    started = time.monotonic()
    assert await get_json(session, server.url_for("/slow?delay=0.05")) == {"delay": 0.05}
    # The loop may wake a timer up to its clock resolution early.
    assert time.monotonic() - started >= 0.04

    async with session.get(server.url_for("/slow/stream?chunks=3&interval=0.01")) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        lines = [line async for line in response.content]
    assert lines == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n"]

    async with session.get(server.url_for("/slow?delay=-1")) as response:
        assert response.status == 400


async def test_bytes_stream_with_checksum(
    server: HTTPTestServer, session: aiohttp.ClientSession
) -> None:
    size = 5 * 1024 * 1024 + 123
    digest = hashlib.sha256()
    received = 0
    async with session.get(server.url_for(f"/bytes/{size}")) as response:
        assert response.content_length == size
        assert response.headers["X-Checksum-Sha256"] == expected_sha256(size)
        async for chunk in response.content.iter_chunked(256 * 1024):
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == expected_sha256(size)

    async with session.get(server.url_for("/bytes/0")) as response:
        assert await response.read() == b""
        assert response.headers["X-Checksum-Sha256"] == hashlib.sha256(b"").hexdigest()


async def test_expected_sha256_matches_pattern() -> None:
    for n in (0, 1, 63, 64, 65, 65536, 65537, 200_000):
        assert expected_sha256(n) == hashlib.sha256(pattern_bytes(n)).hexdigest()
    assert pattern_bytes(70)[60:70] == b"YZ+/012345"


async def test_big_bytes_checksum_only_on_request(
    server: HTTPTestServer, session: aiohttp.ClientSession
) -> None:
    size = 17 * 1024 * 1024
    async with session.get(server.url_for(f"/bytes/{size}")) as response:
        assert "X-Checksum-Sha256" not in response.headers
        response.close()  # no need to read 17 MB: the header is the point
    async with session.get(server.url_for(f"/bytes/{size}?checksum=1")) as response:
        assert response.headers["X-Checksum-Sha256"] == expected_sha256(size)
        response.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_drop_mid_body(
    server: HTTPTestServer, session: aiohttp.ClientSession, method: str
) -> None:
    async with session.request(method, server.url_for("/drop?after_bytes=1000")) as response:
        assert response.content_length == 1000 + 64 * 1024
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert server.count("/drop") == 1


async def test_drop_next_before_response(
    server: HTTPTestServer, session: aiohttp.ClientSession
) -> None:
    # aiohttp's client re-sends an idempotent request once after a disconnect: two drops per GET.
    server.drop_next(count=2, path_prefix="/items")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.get(server.url_for("/items/1")):
            pass
    assert [(r.path, r.status) for r in server.requests] == [("/items/1", None)] * 2

    server.clear()
    server.drop_next(count=1, method="POST")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.post(server.url_for("/items/1"), json={"a": 1}):
            pass
    assert server.count() == 1  # a POST is not re-sent
    await get_json(session, server.url_for("/items/1"))  # the schedule is used up


# -- auth, status, headers -------------------------------------------------------------------------


async def test_basic_auth(session: aiohttp.ClientSession) -> None:
    async with HTTPTestServer(user="alice", password="s3cret") as server:
        url = server.url_for("/auth/basic")
        for headers in (
            {},
            {"Authorization": aiohttp.encode_basic_auth("alice", "wrong")},
            {"Authorization": "Bearer s3cret"},
            {"Authorization": "Basic !!notbase64"},
        ):
            async with session.get(url, headers=headers) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"].startswith("Basic")
        good = {"Authorization": aiohttp.encode_basic_auth("alice", "s3cret")}
        assert await get_json(session, url, headers=good) == {
            "authenticated": True,
            "user": "alice",
        }

        echo = server.url_for("/auth/echo")
        assert await get_json(session, echo) == {"authorization": False}
        async with session.get(echo, headers=good) as response:
            text = await response.text()
        assert "s3cret" not in text
        assert await response.json() == {"authorization": True}


async def test_status_endpoint(server: HTTPTestServer, session: aiohttp.ClientSession) -> None:
    async with session.get(server.url_for("/status/503?retry_after=7")) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "7"
        assert (await response.json())["status"] == 503
    async with session.post(server.url_for("/status/500?body_size=100000")) as response:
        assert response.status == 500
        assert len(await response.read()) > 100_000
    async with session.get(server.url_for("/status/204")) as response:
        assert (response.status, await response.read()) == (204, b"")
    async with session.get(server.url_for("/status/99")) as response:
        assert response.status == 400


async def test_headers_echo_hides_credentials(
    server: HTTPTestServer, session: aiohttp.ClientSession
) -> None:
    body = await get_json(
        session,
        server.url_for("/headers"),
        headers={"Authorization": "Bearer top-secret", "X-Custom": "v"},
    )
    assert body["headers"]["authorization"] == "<present>"
    assert body["headers"]["x-custom"] == "v"
    assert "top-secret" not in str(body)
    # The in-process log keeps what was sent, so a test can check which credentials went out.
    assert server.requests[-1].headers["authorization"] == "Bearer top-secret"


# -- connections and lifecycle ---------------------------------------------------------------------


async def test_open_connections_return_to_zero(server: HTTPTestServer) -> None:
    assert (server.open_connections, server.total_connections) == (0, 0)
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(
            *(get_json(session, server.url_for("/slow?delay=0.05")) for _ in range(3))
        )
        assert server.open_connections == 3  # kept alive in the client's pool
        await get_json(session, server.url_for("/items/1"))
        assert server.total_connections == 3
    await wait_for(lambda: server.open_connections == 0)
    assert server.total_connections == 3


async def test_stop_with_a_request_in_flight() -> None:
    server = HTTPTestServer(shutdown_timeout=0.1)
    await server.start()
    failures: list[BaseException] = []

    async def slow_client(session: aiohttp.ClientSession) -> None:
        try:
            await get_json(session, server.url_for("/slow?delay=60"))
        except aiohttp.ClientError as exc:
            failures.append(exc)

    with anyio.fail_after(10):
        async with aiohttp.ClientSession() as session, anyio.create_task_group() as tg:
            tg.start_soon(slow_client, session)
            await wait_for(lambda: server.count("/slow") == 1)
            await server.stop()
    assert len(failures) == 1
    assert server.open_connections == 0
    assert server.requests[0].status is None


async def test_lifecycle() -> None:
    server = HTTPTestServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    async with server:
        assert server.url == f"http://127.0.0.1:{server.port}"
    await server.stop()  # idempotent
    with pytest.raises(RuntimeError, match="create a new one"):
        await server.start()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_subprocess_mode(signum: signal.Signals) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "hookbridge.testing._http_server", "--port", "0"]
    async with await anyio.open_process([*command, "--items", "50"], env=env) as process:
        assert process.stdout is not None
        try:
            with anyio.fail_after(20):
                line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 200)
                url = line.decode().strip()
                assert url.startswith("http://127.0.0.1:")
                async with aiohttp.ClientSession() as session:
                    assert await get_json(session, f"{url}/items/49") == {
                        "id": 49,
                        "name": "item-49",
                    }
                    async with session.get(f"{url}/items/50") as response:
                        assert response.status == 404
                process.send_signal(signum)
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
