"""The Microsoft Graph emulator answers as its docstring says, to raw HTTP and the provider hook."""

from __future__ import annotations

import base64
import gc
import json
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from hookbridge.testing import GraphTestServer

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


@pytest.fixture
async def graph() -> AsyncIterator[GraphTestServer]:
    async with GraphTestServer(users=250) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def trusting(graph: GraphTestServer) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=graph.ca_pem.decode())


async def token_for(graph: GraphTestServer, session: aiohttp.ClientSession) -> str:
    form = {
        "client_id": graph.login.client_id,
        "client_secret": graph.login.client_secret,
        "grant_type": "client_credentials",
        "scope": "https://graph.microsoft.com/.default",
    }
    async with session.post(graph.token_url, data=form, ssl=trusting(graph)) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == graph.login.lifetime
    return str(body["access_token"])


async def call(
    session: aiohttp.ClientSession,
    url: str,
    token: str | None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any, dict[str, str]]:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    async with session.request(method, url, headers=all_headers, **kwargs) as response:
        raw = await response.read()
        if response.content_type == "application/json":
            body: Any = json.loads(raw)
        else:
            body = raw
        return response.status, body, dict(response.headers)


# -- login -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"client_secret": "wrong-secret"}, 401, "invalid_client"),
        ({"client_id": "someone-else"}, 400, "unauthorized_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"scope": "User.Read"}, 400, "invalid_scope"),
    ],
)
async def test_token_endpoint_refuses_bad_requests(
    graph: GraphTestServer,
    session: aiohttp.ClientSession,
    change: dict[str, str],
    status: int,
    error: str,
) -> None:
    form = {
        "client_id": graph.login.client_id,
        "client_secret": graph.login.client_secret,
        "grant_type": "client_credentials",
        "scope": "https://graph.microsoft.com/.default",
        **change,
    }
    async with session.post(graph.token_url, data=form, ssl=trusting(graph)) as response:
        assert response.status == status
        assert (await response.json())["error"] == error
    assert graph.issued_tokens == []
    assert [r.status for r in graph.token_requests] == [status]


async def test_token_endpoint_is_tls_with_an_ip_san_and_checks_the_tenant(
    graph: GraphTestServer, session: aiohttp.ClientSession
) -> None:
    assert graph.authority.startswith("https://127.0.0.1:")
    # The default trust store does not know the generated CA: verification must fail...
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        async with session.post(graph.token_url, data={}):
            pass
    # ... and succeed with it, which needs the IP:127.0.0.1 subject alternative name.
    token = await token_for(graph, session)
    assert graph.issued_tokens == [token]
    wrong_tenant = graph.token_url.replace(graph.login.tenant, "other-tenant")
    async with session.post(wrong_tenant, data={}, ssl=trusting(graph)) as response:
        assert response.status == 400
        assert "AADSTS90002" in (await response.json())["error_description"]


async def test_graph_requires_a_valid_unexpired_token(
    graph: GraphTestServer, session: aiohttp.ClientSession
) -> None:
    url = graph.url_for("/users/u-000001")
    status, body, headers = await call(session, url, None)
    assert (status, body["error"]["message"]) == (401, "Access token is empty.")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await call(session, url, "made-up-token")
    assert (status, body["error"]["code"]) == (401, "InvalidAuthenticationToken")
    token = await token_for(graph, session)
    status, body, _ = await call(session, url, token)
    assert (status, body["displayName"]) == (200, "User 1")
    graph.expire_tokens()
    status, body, _ = await call(session, url, token)
    assert status == 401 and "expired" in body["error"]["message"]
    fresh = await token_for(graph, session)
    assert (await call(session, url, fresh))[0] == 200
    graph.revoke_tokens()
    status, body, _ = await call(session, url, fresh)
    assert status == 401 and "validation failure" in body["error"]["message"]
    assert [r.token for r in graph.requests] == [None, "made-up-token", token, token, fresh, fresh]
    assert [r.status for r in graph.requests] == [401, 401, 200, 401, 200, 401]


