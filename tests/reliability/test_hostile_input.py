"""Hostile input: each gets a specific hookbridge error, no crash, no unbounded memory or loop.

Malformed JSON, a wrong content type, bodies over the cap, a server that streams forever, a
pagination loop back to an earlier page, a next link or a redirect to a foreign host, and absurd
Retry-After values (negative, huge, garbage dates), over HTTP. Each adapter's own hostile input
has its module: test_hostile_msgraph.py ($batch answers), test_hostile_winrm.py (WS-Management
output), test_hostile_sftp.py (paths out of the root, lying sizes).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from reliability_subjects import ABSURD_RETRY_AFTER, Subject

from hookbridge import (
    HostRefused,
    MalformedResponse,
    NextLink,
    PageRequest,
    PaginationRefused,
    ResponseTooLarge,
    Retry,
    Throttled,
    paginate,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
    pytest.mark.timeout(60),
]

HARD_DEADLINE = 15
FOREIGN = "evil.example"


@pytest.fixture
async def http(subject: Subject) -> AsyncIterator[tuple[Any, Any]]:
    """The HTTP adapter open on its server (a fast retry policy), and the server."""
    if subject.name != "http":
        pytest.skip("HTTP hostile input")
    subject.server.log_requests = True  # off for the storm; these tests count requests
    retry = Retry(attempts=3, backoff=0.01, max_retry_after=5.0)
    async with subject.adapter(subject.conn_id, retry=retry, max_body_size=64 * 1024) as api:
        with anyio.fail_after(HARD_DEADLINE):
            yield api, subject.server


async def _all_pages(api: Any, endpoint: str, **options: Any) -> list[Any]:
    return [page async for page in api.pages(endpoint, strategy=NextLink(), **options)]


@pytest.mark.parametrize(
    ("kind", "message"), [("malformed-json", "not JSON"), ("html", "not JSON")]
)
async def test_a_page_that_is_not_json_is_malformed(
    http: tuple[Any, Any], kind: str, message: str
) -> None:
    api, _ = http
    with pytest.raises(MalformedResponse, match=message) as info:
        await _all_pages(api, f"/hostile/{kind}")
    assert info.value.url is not None and kind in info.value.url


async def test_a_body_over_the_cap_is_refused_before_it_is_buffered(http: tuple[Any, Any]) -> None:
    api, _ = http
    with pytest.raises(ResponseTooLarge, match="Content-Length says") as declared:
        await api.get("/bytes/1000000")
    assert declared.value.limit == 64 * 1024
    assert (await api.get("/items/1")).json()["id"] == 1  # the adapter is fine afterwards


async def test_a_server_that_streams_forever_is_cut_at_the_cap(http: tuple[Any, Any]) -> None:
    api, _ = http
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge, match="more than 65536 bytes arrived"):
            # Chunked, no length, a billion chunks: only the cap ends it.
            await api.get("/slow/stream?chunks=1000000000&interval=0")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak  # the cap (64 KiB) and its buffers, not the stream


@pytest.mark.parametrize(("pages", "back"), [(2, 1), (5, 2), (40, 3)])
async def test_a_next_link_back_to_an_earlier_page_is_a_loop(
    http: tuple[Any, Any], pages: int, back: int
) -> None:
    api, server = http
    server.clear()
    seen: list[int] = []

    async def read_all() -> None:
        endpoint = f"/hostile/loop?page=1&pages={pages}&back={back}"
        async for page in api.pages(endpoint, strategy=NextLink()):
            seen.extend(page.items)

    with pytest.raises(MalformedResponse, match=f"same page request of page {back} again"):
        await read_all()
    assert seen == list(range(1, pages + 1))  # every page once, then the loop is refused
    assert server.count("/hostile/loop") == pages


async def test_a_loop_longer_than_the_remembered_pages_is_stopped_by_max_pages() -> None:
    # The loop memory is bounded (constant memory over millions of pages): a cycle longer than
    # it is not seen as a loop, and max_pages is what bounds it.
    url = "https://api.example.com/p"

    class Cycle:
        status, headers = 200, {}

        def __init__(self, n: int) -> None:
            self.n = n
            self.url = f"{url}?n={n}"

        def json(self) -> Any:
            return {"value": [self.n], "@odata.nextLink": f"{url}?n={(self.n + 1) % 200}"}

    async def fetch(request: PageRequest) -> Cycle:
        return Cycle(int(request.url.rpartition("=")[2]) if "=" in request.url else 0)

    pages = [p async for p in paginate(fetch, PageRequest(url), NextLink(), max_pages=500)]
    assert len(pages) == 500


async def test_a_next_link_to_a_foreign_host_is_refused_before_it_is_fetched(
    http: tuple[Any, Any],
) -> None:
    api, server = http
    server.clear()
    with pytest.raises(PaginationRefused, match=FOREIGN):
        await _all_pages(api, f"/paged/nextlink?host={FOREIGN}&size=5&total=20")
    assert server.count("/paged/nextlink") == 1


async def test_a_redirect_to_a_foreign_host_is_refused(http: tuple[Any, Any]) -> None:
    api, _ = http
    with pytest.raises(HostRefused, match=FOREIGN):
        await api.get(f"/redirect?to=http://{FOREIGN}/steal")


@pytest.mark.parametrize(
    ("retry_after", "waited"),
    ABSURD_RETRY_AFTER,
)
@pytest.mark.parametrize("status", [429, 503])
async def test_absurd_retry_after_values_end_in_throttled_quickly(
    http: tuple[Any, Any], retry_after: str, waited: int | None, status: int
) -> None:
    api, server = http
    server.clear()
    started = anyio.current_time()
    with pytest.raises(Throttled) as info:
        await api.get(f"/status/{status}?retry_after={retry_after}")
    took = anyio.current_time() - started
    assert info.value.retry_after is None or info.value.retry_after >= 0
    attempts = server.count(f"/status/{status}")
    assert attempts == (1 if waited == 0 else 3)
    assert took < 3.0, took  # never a wait of what the header claims
    # Nor is the adapter paused by it afterwards.
    with anyio.fail_after(2):
        assert (await api.get("/items/2")).json()["id"] == 2
