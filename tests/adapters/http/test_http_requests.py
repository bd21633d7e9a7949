"""HttpAdapter requests on the loopback server: responses, methods, statuses, size cap, config."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import hookbridge
from hookbridge import (
    AdapterClosed,
    ConfigurationError,
    HostRefused,
    Limits,
    RemoteStatusError,
    ResponseTooLarge,
    Retry,
    Throttled,
    open_spec,
)
from hookbridge import open as open_adapter
from hookbridge.adapters.http import HttpAdapter, Response
from hookbridge.testing._http_server import HTTPTestServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

Connect = Callable[..., str]
NO_RETRY_WAIT = Retry(attempts=3, backoff=0.0)


async def test_get_returns_a_complete_read_only_response(connect: Connect) -> None:
    async with HttpAdapter(connect()) as api:
        response = await api.get("/items/7")
    # The adapter is closed: the body was read before the connection went back to the pool.
    assert isinstance(response, Response)
    assert response.status == response.status_code == 200
    assert response.ok
    assert bool(response)
    assert response.json() == {"id": 7, "name": "item-7"}
    assert json.loads(response.content) == response.json()
    assert response.text == response.content.decode()
    assert response.headers["CONTENT-TYPE"].startswith("application/json")
    assert response.headers["content-type"] == response.headers["Content-Type"]
    assert response.url.endswith("/items/7")
    assert response.method == "GET"
    assert repr(response) == "<Response 200 GET /items/7>"
    with pytest.raises(AttributeError):
        response.status = 500  # type: ignore[misc]


async def test_endpoint_joining_follows_http_hook(connect: Connect) -> None:
    async with HttpAdapter(connect()) as api:
        assert (await api.get("items/1")).json()["id"] == 1  # no leading slash: joined with "/"
        assert (await api.get("/items/2", params={"total": 5})).json()["id"] == 2
        assert api.base_url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
async def test_write_methods_send_json_and_data(connect: Connect, method: str) -> None:
    async with HttpAdapter(connect()) as api:
        send = getattr(api, method)
        echoed = (await send("/items/3", json={"name": "x"}, params={"q": "1"})).json()
        assert echoed["method"] == method.upper()
        assert echoed["json"] == {"name": "x"}
        assert echoed["query"] == {"q": "1"}
        echoed = (await send("/items/3", data="raw body", headers={"X-Extra": "1"})).json()
        assert echoed["data"] == "raw body"
        assert echoed["headers"]["x-extra"] == "1"


async def test_head_and_request_with_any_method(connect: Connect) -> None:
    async with HttpAdapter(connect()) as api:
        head = await api.head("/items/1")
        assert head.status == 200
        assert head.content == b""
        assert (await api.request("get", "/items/2")).json()["id"] == 2


async def test_basic_auth_and_extra_headers_are_sent(connect: Connect) -> None:
    async with HttpAdapter(connect(**{"X-Team": "data", "hookbridge": {"timeout": 5}})) as api:
        assert (await api.get("/auth/basic")).json() == {"authenticated": True, "user": "user"}
        headers = (await api.get("/headers")).json()["headers"]
    assert headers["x-team"] == "data"
    assert "hookbridge" not in headers  # our settings are not sent as a header


async def test_wrong_password_is_a_status_error(connect: Connect) -> None:
    async with HttpAdapter(connect(password="wrong")) as api:
        with pytest.raises(RemoteStatusError) as info:
            await api.get("/auth/basic")
    assert info.value.status == 401
    assert "login, password" in str(info.value)


async def test_status_error_carries_status_url_and_bounded_excerpt(connect: Connect) -> None:
    async with HttpAdapter(connect()) as api:
        with pytest.raises(RemoteStatusError) as info:
            await api.get("/status/418", params={"body_size": 100_000})
    error = info.value
    assert error.status == 418
    assert error.url is not None
    assert "/status/418" in error.url
    assert error.body_excerpt.startswith('{"status": 418')
    assert len(error.body_excerpt) < 600
    assert "more characters" in error.body_excerpt
    assert len(str(error)) < 1000


async def test_raise_for_status_false_returns_the_response(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    async with HttpAdapter(connect(), retry=NO_RETRY_WAIT) as api:
        response = await api.get("/status/500", raise_for_status=False)
        assert response.status == 500
        assert not response.ok
        assert not response
        assert response.json() == {"status": 500, "method": "GET"}
        with pytest.raises(RemoteStatusError):
            response.raise_for_status()
        assert http_server.count("/status/500") == 1  # returned, not retried
    async with HttpAdapter(connect(), raise_for_status=False) as api:
        assert (await api.get("/items/99999")).status == 404
        with pytest.raises(RemoteStatusError):
            await api.get("/items/99999", raise_for_status=True)


async def test_raise_for_status_false_still_feeds_the_cooldown(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    http_server.throttle(1, 429, "3", path_prefix="/items")
    async with HttpAdapter(connect(), raise_for_status=False) as api:
        response = await api.get("/items/1")
        assert response.status == 429
        stats = api.statistics().limits
    assert stats.throttles == 1
    assert stats.cooldown_remaining > 2


async def test_5xx_retried_for_get_not_for_post(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    async with HttpAdapter(connect(), retry=NO_RETRY_WAIT) as api:
        with pytest.raises(RemoteStatusError):
            await api.get("/status/502")
        with pytest.raises(RemoteStatusError):
            await api.post("/status/502")
        with pytest.raises(RemoteStatusError):
            await api.post("/status/502", retry_non_idempotent=True)
    assert http_server.count("/status/502", "GET") == 3
    assert http_server.count("/status/502", "POST") == 1 + 3


async def test_429_is_retried_even_for_post(connect: Connect, http_server: HTTPTestServer) -> None:
    http_server.throttle(1, 429, "0", method="POST")
    async with HttpAdapter(connect(), retry=NO_RETRY_WAIT) as api:
        assert (await api.post("/items/1", json={})).json()["method"] == "POST"
        assert api.statistics().throttled == 1
    assert http_server.count("/items/1", "POST") == 2


async def test_throttled_error_when_retries_run_out(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    http_server.throttle(5, 503, "0")
    async with HttpAdapter(connect(), retry=Retry(attempts=2, backoff=0.0)) as api:
        with pytest.raises(Throttled) as info:
            await api.get("/items/1")
    assert info.value.status == 503
    assert info.value.retry_after == 0.0


async def test_size_cap_uses_content_length_first(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    async with HttpAdapter(connect(), max_body_size=1000) as api:
        assert len((await api.get("/bytes/1000")).content) == 1000
        with pytest.raises(ResponseTooLarge, match="Content-Length") as info:
            await api.get("/bytes/5000000")
        assert info.value.limit == 1000
        # The oversized body was not read, and its connection was not reused.
        assert len((await api.get("/bytes/10")).content) == 10
    assert http_server.count("/bytes/5000000") == 1


async def test_size_cap_counts_a_body_without_length(connect: Connect) -> None:
    # /slow/stream is chunked: no Content-Length, so the cap is enforced while reading.
    async with HttpAdapter(connect(), max_body_size=50) as api:
        small = await api.get("/slow/stream", params={"chunks": 3, "interval": 0})
        assert small.text == "chunk 0\nchunk 1\nchunk 2\n"
        with pytest.raises(ResponseTooLarge, match="more than 50 bytes"):
            await api.get("/slow/stream", params={"chunks": 100, "interval": 0})
        assert (await api.get("/items/1")).status == 200


async def test_absolute_urls_only_to_the_connection_host(connect: Connect) -> None:
    async with HttpAdapter(connect()) as api:
        own = api.base_url + "/items/4"
        assert (await api.get(own)).json()["id"] == 4
        other = own.replace("127.0.0.1", "localhost")
        with pytest.raises(HostRefused, match="allowed_hosts") as refused:
            await api.get(other)
        assert refused.value.url == other
    async with HttpAdapter(connect(), allowed_hosts=["localhost"]) as api:
        assert (await api.get(other)).json()["id"] == 4


async def test_check_reports_the_status(connect: Connect, http_server: HTTPTestServer) -> None:
    async with HttpAdapter(connect()) as api:
        passed = await api.check()
    assert passed.ok, passed
    assert passed.detail.startswith(f"GET {api.base_url} -> 200")
    missing = connect("missing", fields={"host": http_server.url + "/status/404", "port": None})
    async with HttpAdapter(missing) as api:
        failed = await api.check()
    # An error status at the base URL fails the check, which says what answered.
    assert not failed.ok
    assert f"GET {api.base_url} -> 404" in failed.detail
    assert failed.latency >= 0


async def test_transport_error_names_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # A port that nothing listens on: bind one and close it.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_DOWN", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port})
    )
    async with HttpAdapter("down", retry=Retry(attempts=2, backoff=0.0)) as api:
        with pytest.raises(hookbridge.TransportError, match="cannot connect") as info:
            await api.get("/x")
        assert api.statistics().retries == 1  # a connect failure is retried
        with pytest.raises(hookbridge.TransportError):
            await api.post("/x")  # nothing was sent, so POST is retried as well
        assert api.statistics().retries == 2
    assert f"127.0.0.1:{port}/x" in str(info.value)


async def test_opened_through_the_registry_by_conn_type(connect: Connect) -> None:
    async with open_adapter(connect()) as api:
        assert isinstance(api, HttpAdapter)
        assert (await api.get("/items/1")).status == 200


async def test_lifecycle(connect: Connect) -> None:
    api = HttpAdapter(connect())
    with pytest.raises(AdapterClosed):
        await api.get("/items/1")
    async with api:
        pass
    with pytest.raises(AdapterClosed):
        await api.get("/items/1")


async def test_missing_connection_says_how_to_define_it() -> None:
    with pytest.raises(ConfigurationError, match="AIRFLOW_CONN_NOWHERE") as info:
        async with HttpAdapter("nowhere"):
            pass
    assert info.value.conn_id == "nowhere"


async def test_extra_settings_apply_and_explicit_arguments_win(connect: Connect) -> None:
    settings = {
        "rate": "500/s",
        "burst": 5,
        "retry": {"attempts": 7},
        "pool": {"max_connections": 5, "max_per_host": 3, "keepalive": 2},
        "max_body_size": 100,
        "timeout": {"total": 4, "connect": 1},
    }
    async with HttpAdapter(connect(hookbridge=settings)) as api:
        pool = api.statistics().pool
        assert (pool.max_connections, pool.max_per_host) == (5, 3)
        assert api.limits.burst == 5
        assert api.retry.attempts == 7
        with pytest.raises(ResponseTooLarge):
            await api.get("/bytes/101")
        assert api.spec()["options"] == {}
    explicit: dict[str, Any] = {
        "max_connections": 9,
        "max_body_size": 1000,
        "limits": Limits(rate="10/s"),
        "retry": Retry(attempts=2),
        "timeout": 2.5,
    }
    async with HttpAdapter(connect(hookbridge=settings), **explicit) as api:
        assert api.statistics().pool.max_connections == 9
        assert api.limits.burst == 1
        assert api.retry.attempts == 2
        assert len((await api.get("/bytes/1000")).content) == 1000
        spec = api.spec()
    assert spec["options"]["max_connections"] == 9
    assert spec["options"]["timeout"] == 2.5
    async with open_spec(json.loads(json.dumps(spec)), shared=False) as copy:
        assert copy.spec() == spec


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"pool": {"max_connections": 0}}, "hookbridge.pool.max_connections"),
        ({"pool": {"max_connections": "many"}}, "hookbridge.pool.max_connections"),
        ({"pool": {"keepalive": -1}}, "hookbridge.pool.keepalive"),
        ({"pool": {"max_size": 4}}, "hookbridge.pool.max_size"),
        ({"timeout": -1}, "hookbridge.timeout"),
        ({"timeout": {"total": "slow"}}, "hookbridge.timeout"),
        ({"timeout": {"read": 3}}, "hookbridge.timeout"),
        ({"max_body_size": 0}, "hookbridge.max_body_size"),
        ({"raise_for_status": "yes"}, "hookbridge.raise_for_status"),
        ({"allowed_hosts": "example.com"}, "hookbridge.allowed_hosts"),
        ({"rate": "fast"}, "hookbridge.rate"),
        ({"retry": {"attempts": 0}}, "hookbridge.retry.attempts"),
        ({"speed": 1}, "hookbridge.speed"),
    ],
)
async def test_bad_extra_values_name_conn_id_and_key(
    connect: Connect, settings: dict[str, Any], field: str
) -> None:
    conn_id = connect("badapi", hookbridge=settings)
    with pytest.raises(ConfigurationError) as info:
        async with HttpAdapter(conn_id):
            pass
    assert "conn_id 'badapi'" in str(info.value)
    assert info.value.field is not None
    assert info.value.field == field


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_connections", 0),
        ("max_per_host", -1),
        ("keepalive", "long"),
        ("timeout", 0),
        ("max_body_size", 1.5),
        ("raise_for_status", 1),
        ("allowed_hosts", "example.com"),
    ],
)
async def test_bad_explicit_options_are_refused_at_once(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        HttpAdapter("api", **{option: value})
    assert info.value.field == option
    assert info.value.conn_id == "api"


async def test_https_conn_type_without_schema_means_https(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SECURE", json.dumps({"conn_type": "https", "host": "api.example.com"})
    )
    async with HttpAdapter("secure") as api:
        assert api.base_url == "https://api.example.com"


async def test_keepalive_zero_closes_each_connection(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    async with HttpAdapter(connect(hookbridge={"pool": {"keepalive": 0}})) as api:
        for i in range(3):
            assert (await api.get(f"/items/{i}")).status == 200
        assert api.statistics().pool.idle == 0
    assert http_server.total_connections == 3
    async with HttpAdapter(connect()) as api:
        for i in range(3):
            assert (await api.get(f"/items/{i}")).status == 200
        assert api.statistics().pool.idle == 1
    assert http_server.total_connections == 4  # kept alive: one connection for three requests


async def test_provider_extra_options_apply(connect: Connect, http_server: HTTPTestServer) -> None:
    # HttpHook's own extra options: "timeout" (seconds) and "check_response".
    async with HttpAdapter(connect(timeout=0.2, check_response=False), retry=Retry.none()) as api:
        assert (await api.get("/status/500")).status == 500  # check_response=False
        with pytest.raises(hookbridge.TransportError, match="timeout"):
            await api.get("/slow", params={"delay": 5})
    # The hookbridge settings win over them.
    conn_id = connect(timeout=0.2, check_response=False, hookbridge={"raise_for_status": True})
    async with HttpAdapter(conn_id, retry=Retry.none()) as api:
        with pytest.raises(RemoteStatusError):
            await api.get("/status/500")
