"""Hostile Graph answers: each gets a specific hookbridge error, no crash, no unbounded loop/memory.

The adapter talks to ``HostileGraphServer`` (hookbridge.testing._graph_hostile) with a real
token from the emulator: malformed JSON, HTML where JSON belongs, an ``@odata.nextLink`` loop and
one to a foreign host, a foreign ``@odata.deltaLink``, ``$batch`` answers with missing, duplicate,
unknown or malformed entries, absurd Retry-After values on 429 and 503, a body over the cap and a
body that never ends.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from reliability_subjects import ABSURD_RETRY_AFTER, Subject
from subject_msgraph import graph_subject  # noqa: F401 -- the fixture

from hookbridge import (
    HookBridgeError,
    MalformedResponse,
    PaginationRefused,
    RemoteStatusError,
    ResponseTooLarge,
    Retry,
    Throttled,
)
from hookbridge.testing._graph_hostile import BatchMode, HostileGraphServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
    pytest.mark.timeout(60),
]

HARD_DEADLINE = 15
FOREIGN = "evil.example"
CAP = 64 * 1024


@pytest.fixture
async def hostile(
    graph_subject: Subject,  # noqa: F811 -- the fixture imported above
) -> AsyncIterator[tuple[Any, HostileGraphServer]]:
    """The Graph adapter open on the hostile server (a fast retry policy), and the server."""
    subject = graph_subject
    async with HostileGraphServer() as server:
        conn_id = subject.connect_to("127.0.0.1", server.port)
        retry = Retry(attempts=3, backoff=0.01, max_retry_after=5.0)
        async with subject.adapter(conn_id, retry=retry, max_body_size=CAP) as api:
            with anyio.fail_after(HARD_DEADLINE):
                yield api, server


@pytest.mark.parametrize("kind", ["malformed-json", "html"])
async def test_a_page_that_is_not_json_is_malformed(
    hostile: tuple[Any, HostileGraphServer], kind: str
) -> None:
    api, _ = hostile
    with pytest.raises(MalformedResponse, match="not JSON") as info:
        [_ async for _ in api.items(f"hostile/{kind}")]
    assert info.value.url is not None
    assert kind in info.value.url
    with pytest.raises(MalformedResponse, match="not JSON"):
        [_ async for _ in api.delta(f"hostile/{kind}")]


async def test_a_get_of_malformed_json_is_malformed(
    hostile: tuple[Any, HostileGraphServer],
) -> None:
    api, _ = hostile
    with pytest.raises(MalformedResponse, match="is not") as info:
        await api.get("hostile/malformed-json")
    assert "malformed-json" in str(info.value.url)
    # Other content is returned as bytes, as for a photo's $value: the caller asked for it.
    assert (await api.get("hostile/html")).startswith(b"<html>")


@pytest.mark.parametrize(("pages", "back"), [(2, 1), (5, 2), (40, 3)])
async def test_a_next_link_back_to_an_earlier_page_is_a_loop(
    hostile: tuple[Any, HostileGraphServer], pages: int, back: int
) -> None:
    api, server = hostile
    seen: list[int] = []

    async def read_all() -> None:
        async for item in api.items(f"hostile/loop?page=1&pages={pages}&back={back}"):
            seen.append(item)

    with pytest.raises(MalformedResponse, match=f"same page request of page {back} again"):
        await read_all()
    assert seen == list(range(1, pages + 1))  # every page once, then the loop is refused
    assert server.count("/v1.0/hostile/loop") == pages


async def test_a_next_link_to_a_foreign_host_is_refused_before_it_is_fetched(
    hostile: tuple[Any, HostileGraphServer],
) -> None:
    api, server = hostile
    with pytest.raises(PaginationRefused, match=FOREIGN):
        [_ async for _ in api.items(f"hostile/foreign?host={FOREIGN}")]
    assert server.count("/v1.0/hostile/foreign") == 1


async def test_a_delta_link_to_a_foreign_host_is_refused_when_followed(
    hostile: tuple[Any, HostileGraphServer],
) -> None:
    api, server = hostile
    stream = api.delta(f"hostile/delta-foreign?host={FOREIGN}")
    assert [change async for change in stream] == [1]
    assert stream.delta_link is not None
    assert FOREIGN in stream.delta_link
    # The next round would send the token there: refused before any request is made.
    with pytest.raises(HookBridgeError, match="allowed_hosts"):
        [_ async for _ in api.delta("users/delta", stream.delta_link)]
    assert sum(server.requests.values()) == 1


@pytest.mark.parametrize(
    ("mode", "first"),
    [
        ("missing", MalformedResponse),
        ("duplicate", MalformedResponse),
        ("bad-status", MalformedResponse),
        ("bad-headers", Throttled),
        ("not-an-object", MalformedResponse),
        ("unknown", None),  # an answer to nothing asked is ignored: every request has its own
    ],
)
async def test_a_batch_answer_with_broken_entries_fails_only_those_requests(
    hostile: tuple[Any, HostileGraphServer], mode: BatchMode, first: type[Exception] | None
) -> None:
    api, server = hostile
    server.batch_mode = mode
    urls = [f"users/u-{i:06d}" for i in range(5)]
    outcomes = await api.batch(urls)
    assert [o.index for o in outcomes] == list(range(5))
    if first is None:
        assert outcomes[0].ok
    else:
        assert isinstance(outcomes[0].error, first), repr(outcomes[0].error)
    for outcome in outcomes[1:]:
        assert outcome.ok, repr(outcome.error)
        assert outcome.value == {"id": f"/{urls[outcome.index]}"}


@pytest.mark.parametrize("mode", ["no-responses", "not-json"])
async def test_a_batch_answer_that_is_no_batch_answer_fails_every_request(
    hostile: tuple[Any, HostileGraphServer], mode: BatchMode
) -> None:
    api, server = hostile
    server.batch_mode = mode
    outcomes = await api.batch([f"users/u-{i:06d}" for i in range(3)])
    assert [o.index for o in outcomes] == [0, 1, 2]
    for outcome in outcomes:
        assert isinstance(outcome.error, MalformedResponse), repr(outcome.error)


@pytest.mark.parametrize(
    ("retry_after", "waited"),
    ABSURD_RETRY_AFTER,
)
@pytest.mark.parametrize("status", [429, 503])
async def test_absurd_retry_after_values_end_in_throttled_quickly(
    hostile: tuple[Any, HostileGraphServer], retry_after: str, waited: int | None, status: int
) -> None:
    api, server = hostile
    started = anyio.current_time()
    with pytest.raises(Throttled) as info:
        await api.get("hostile/status", query={"status": status, "retry_after": retry_after})
    took = anyio.current_time() - started
    assert info.value.retry_after is None or info.value.retry_after >= 0
    assert server.count("/v1.0/hostile/status") == (1 if waited == 0 else 3)
    assert took < 3.0, took  # never a wait of what the header claims
    with anyio.fail_after(2):  # nor is the adapter paused by it afterwards
        with pytest.raises(RemoteStatusError):
            await api.get("hostile/status", query={"status": 404})


async def test_a_body_over_the_cap_is_refused_by_its_length(
    hostile: tuple[Any, HostileGraphServer],
) -> None:
    api, server = hostile
    with pytest.raises(ResponseTooLarge, match="Content-Length") as info:
        await api.get("hostile/big", query={"size": 10_000_000})
    assert info.value.limit == CAP
    assert await api.get("hostile/big", query={"size": 100}) == "x" * 98  # under the cap: fine
    assert server.count("/v1.0/hostile/big") == 2


async def test_a_server_that_streams_forever_is_cut_at_the_cap(
    hostile: tuple[Any, HostileGraphServer],
) -> None:
    api, _ = hostile
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge, match="more than"):
            await api.get("hostile/forever")
        with pytest.raises(HookBridgeError):
            [_ async for _ in api.items("hostile/forever")]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak  # the cap (64 KiB) and its buffers, not the stream