async def test_short_token_lifetime() -> None:
    async with GraphTestServer(token_lifetime=2) as graph, aiohttp.ClientSession() as session:
        await token_for(graph, session)
        assert graph.login.lifetime == 2


# -- OData collections -----------------------------------------------------------------------------


async def test_paging_with_top_select_filter_and_next_links(
    graph: GraphTestServer, session: aiohttp.ClientSession
) -> None:
    token = await token_for(graph, session)
    url: str | None = graph.url_for("/users")
    params: dict[str, str] | None = {
        "$top": "7",
        "$select": "displayName,department",
        "$filter": "department eq 'Sales'",
    }
    seen: list[dict[str, Any]] = []
    while url:
        status, body, _ = await call(session, url, token, params=params)
        assert status == 200, body
        seen.extend(body["value"])
        url, params = body.get("@odata.nextLink"), None
        if url:
            assert "%24select" not in url and "$select=displayName,department" in url
    expected = [i for i in range(250) if i % 5 == 1]
    assert [user["id"] for user in seen] == [f"u-{i:06d}" for i in expected]
    assert all(set(user) == {"id", "displayName", "department"} for user in seen)
    assert {user["department"] for user in seen} == {"Sales"}
    assert len(graph.requests) == -(-len(expected) // 7)


async def test_filter_on_two_fields_and_count_needs_consistency_level_on_every_page(
    graph: GraphTestServer, session: aiohttp.ClientSession
) -> None:
    token = await token_for(graph, session)
    params = {
        "$filter": "department eq 'Finance' and accountEnabled eq true",
        "$count": "true",
        "$top": "10",
    }
    url = graph.url_for("/users")
    status, body, _ = await call(session, url, token, params=params)
    assert status == 400 and "ConsistencyLevel" in body["error"]["message"]
    eventual = {"ConsistencyLevel": "eventual"}
    status, body, _ = await call(session, url, token, headers=eventual, params=params)
    expected = [i for i in range(250) if i % 5 == 2 and i % 7 != 0]
    assert body["@odata.count"] == len(expected)
    next_link = body["@odata.nextLink"]
    # The skip token remembers the advanced query: page two without the header is refused.
    status, body, _ = await call(session, next_link, token)
    assert status == 400 and "nextLink pages included" in body["error"]["message"]
    status, body, _ = await call(session, next_link, token, headers=eventual)
    assert status == 200 and len(body["value"]) == 10


async def test_query_option_errors(graph: GraphTestServer, session: aiohttp.ClientSession) -> None:
    token = await token_for(graph, session)
    base = graph.url_for("/users")
    status, body, _ = await call(session, base, token, params={"$top": "5"})
    next_link = body["@odata.nextLink"]
    cases = [
        (f"{base}?$top=0", "Invalid page size"),
        (f"{base}?$top=1000", "Invalid page size"),
        (f"{base}?$select=nickname", "nickname"),
        (f"{base}?$filter=startswith(displayName,'U')", "Invalid filter clause"),
        (f"{base}?$top=5&$top=5", "more than once"),
        (next_link + "&$top=5", "more than once"),
        (next_link.replace("$top=5", "$top=6"), "another query"),
        (f"{base}?$skiptoken=garbage", "not one this service issued"),
    ]
    for url, message in cases:
        status, body, _ = await call(session, url, token)
        assert status == 400, url
        assert message in body["error"]["message"], (url, body)


async def test_entity_writes_and_raw_value(
    graph: GraphTestServer, session: aiohttp.ClientSession
) -> None:
    token = await token_for(graph, session)
    status, body, headers = await call(
        session, graph.url_for("/users/u-000009/photo/$value"), token
    )
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert isinstance(body, bytes) and len(body) == 4096 and body.startswith(b"photo-9:")
    status, body, _ = await call(session, graph.url_for("/users/u-999999"), token)
    assert (status, body["error"]["code"]) == (404, "Request_ResourceNotFound")
    patch = {"json": {"department": "Legal"}}
    assert (await call(session, graph.url_for("/users/u-000003"), token, "PATCH", **patch))[
        0
    ] == 204
    status, body, _ = await call(
        session, graph.url_for("/users/u-000003?$select=department"), token
    )
    assert body == {
        "@odata.context": body["@odata.context"],
        "id": "u-000003",
        "department": "Legal",
    }
    assert (await call(session, graph.url_for("/users/u-000003"), token, "DELETE"))[0] == 204
    assert (await call(session, graph.url_for("/users/u-000003"), token))[0] == 404
    status, body, _ = await call(
        session, graph.url_for("/users"), token, "POST", json={"displayName": "New"}
    )
    assert (status, body["id"], body["displayName"]) == (201, "u-000250", "New")
    status, body, _ = await call(session, graph.url_for("/nothing"), token)
    assert status == 400 and "segment 'nothing'" in body["error"]["message"]


# -- delta -----------------------------------------------------------------------------------------


async def delta_round(
    graph: GraphTestServer, session: aiohttp.ClientSession, token: str, url: str
) -> tuple[list[dict[str, Any]], str, int]:
    entries: list[dict[str, Any]] = []
    pages = 0
    while True:
        status, body, _ = await call(
            session, url, token, headers={"Prefer": "odata.maxpagesize=40"}
        )
        assert status == 200, body
        pages += 1
        entries.extend(body["value"])
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            return entries, body["@odata.deltaLink"], pages
        url = body["@odata.nextLink"]


async def test_delta_rounds_report_only_changes_with_removals(
    graph: GraphTestServer, session: aiohttp.ClientSession
) -> None:
    token = await token_for(graph, session)
    first, delta_link, pages = await delta_round(
        graph, session, token, graph.url_for("/users/delta?$select=displayName")
    )
    assert len(first) == 250 and pages == 7
    assert set(first[0]) == {"id", "displayName"}
    empty, delta_link, _ = await delta_round(graph, session, token, delta_link)
    assert empty == []
    graph.resources.directory.update("u-000010", {"displayName": "Renamed"})
    graph.resources.directory.delete("u-000020")
    added = graph.resources.directory.add({"displayName": "Newcomer"})
    changes, next_delta, _ = await delta_round(graph, session, token, delta_link)
    assert changes == [
        {"id": "u-000010", "displayName": "Renamed"},
        {"id": "u-000020", "@removed": {"reason": "deleted"}},
        {"id": added["id"], "displayName": "Newcomer"},
    ]
    # The same delta link again gives the same changes (it can be stored and re-used).
    assert (await delta_round(graph, session, token, delta_link))[0] == changes
    assert (await delta_round(graph, session, token, next_delta))[0] == []
    for index in range(30, 130):
        graph.resources.directory.update(f"u-{index:06d}", {"jobTitle": "Changed"})
    many, _, pages = await delta_round(graph, session, token, next_delta)
    assert len(many) == 100 and pages == 3
    _, body, _ = await call(session, graph.url_for("/users/delta?$deltatoken=latest"), token)
    assert body["value"] == [] and "$deltatoken=" in body["@odata.deltaLink"]


# -- $batch ----------------------------------------------------------------------------------------


async def test_batch_statuses_dependencies_order_and_limits(
    graph: GraphTestServer, session: aiohttp.ClientSession
) -> None:
    token = await token_for(graph, session)
    url = graph.url_for("/$batch")
    requests = [{"id": str(i), "method": "GET", "url": f"/users/u-{i:06d}"} for i in range(18)]
    requests.append({"id": "missing", "method": "GET", "url": "/users/u-777777"})
    requests.append({"id": "after", "method": "GET", "url": "/users", "dependsOn": ["missing"]})
    graph.throttle(2, 429, 7, path_prefix="/users/u-000005", in_batch=True)
    status, body, _ = await call(session, url, token, "POST", json={"requests": requests})
    assert status == 200
    responses = body["responses"]
    assert [r["id"] for r in responses] != [r["id"] for r in requests]  # Graph may reorder
    by_id = {r["id"]: r for r in responses}
    assert by_id["5"]["status"] == 429 and by_id["5"]["headers"]["Retry-After"] == "7"
    assert by_id["missing"]["status"] == 404
    assert by_id["after"]["status"] == 424
    assert by_id["0"]["body"]["displayName"] == "User 0"
    assert all(by_id[str(i)]["status"] == 200 for i in range(18) if i != 5)
    assert graph.request_count == 1 and graph.subrequest_count == 20
    assert [r.batch_id for r in graph.subrequests] == [r["id"] for r in requests]
    assert graph.subrequests[0].path == "/v1.0/users/u-000000"
    assert all(r.token == token for r in graph.subrequests)

    photo = [{"id": "p", "method": "GET", "url": "/users/u-000002/photo/$value"}]
    status, body, _ = await call(session, url, token, "POST", json={"requests": photo})
    assert base64.b64decode(body["responses"][0]["body"]).startswith(b"photo-2:")

    too_many = [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)]
    status, body, _ = await call(session, url, token, "POST", json={"requests": too_many})
    assert status == 400 and "limit of 20" in body["error"]["message"]
    forward = [{"id": "a", "method": "GET", "url": "/users", "dependsOn": ["b"]}]
    status, body, _ = await call(session, url, token, "POST", json={"requests": forward})
    assert status == 400 and "earlier request" in body["error"]["message"]


