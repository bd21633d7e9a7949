"""Issue 9's HTTP defects, each against loopback servers: encoded secrets, foreign error texts
that carry a URL, TLS on a plain-HTTP port, redirects to hosts that cannot be reached, and
Retry-After above the policy's cap."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

# Imported first: importing Airflow configures logging (root level INFO), which would otherwise
# undo caplog's DEBUG level in the middle of the test.
import airflow.providers.http.hooks.http  # noqa: F401
import anyio
import pytest
from anyio.abc import SocketStream

from hookbridge import (
    ConnectFailed,
    RemoteStatusError,
    Retry,
    Throttled,
    TransportError,
)
from hookbridge.adapters.http import HttpAdapter
from hookbridge.testing import secret_forms
from hookbridge.testing._http_server import HTTPTestServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

Connect = Callable[..., str]
LOGIN = "user"
# Every character of it is encoded on the wire, each client in its own way: yarl (aiohttp) writes
# "p@ss+word%2B/x" in a query, urllib "p%40ss%20word%2B%2Fx", form encoding "p%40ss+word%2B%2Fx".
PASSWORD = "p@ss word+/x"
TOKEN = "tok/9f8e+7d6c 5b4a"
NO_RETRY = Retry(attempts=1)


def _texts(error: BaseException) -> list[str]:
    """Everything of an error a user or a log could see."""
    texts = [str(error), repr(error), repr(error.args), *getattr(error, "__notes__", [])]
    texts += [str(getattr(error, name, "")) for name in ("url", "target", "body_excerpt")]
    return texts


def _assert_no_secret(texts: list[str], *secrets: str) -> None:
    forms = {form for secret in secrets for form in secret_forms(secret)}
    forms.add(base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode())
    for text in texts:
        for form in forms:
            assert form not in text, f"{form!r} leaked into {text[:300]!r}"


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never says anything."""

    async def swallow(stream: SocketStream) -> None:
        async with stream:
            try:
                while await stream.receive():
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, swallow)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


# -- secrets in encoded form -----------------------------------------------------------------


