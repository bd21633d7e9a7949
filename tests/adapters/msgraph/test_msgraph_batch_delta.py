"""Graph $batch (order, partial throttling, splitting, dependencies) and delta rounds."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hookbridge import NotFound, RemoteStatusError, Retry, Throttled, UsageError
from hookbridge.adapters.msgraph import BatchRequest, MSGraphAdapter
from hookbridge.testing import GraphTestServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

Connect = Callable[..., str]


async def test_45_requests_in_3_calls_results_in_input_order(
    graph: GraphTestServer, connect: Connect
) -> None:
    ids = [f"u-{i:06d}" for i in range(0, 900, 20)]
    async with MSGraphAdapter(connect()) as api:
        outcomes = await api.batch([f"users/{user}?$select=id,displayName" for user in ids])
    assert [outcome.index for outcome in outcomes] == list(range(45))
    assert [outcome.unwrap()["id"] for outcome in outcomes] == ids
    assert all(set(o.unwrap()) >= {"id", "displayName"} for o in outcomes)
    assert graph.request_count == 3 and graph.subrequest_count == 45
    sizes = sorted(len([r for r in graph.subrequests if r.token == t]) for t in graph.issued_tokens)
    assert sum(sizes) == 45
    batches = graph.matching("/v1.0/$batch", "POST")
    assert len(batches) == 3


async def test_partial_throttling_resends_only_the_throttled(
    graph: GraphTestServer, connect: Connect
) -> None:
    graph.throttle(2, 429, 0.2, path_prefix="/users/u-000003", in_batch=True)
    graph.throttle(1, 503, 0.1, path_prefix="/users/u-000017", in_batch=True)
    async with MSGraphAdapter(connect(), retry=Retry(attempts=4, backoff=0.0)) as api:
        outcomes = await api.batch([f"users/u-{i:06d}" for i in range(20)])
        stats = api.statistics()
    assert [o.unwrap()["id"] for o in outcomes] == [f"u-{i:06d}" for i in range(20)]
    sent = [r.path.rsplit("/", 1)[-1] for r in graph.subrequests]
    assert len(sent) == 20 + 2 + 1  # the first call, then only the throttled ones
    assert sent[20:] == ["u-000003", "u-000017", "u-000003"]
    assert graph.request_count == 3 and stats.throttled == 2


async def test_every_request_ends_as_a_value_or_an_error(
    graph: GraphTestServer, connect: Connect
) -> None:
    graph.throttle(5, 429, 0, path_prefix="/users/u-000002", in_batch=True)
    requests: list[BatchRequest | str | dict[str, object]] = [
        "users/u-000001",
        "users/u-000002",  # throttled more times than the retry allows
        "users/u-999999",  # not found
        BatchRequest("users", method="POST", body={"displayName": "Grace"}, id="create"),
        {
            "url": "users/u-000004",
            "method": "PATCH",
            "body": {"jobTitle": "CTO"},
            "depends_on": ["create"],
        },
        BatchRequest("users/u-000005/photo/$value"),
        BatchRequest("users", method="GET", headers={}, id="bad-after", depends_on=()),
    ]
    requests[-1] = BatchRequest("users?$select=nickname")
    async with MSGraphAdapter(connect(), retry=Retry(attempts=2, backoff=0.0)) as api:
        outcomes = await api.batch(requests)
    assert len(outcomes) == len(requests)
    assert outcomes[0].unwrap()["id"] == "u-000001"
    assert isinstance(outcomes[1].error, Throttled) and outcomes[1].error.status == 429
    assert isinstance(outcomes[2].error, NotFound) and "batch request #2" in str(outcomes[2].error)
    assert outcomes[3].unwrap()["displayName"] == "Grace"
    assert outcomes[4].ok and outcomes[4].value is None  # 204
    assert isinstance(outcomes[5].value, bytes) and outcomes[5].value.startswith(b"photo-5:")
    assert isinstance(outcomes[6].error, RemoteStatusError) and outcomes[6].error.status == 400
    assert outcomes[4].item.depends_on == ("create",)
    dependent = next(r for r in graph.subrequests if r.method == "PATCH")
    assert dependent.batch_id == "4"


async def test_a_failed_dependency_fails_its_dependents(
    graph: GraphTestServer, connect: Connect
) -> None:
    async with MSGraphAdapter(connect()) as api:
        outcomes = await api.batch(
            [
                BatchRequest("users/u-999999", id="missing"),
                BatchRequest("users/u-000001", depends_on=("missing",)),
            ]
        )
    assert isinstance(outcomes[0].error, NotFound)
    assert isinstance(outcomes[1].error, RemoteStatusError) and outcomes[1].error.status == 424


async def test_batch_misuse_is_refused_before_sending(
    graph: GraphTestServer, connect: Connect
) -> None:
    async with MSGraphAdapter(connect()) as api:
        with pytest.raises(UsageError, match="no earlier request"):
            await api.batch([BatchRequest("users", depends_on=("later",)), "users"])
        with pytest.raises(UsageError, match="used twice"):
            await api.batch([BatchRequest("users", id="a"), BatchRequest("users", id="a")])
        with pytest.raises(UsageError, match="relative to the version"):
            await api.batch(["https://elsewhere.example/v1.0/users"])
        chain = [BatchRequest("users", id="0")] + [
            BatchRequest("users", id=str(i), depends_on=(str(i - 1),)) for i in range(1, 21)
        ]
        with pytest.raises(UsageError, match="at most 20"):
            await api.batch(chain)
        assert await api.batch([]) == []
    assert graph.requests == []


async def test_delta_resumes_after_changes_from_a_stored_link(
    graph: GraphTestServer, connect: Connect
) -> None:
    async with MSGraphAdapter(connect()) as api:
        first = api.delta("users/delta", query={"$select": "displayName"}, page_size=300)
        everyone = [change async for change in first]
        assert len(everyone) == 1000 and set(everyone[0]) == {"id", "displayName"}
        link = first.delta_link
        assert link is not None and "$deltatoken=" in link
        directory = graph.resources.directory
        directory.update("u-000010", {"displayName": "Renamed"})
        directory.delete("u-000020")
        added = directory.add({"displayName": "Newcomer"})
        second = api.delta("users/delta", delta_link=link)
        async with second as changes:
            seen = [change async for change in changes]
        assert seen == [
            {"id": "u-000010", "displayName": "Renamed"},
            {"id": "u-000020", "@removed": {"reason": "deleted"}},
            {"id": added["id"], "displayName": "Newcomer"},
        ]
        assert second.delta_link is not None and second.delta_link != link
        third = api.delta("users/delta", second.delta_link)
        assert [change async for change in third] == []
        stopped = api.delta("users/delta", page_size=100)
        async for _ in stopped:
            break
        assert stopped.delta_link is None  # a round that did not end gives no link to store
    delta_pages = graph.matching("/v1.0/users/delta")
    assert all(r.headers.get("prefer") == "odata.maxpagesize=300" for r in delta_pages[:4])


async def test_delta_link_to_a_foreign_host_is_refused(
    graph: GraphTestServer, connect: Connect
) -> None:
    async with MSGraphAdapter(connect()) as api:
        with pytest.raises(Exception, match="allowed_hosts") as error:
            async for _ in api.delta("users/delta", "http://elsewhere.example/v1.0/users/delta"):
                pass
        assert not isinstance(error.value, NotFound)
    assert graph.requests == []