async def test_batch_can_be_throttled_as_a_whole(
    graph: GraphTestServer, session: aiohttp.ClientSession
) -> None:
    token = await token_for(graph, session)
    graph.throttle(1, 503, 2, path_prefix="/$batch")
    requests = [{"id": "1", "method": "GET", "url": "/users/u-000001"}]
    status, _, headers = await call(
        session, graph.url_for("/$batch"), token, "POST", json={"requests": requests}
    )
    assert (status, headers["Retry-After"]) == (503, "2")
    assert graph.subrequest_count == 0


# -- throttling, log, connections ------------------------------------------------------------------


async def test_throttle_schedule_and_window(
    graph: GraphTestServer, session: aiohttp.ClientSession
) -> None:
    token = await token_for(graph, session)
    url = graph.url_for("/users/u-000001")
    graph.throttle(2, 429, 3, method="GET")
    graph.throttle(1, 503, None)
    answers = [await call(session, url, token) for _ in range(4)]
    assert [a[0] for a in answers] == [429, 429, 503, 200]
    assert answers[0][2]["Retry-After"] == "3" and "Retry-After" not in answers[2][2]
    assert answers[0][1]["error"]["code"] == "TooManyRequests"
    graph.throttle_for(30)
    status, _, headers = await call(session, url, token)
    assert (status, headers["Retry-After"]) == (429, "30")
    assert (await call(session, url, token))[0] == 429
    graph.clear_faults()
    assert (await call(session, url, token))[0] == 200
    with pytest.raises(ValueError, match="429, 503 or 504"):
        graph.throttle(1, 500)


