"""Graph through the connection's ``proxies``: a real CONNECT proxy on loopback.

The provider builds its proxy transports without the connection's ``verify`` (so a connection
with ``verify: false`` or its own CA fails through a proxy) and they would bypass the body cap;
the adapter builds them itself.

Its proxy transports must be closed by the adapter too: msgraph-core's wrapper has no aclose(),
so they leaked their sockets to the proxy (warnings are errors here).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import suppress

import anyio
import anyio.abc
import pytest

from hookbridge import ResponseTooLarge
from hookbridge.adapters.msgraph import MSGraphAdapter
from hookbridge.testing import GraphTestServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

Connect = Callable[..., str]

_HEAD_LIMIT = 8192
SECRET = "graph-client-secret-7f3a9c"


class ConnectProxy:
    """A forward proxy that only tunnels (``CONNECT host:port``), as HTTPS through a proxy is."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.url = ""

    async def _pipe(self, source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream) -> None:
        with suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            while True:
                await sink.send(await source.receive())
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await sink.send_eof()  # type: ignore[attr-defined]

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await client.receive()
                head += chunk
                if len(head) > _HEAD_LIMIT:
                    return
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT":
                await client.send(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, port = target.rsplit(":", 1)
            self.tunnels.append(target)
            async with await anyio.connect_tcp(host, int(port)) as upstream:
                await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pipe, client, upstream)
                    tg.start_soon(self._pipe, upstream, client)


@pytest.fixture
async def graph() -> AsyncIterator[GraphTestServer]:
    # Graph over TLS with a certificate of its own (the connection says verify: false).
    async with GraphTestServer(users=10, client_secret=SECRET, graph_tls=True) as server:
        yield server


@pytest.fixture
async def proxy() -> AsyncIterator[ConnectProxy]:
    server = ConnectProxy()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server.url = f"http://127.0.0.1:{port}"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server._handle)
        yield server
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("as_json", [False, True])
async def test_requests_go_through_the_proxy_with_the_connections_verify(
    graph: GraphTestServer, connect: Connect, proxy: ConnectProxy, as_json: bool
) -> None:
    # verify: false (the emulator's certificate is its own): honoured through the proxy too.
    # The provider reads the proxies extra as a dict or as a JSON string.
    proxies = {"https": proxy.url, "no": "example.invalid,"}
    conn_id = connect(proxies=json.dumps(proxies) if as_json else proxies)
    graph_port = graph.airflow_connection()["host"].rsplit(":", 1)[1]
    async with MSGraphAdapter(conn_id) as api:
        page = await api.get("users", query={"$top": 3})
        assert [user["id"] for user in page["value"]] == ["u-000000", "u-000001", "u-000002"]
    # The empty entry after the comma did not switch the proxy off for every host (the
    # provider's own proxy mounts would have had all:// -> no proxy).
    assert f"127.0.0.1:{graph_port}" in proxy.tunnels


async def test_the_body_cap_holds_through_the_proxy(
    graph: GraphTestServer, connect: Connect, proxy: ConnectProxy
) -> None:
    # No "no" entry: the token request goes through the proxy too (azure-identity's own).
    conn_id = connect(proxies={"https": proxy.url}, hookbridge={"max_body_size": 1000})
    async with MSGraphAdapter(conn_id) as api:
        with pytest.raises(ResponseTooLarge) as error:
            await api.get("users/u-000001/photo/$value")
        # Refused on its Content-Length or cut as it arrived, not read whole and then measured.
        assert "Content-Length" in str(error.value) or "cut as they arrived" in str(error.value)
        assert len(await api.get("users/u-000001/photo/$value", max_body_size=5000)) == 4096
    ports = {
        graph.airflow_connection()["host"].rsplit(":", 1)[1],
        graph.authority.rsplit(":", 1)[1],
    }
    assert {tunnel.rsplit(":", 1)[1] for tunnel in proxy.tunnels} == ports
