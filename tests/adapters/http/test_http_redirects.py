"""Redirects obey the host policy: credentials and bodies never follow one to another origin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

import pytest

from hookbridge import HostRefused, RemoteStatusError
from hookbridge.adapters.http import HttpAdapter
from hookbridge.testing._http_server import HTTPTestServer

Connect = Callable[..., str]

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]


@pytest.fixture
async def other_origin() -> AsyncIterator[HTTPTestServer]:
    """A second server: another port on the same host is another origin."""
    async with HTTPTestServer(password="other-origin-secret") as server:
        yield server


def _to(url: str, status: int = 302) -> str:
    return f"/redirect?status={status}&to={quote(url, safe='')}"


async def test_a_redirect_within_the_origin_is_followed(connect: Connect) -> None:
    async with HttpAdapter(connect()) as api:
        response = await api.get(_to("/items/3"))
    assert response.json()["id"] == 3
    assert response.url.endswith("/items/3")


@pytest.mark.parametrize(("method", "status"), [("GET", 302), ("POST", 307), ("PUT", 308)])
async def test_a_redirect_to_another_origin_is_refused_and_sends_nothing_there(
    connect: Connect, other_origin: HTTPTestServer, method: str, status: int
) -> None:
    target = f"{other_origin.url}/items/5"
    conn_id = connect(**{"X-Api-Key": "an-api-key-secret"})
    async with HttpAdapter(conn_id) as api:
        with pytest.raises(HostRefused) as refused:
            await api.request(method, _to(target, status), json={"secret": "body"})
    message = str(refused.value)
    assert "redirect" in message and "allowed_hosts" in message
    assert f"127.0.0.1:{other_origin.port}" in message
    assert refused.value.url == target
    # Nothing reached the other origin: no credential header, no body.
    assert other_origin.requests == []


async def test_an_allowed_host_gets_the_redirect_and_307_keeps_method_and_body(
    connect: Connect, other_origin: HTTPTestServer
) -> None:
    target = f"{other_origin.url}/items/5"
    async with HttpAdapter(connect(), allowed_hosts=[f"127.0.0.1:{other_origin.port}"]) as api:
        kept = (await api.post(_to(target, 307), json={"n": 1})).json()
        rewritten = (await api.post(_to(target, 303), json={"n": 1})).json()
    assert kept["method"] == "POST" and kept["json"] == {"n": 1}
    assert rewritten == {"id": 5, "name": "item-5"}  # 303: GET, without the body
    assert [r.method for r in other_origin.requests] == ["POST", "GET"]


async def test_a_redirect_loop_says_redirects(connect: Connect) -> None:
    async with HttpAdapter(connect()) as api:
        with pytest.raises(RemoteStatusError) as loop:
            await api.get("/redirect/loop")
    message = str(loop.value)
    assert "more than 10 redirects" in message and "loop" in message
    assert "message=''" not in message


async def test_streams_obey_the_same_redirect_policy(
    connect: Connect, other_origin: HTTPTestServer
) -> None:
    async with HttpAdapter(connect()) as api:
        async with api.stream("GET", _to("/bytes/1000")) as body:
            assert len(b"".join([chunk async for chunk in body.iter_chunks()])) == 1000
        with pytest.raises(HostRefused):
            async with api.stream("GET", _to(f"{other_origin.url}/bytes/10")):
                pass
    assert other_origin.requests == []


async def test_redirects_can_be_turned_off_by_the_provider_extra(connect: Connect) -> None:
    async with HttpAdapter(connect(allow_redirects=False)) as api:
        response = await api.get(_to("/items/3"))
    assert response.status == 302