async def test_request_log_and_connection_counter(graph: GraphTestServer) -> None:
    async with aiohttp.ClientSession() as session:
        token = await token_for(graph, session)
        await call(session, graph.url_for("/users?$top=2"), token, headers={"X-Trace": "t1"})
        assert graph.open_connections >= 1
    record = graph.requests[0]
    assert (record.method, record.path, record.query) == ("GET", "/v1.0/users", {"$top": "2"})
    assert record.headers["x-trace"] == "t1" and record.token == token and record.status == 200
    for _ in range(100):
        if graph.open_connections == 0:
            break
        await anyio.sleep(0.01)
    assert graph.open_connections == 0
    assert graph.stats()["requests"] == 1 and graph.stats()["token_requests"] == 1
    graph.clear()
    assert graph.requests == [] and graph.request_count == 0


# -- through the provider's hook -------------------------------------------------------------------


async def close_hook(hook: Any) -> None:
    """``hook.close()``, plus the connection pool that it leaves open.

    The hook closes its httpx client, but msgraph-core's ``AsyncGraphTransport``, which wraps
    the client's pool, has no ``aclose()``: the pool's sockets stay open until garbage collection
    (a ResourceWarning). MSGraphAdapter owns and closes its pool; here the test reaches for the
    provider's, or the leak would be reported against whichever test runs next.
    """
    _, adapter = hook.cached_request_adapters.get(hook.conn_id, (None, None))
    transport = getattr(getattr(adapter, "_http_client", None), "_transport", None)
    pool = getattr(transport, "transport", None)
    try:
        await hook.close()
    finally:
        if pool is not None:
            await pool.aclose()


