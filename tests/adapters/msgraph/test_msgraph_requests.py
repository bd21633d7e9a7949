"""MSGraphAdapter requests: JSON and raw content, query options, headers, size cap, errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import anyio
import pytest

import hookbridge
from hookbridge import (
    ConfigurationError,
    HostRefused,
    NotFound,
    PermissionDenied,
    ResponseTooLarge,
    Retry,
    UsageError,
)
from hookbridge.adapters.msgraph import MSGraphAdapter
from hookbridge.testing import GraphTestServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

Connect = Callable[..., str]
SECRET = "graph-client-secret-7f3a9c"  # the conftest's client secret


async def test_get_json_raw_value_query_and_headers(
    graph: GraphTestServer, connect: Connect
) -> None:
    async with hookbridge.open(connect()) as api:
        assert isinstance(api, MSGraphAdapter)
        user = await api.get(
            "users/u-000007", query={"$select": "displayName,mail"}, headers={"X-Trace": "t-1"}
        )
        assert (user["id"], user["displayName"], user["mail"]) == (
            "u-000007",
            "User 7",
            "user7@hookbridge.test",
        )
        assert "department" not in user
        photo = await api.get("/users/u-000007/photo/$value")
        assert isinstance(photo, bytes) and len(photo) == 4096 and photo.startswith(b"photo-7:")
        listed = await api.get("users", query={"$filter": "department eq 'Sales'", "$top": 3})
        assert [u["id"] for u in listed["value"]] == ["u-000001", "u-000006", "u-000011"]
        absolute = await api.get(graph.url_for("/users/u-000002"))
        assert absolute["displayName"] == "User 2"
    first = graph.requests[0]
    assert first.path == "/v1.0/users/u-000007"
    assert first.query == {"$select": "displayName,mail"}
    assert first.headers["x-trace"] == "t-1"
    assert first.token in graph.issued_tokens
    assert len(graph.token_requests) == 1  # one token for every request


async def test_writes_and_errors(graph: GraphTestServer, connect: Connect) -> None:
    async with MSGraphAdapter(connect(), retry=Retry(attempts=1)) as api:
        created = await api.request("POST", "users", json_body={"displayName": "Ada"})
        assert created["displayName"] == "Ada"
        assert (
            await api.request("PATCH", f"users/{created['id']}", json_body={"jobTitle": "X"})
            is None
        )
        assert (await api.get(f"users/{created['id']}"))["jobTitle"] == "X"
        assert await api.request("DELETE", f"users/{created['id']}") is None
        with pytest.raises(NotFound) as missing:
            await api.get(f"users/{created['id']}")
        assert "Request_ResourceNotFound" in str(missing.value)
        assert "conn_id 'graph'" in str(missing.value)
        with pytest.raises(hookbridge.RemoteStatusError) as bad:
            await api.get("users", query={"$select": "nickname"})
        assert bad.value.status == 400 and "nickname" in str(bad.value)
        with pytest.raises(UsageError, match="json_body or data"):
            await api.request("POST", "users", json_body={}, data=b"x")
        with pytest.raises(UsageError, match="HTTP method"):
            await api.request("GE T", "users")


async def test_writes_follow_the_retry_policy_in_force(
    graph: GraphTestServer, connect: Connect
) -> None:
    # The write policy is derived from `retry` when a write is sent, not copied at open: a
    # policy set afterwards governs writes too (a throttled POST is retried, or not).
    async with MSGraphAdapter(connect(), retry=Retry(attempts=3, backoff=0)) as api:
        graph.throttle(1, 429, 0, path_prefix="/users", method="POST")
        assert (await api.request("POST", "users", json_body={"displayName": "A"}))["id"]
        api.retry = Retry(attempts=1)
        graph.throttle(1, 429, 0, path_prefix="/users", method="POST")
        with pytest.raises(hookbridge.Throttled):
            await api.request("POST", "users", json_body={"displayName": "B"})
    posts = graph.matching("/v1.0/users", "POST")
    assert [r.status for r in posts] == [429, 201, 429], [r.status for r in posts]


async def test_size_cap(graph: GraphTestServer, connect: Connect) -> None:
    async with MSGraphAdapter(connect(hookbridge={"max_body_size": 1000})) as api:
        assert api.option_source("max_body_size") == "extra"
        with pytest.raises(ResponseTooLarge) as error:
            await api.get("users/u-000001/photo/$value")
        assert error.value.limit == 1000 and "max_body_size" in str(error.value)
        assert len(await api.get("users/u-000001/photo/$value", max_body_size=5000)) == 4096
        with pytest.raises(UsageError, match="max_body_size"):
            await api.get("users/u-000001", max_body_size=0)


async def test_absolute_urls_only_on_allowed_hosts(
    graph: GraphTestServer, connect: Connect
) -> None:
    async with MSGraphAdapter(connect()) as api:
        with pytest.raises(HostRefused, match="allowed_hosts"):
            await api.get(graph.url.replace("127.0.0.1", "localhost") + "/v1.0/users")
    assert graph.requests == []


async def test_check_and_spec(graph: GraphTestServer, connect: Connect) -> None:
    async with MSGraphAdapter(connect(), timeout=5, allowed_hosts=["localhost"]) as api:
        result = await api.check()
        assert result.ok and "Hookbridge Test Tenant" in result.detail
        spec = api.spec()
        assert spec == {
            "adapter": "msgraph",
            "conn_id": "graph",
            "options": {"timeout": 5.0, "allowed_hosts": ["localhost"]},
        }
    async with hookbridge.open_spec(json.loads(json.dumps(spec))) as again:
        assert isinstance(again, MSGraphAdapter) and again.spec() == spec


async def test_bad_options_name_the_conn_id(connect: Connect) -> None:
    with pytest.raises(ConfigurationError, match="api_version"):
        MSGraphAdapter("graph", api_version="v2")
    conn_id = connect(hookbridge={"timeout": -1})
    with pytest.raises(ConfigurationError) as error:
        async with MSGraphAdapter(conn_id):
            pass
    assert "conn_id 'graph'" in str(error.value) and "hookbridge.timeout" in str(error.value)


async def test_wrong_secret_is_a_clear_authentication_error(
    graph: GraphTestServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    conn_id = connect("wrong", password="not-the-secret-at-all")
    async with MSGraphAdapter(conn_id) as api:
        with pytest.raises(PermissionDenied) as error:
            await api.get("users/u-000001")
        checked = await api.check()
    message = str(error.value)
    assert "conn_id 'wrong'" in message and "client secret" in message
    assert "AADSTS7000215" in message and error.value.code == "AADSTS7000215"
    assert "not-the-secret-at-all" not in message + caplog.text
    assert not checked.ok and "AADSTS7000215" in checked.detail
    # Not retried: a refused secret does not become right on the next attempt.
    assert [r.status for r in graph.token_requests] == [401, 401]
    assert graph.requests == []


async def test_secrets_never_leak(
    graph: GraphTestServer,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    conn_id = connect()
    seen: list[str] = []
    async with MSGraphAdapter(conn_id, retry=Retry(attempts=1)) as api:
        seen += [repr(api), json.dumps(api.spec()), repr(api.statistics()), str(await api.check())]
        await api.get("users/u-000001")
        async with api.items("users", query={"$top": 400}) as items:
            seen += [json.dumps(item) async for item in items]
        graph.revoke_tokens()
        graph.login.client_secret = "rotated-secret-value"
        for call in (lambda: api.get("users/u-000001"), lambda: api.get("users/u-999999")):
            with pytest.raises(hookbridge.HookBridgeError) as error:
                await call()
            seen += [str(error.value), repr(error.value), repr(error.value.__cause__)]
    out, err = capfd.readouterr()
    everything = "\n".join([*seen, caplog.text, out, err])
    tokens = graph.issued_tokens
    assert tokens  # the adapter did authenticate...
    for secret in (SECRET, *tokens):
        assert secret not in everything  # ... and neither the secret nor a token shows anywhere


async def test_two_loops_never_share_a_client(graph: GraphTestServer, connect: Connect) -> None:
    conn_id = connect()

    def in_another_loop() -> str:
        async def use() -> str:
            async with MSGraphAdapter(conn_id) as api:
                return str((await api.get("users/u-000003"))["id"])

        return anyio.run(use, backend="asyncio")

    async with MSGraphAdapter(conn_id) as api:
        assert (await api.get("users/u-000001"))["id"] == "u-000001"
        assert await anyio.to_thread.run_sync(in_another_loop) == "u-000003"
        assert (await api.get("users/u-000002"))["id"] == "u-000002"
    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    assert conn_id not in KiotaRequestAdapterHook.cached_request_adapters