async def test_a_password_passed_in_a_query_never_shows_in_any_encoding(
    connect: Connect, http_server: HTTPTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    conn_id = connect("encoded", login=LOGIN, password=PASSWORD)
    texts: list[str] = []
    async with HttpAdapter(conn_id, retry=NO_RETRY) as api:
        ok = await api.get("/items/1", params={"password": PASSWORD})  # logged at DEBUG
        assert ok.status == 200
        texts.append(repr(ok))
        # An error status: the URL in the message, the query echoed in nothing.
        with pytest.raises(RemoteStatusError) as missing:
            await api.get("/items/99999", params={"password": PASSWORD})
        # The password in the path: the server echoes it in its error body.
        with pytest.raises(RemoteStatusError) as echoed:
            await api.get(f"/items/{quote(PASSWORD, safe='')}")
        # A transport failure, the URL written by hand with urllib's encoding.
        with pytest.raises(TransportError) as dropped:
            await api.get(f"/drop?after_bytes=10&password={quote(PASSWORD, safe='')}")
    for info in (missing, echoed, dropped):
        texts += _texts(info.value)
    texts.append(caplog.text)
    # The test can fail: the password did travel, encoded, in the URLs the messages quote.
    assert [r.query.get("password") for r in http_server.matching("/items/")][:2] == [PASSWORD] * 2
    assert "password=***" in str(missing.value) and "password=***" in str(dropped.value)
    assert any("password=***" in record.getMessage() for record in caplog.records)
    assert "***" in echoed.value.body_excerpt
    _assert_no_secret(texts, PASSWORD)


# -- foreign error texts that carry the URL --------------------------------------------------


async def test_an_aiohttp_error_whose_text_carries_the_url_is_redacted(connect: Connect) -> None:
    # aiohttp's ConnectionTimeoutError says "Connection timeout to host <the whole URL>": here
    # the one pooled connection is busy, so the next request times out waiting for it.
    conn_id = connect("pooled", login=LOGIN, password=PASSWORD, **{"X-Api-Token": TOKEN})
    api = HttpAdapter(conn_id, retry=NO_RETRY, max_connections=1)
    # An open stream holds the only connection until the block ends.
    async with api, api.stream("GET", "/slow/stream?chunks=2&interval=5"):
        with pytest.raises(ConnectFailed) as waited:
            await api.get(
                f"/items/1?token={quote(TOKEN, safe='')}",
                params={"password": PASSWORD},
                timeout={"total": 5, "connect": 0.2},
            )
    cause = str(waited.value.__cause__)
    # The foreign text has both secrets, encoded (so that this test can fail).
    assert "token=" in cause and "password=" in cause
    assert any(form in cause for form in secret_forms(TOKEN))
    assert any(form in cause for form in secret_forms(PASSWORD))
    message = str(waited.value)
    assert message.count("token=***") == 2  # in our "where" and in aiohttp's own text
    _assert_no_secret(_texts(waited.value), PASSWORD, TOKEN)


async def test_a_307_with_a_secret_query_to_a_silent_https_host_is_redacted_and_says_tls(
    connect: Connect, silent_port: int
) -> None:
    target = f"https://127.0.0.1:{silent_port}/next?token={quote(TOKEN, safe='')}"
    conn_id = connect("redirected", login=LOGIN, password=PASSWORD, **{"X-Api-Token": TOKEN})
    async with HttpAdapter(
        conn_id, retry=NO_RETRY, allowed_hosts=[f"127.0.0.1:{silent_port}"]
    ) as api:
        with pytest.raises(ConnectFailed) as hung:
            await api.post(
                f"/redirect?status=307&to={quote(target, safe='')}",
                json={"n": 1},
                timeout={"total": 5, "connect": 0.3},
            )
    # aiohttp's own text quotes the redirect's URL, token included.
    assert any(form in str(hung.value.__cause__) for form in secret_forms(TOKEN))
    message = str(hung.value)
    assert "token=***" in message
    assert "TLS" in message and f"127.0.0.1:{silent_port}" in message
    _assert_no_secret(_texts(hung.value), PASSWORD, TOKEN)


# -- TLS on a port that speaks plain HTTP ----------------------------------------------------


async def test_https_to_a_plain_http_port_reports_tls_not_a_timeout(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    conn_id = connect("tls", fields={"schema": "https"})
    async with HttpAdapter(conn_id, retry=NO_RETRY, timeout=5) as api:
        with pytest.raises(ConnectFailed) as failed:
            await api.get("/items/1")
    message = str(failed.value)
    assert message.startswith(f"GET https://127.0.0.1:{http_server.port}/items/1")
    assert "TLS handshake failed" in message and "plain-HTTP port" in message
    assert "timeout" not in message and "timed out" not in message


async def test_https_to_a_port_that_never_answers_mentions_tls(
    monkeypatch: pytest.MonkeyPatch, silent_port: int
) -> None:
    # A server that waits for a request line never answers a TLS ClientHello: the handshake
    # hangs until the connect timeout. The message must point at TLS, not only at a timeout.
    monkeypatch.setenv(
        "AIRFLOW_CONN_SILENT",
        f'{{"conn_type": "http", "host": "127.0.0.1", "port": {silent_port}, "schema": "https"}}',
    )
    async with HttpAdapter("silent", retry=NO_RETRY, timeout={"total": 5, "connect": 0.3}) as api:
        with pytest.raises(ConnectFailed) as hung:
            await api.get("/items/1")
    message = str(hung.value)
    assert "TLS handshake" in message and "plain HTTP" in message
    assert "schema" in message


# -- redirects to hosts that cannot be reached -----------------------------------------------


@pytest.mark.parametrize("unreachable", ["nonexistent.invalid", "127.0.0.1:1"])
async def test_a_redirect_to_an_unreachable_host_names_that_host_not_the_connection(
    connect: Connect, http_server: HTTPTestServer, unreachable: str
) -> None:
    target = f"http://{unreachable}/elsewhere"
    async with HttpAdapter(connect(), retry=NO_RETRY, allowed_hosts=[unreachable]) as api:
        with pytest.raises(ConnectFailed) as failed:
            await api.get(f"/redirect?to={quote(target, safe='')}")
    message = str(failed.value)
    host = unreachable.partition(":")[0]
    assert f"cannot connect to {host}:" in message
    assert "redirect" in message
    # Nothing says the connection's own host and port are wrong.
    assert "host and port are right" not in message
    assert "connection's host" not in message


async def test_a_failed_connect_to_the_connection_itself_still_names_its_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOSED", '{"conn_type": "http", "host": "127.0.0.1", "port": 1}'
    )
    async with HttpAdapter("closed", retry=NO_RETRY) as api:
        with pytest.raises(ConnectFailed) as failed:
            await api.get("/items/1")
    message = str(failed.value)
    assert "cannot connect to 127.0.0.1:1" in message
    assert "connection's host and port" in message and "redirect" not in message


# -- Retry-After above the cap ---------------------------------------------------------------


async def test_retry_after_above_the_cap_is_not_retried_and_advises_no_more_attempts(
    connect: Connect, http_server: HTTPTestServer
) -> None:
    http_server.throttle(1, retry_after=300)
    async with HttpAdapter(connect(), retry=Retry(attempts=5, max_retry_after=60)) as api:
        with pytest.raises(Throttled) as throttled:
            await api.get("/items/1")
        assert api.statistics().retries == 0
    assert http_server.count("/items/1") == 1  # raised at once, not retried
    texts = _texts(throttled.value)
    assert any("max_retry_after=60" in text for text in texts)
    for text in texts:
        assert "attempts" not in text, text  # more attempts would not wait any longer