async def test_provider_hook_run_and_paginated_run(
    graph_server: GraphTestServer, graph_conn_id: str
) -> None:
    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    hook = KiotaRequestAdapterHook(conn_id=graph_conn_id)
    try:
        one = await hook.run(
            url="users", query_parameters={"$top": 3, "$filter": "department eq 'Support'"}
        )
        assert [u["id"] for u in one["value"]] == ["u-000003", "u-000008", "u-000013"]
        photo = await hook.run(url="users/u-000004/photo/$value")
        assert isinstance(photo, bytes) and photo.startswith(b"photo-4:")
        pages = await hook.paginated_run(url="users", query_parameters={"$top": 300})
    finally:
        await close_hook(hook)
    gc.collect()  # a socket left open would be reported here, against this test
    assert [len(page["value"]) for page in pages] == [300, 300, 300, 100]
    ids = [user["id"] for page in pages for user in page["value"]]
    assert ids == [f"u-{i:06d}" for i in range(1000)]
    assert len(graph_server.token_requests) == 1
    tokens = {record.token for record in graph_server.requests}
    assert tokens == set(graph_server.issued_tokens) and None not in tokens
    assert [r.status for r in graph_server.requests] == [200] * 6


async def test_provider_hook_surfaces_a_wrong_secret(
    graph_server: GraphTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    connection = graph_server.airflow_connection()
    connection["password"] = "not-the-secret"
    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_WRONG", json.dumps(connection))
    hook = KiotaRequestAdapterHook(conn_id="graph_wrong")
    try:
        with pytest.raises(Exception, match="AADSTS7000215"):
            await hook.run(url="users/u-000001")
    finally:
        await close_hook(hook)
    assert [r.status for r in graph_server.token_requests] == [401]
    assert graph_server.requests == []


# -- stand-alone -----------------------------------------------------------------------------------


async def test_stand_alone_process_prints_its_urls_and_serves_stats() -> None:
    command = [sys.executable, "-m", "hookbridge.testing._graph_server", "--port", "0"]
    async with await anyio.open_process([*command, "--users", "10"]) as process:
        assert process.stdout is not None
        try:
            with anyio.fail_after(30):
                line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 10_000)
                info = json.loads(line)
                assert info["url"].startswith("http://127.0.0.1:")
                assert info["authority"].startswith("https://127.0.0.1:")
                assert info["connection"]["conn_type"] == "msgraph"
                async with aiohttp.ClientSession() as session:
                    async with session.get(info["stats_url"]) as response:
                        assert (await response.json())["requests"] == 0
                    status, _, _ = await call(session, info["url"] + "/v1.0/users", None)
                    assert status == 401
                    async with session.get(info["stats_url"]) as response:
                        assert (await response.json())["requests"] == 1
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
