"""Secrets never show: not in DEBUG logs, error messages, tracebacks, reprs or spec().

Every secret of the subject's connection (for HTTP: the password, an API-key header, the Basic
token) is looked for in each form it takes on the wire (``hookbridge.testing.secret_forms``: raw,
percent-encoded, form-encoded, base64), across everything the suite makes the adapter show:
spec(), repr(), statistics, check(), and every error of a fault storm, a refused connection, a
stalled server, plus (HTTP) errors whose URL carries a secret, with their whole traceback text
(``traceback.format_exception``, chained causes included).
"""

from __future__ import annotations

import json
import logging
import socket
import traceback
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

# Imported first: importing Airflow configures logging (root level INFO), which would otherwise
# undo caplog's DEBUG level in the middle of the test.
import airflow.providers.http.hooks.http  # noqa: F401
import anyio
import pytest
from reliability_subjects import HTTP_API_KEY, HTTP_PASSWORD, Subject

from hookbridge import HookBridgeError, NextLink, Retry, amap

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
    pytest.mark.timeout(90),
]


def _shown(error: BaseException) -> list[str]:
    """Everything an error can put in front of someone: message, repr, traceback, attributes."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    texts += [str(value) for value in vars(error).values()]
    return texts


def _leaks(texts: Iterable[str], forms: list[str]) -> list[tuple[str, str]]:
    return [(form, text[:300]) for text in texts for form in forms if form in text]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_no_secret_shows_anywhere_the_adapter_reports(
    subject: Subject, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    forms = subject.secret_forms()
    assert len(forms) >= 3 * len(subject.secrets)  # raw, encoded and base64 forms at least
    texts: list[str] = []
    errors: list[BaseException] = []
    with anyio.fail_after(60):
        async with subject.adapter(subject.conn_id, retry=Retry(attempts=2, backoff=0.0)) as api:
            texts += [json.dumps(api.spec()), repr(api), repr(api.statistics())]
            texts.append(str(await api.check()))
            # A storm makes every kind of failure: drops at each point, 500, 503, 429.
            subject.storm(7, drop=0.3, error=0.3, throttle=0.2, retry_after="0")
            async with amap(
                lambda i: subject.read(api, i), range(200), max_at_once=20, on_error="collect"
            ) as outcomes:
                errors += [o.error async for o in outcomes if o.error is not None]
            texts.append(repr(api.statistics()))
        texts.append(repr(api))

        # A refused connection, and a server that accepts and never answers.
        # (An adapter that connects at open fails there: the open's error is as good.)
        async def open_and_read(conn_id: str, **options: Any) -> None:
            async with subject.adapter(conn_id, retry=Retry.none(), **options) as api:
                texts.append(str(await api.check()))
                await subject.read(api, 1)

        with pytest.raises(HookBridgeError) as info:
            await open_and_read(subject.connect_to("127.0.0.1", _closed_port()))
        errors.append(info.value)
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as silent:
            port = silent.extra(anyio.abc.SocketAttribute.local_port)
            stalled = subject.connect_to("127.0.0.1", port)
            with pytest.raises(HookBridgeError) as info:
                await open_and_read(stalled, **subject.attempt_timeout(0.3))
            errors.append(info.value)
    assert len(errors) > 20, "the storm should have failed many operations"
    for error in errors:
        texts += _shown(error)
    texts.append(caplog.text)
    texts += [repr(record.args) for record in caplog.records]
    assert caplog.records, "nothing was logged: the log check would prove nothing"
    # Read again: some secrets exist only once the run issued them (Graph's bearer tokens).
    assert not _leaks(texts, subject.secret_forms())


# Where a secret may come back from the server in a URL: the query of a request, an error page
# that echoes it, a redirect or a next link (APIs that take a key in the query echo it in their
# next links).
def _endpoints(encoded: str) -> dict[str, list[str]]:
    return {
        "request": [
            f"/items/{encoded}",  # 400: not an integer id (the server echoes it)
            f"/status/500?token={encoded}",
            f"/status/429?retry_after=0&token={encoded}",
            f"/drop?after_bytes=10&token={encoded}",
            f"/bytes/1000000?token={encoded}",  # over the cap
            f"/slow?delay=5&token={encoded}",  # over the timeout
        ],
        "links": [
            f"/redirect?to=http://evil.example/?token={encoded}",  # HostRefused
            f"/hostile/html?token={encoded}",  # MalformedResponse of a page
            f"/paged/nextlink?host=evil.example&size=2&token={encoded}",  # PaginationRefused
        ],
    }


async def _errors_and_texts(subject: Subject, group: str) -> tuple[list[BaseException], list[str]]:
    errors: list[BaseException] = []
    texts: list[str] = []
    endpoints = [
        endpoint
        for secret in (HTTP_PASSWORD, HTTP_API_KEY)
        for encoded in {quote(secret, safe=""), quote_plus(secret)}
        for endpoint in _endpoints(encoded)[group]
    ]
    with anyio.fail_after(60):
        async with subject.adapter(
            subject.conn_id, retry=Retry(attempts=2, backoff=0.0), timeout=0.3,
            max_body_size=1024,
        ) as api:  # fmt: skip

            async def attempt(endpoint: str) -> None:
                if endpoint.startswith(("/hostile", "/paged")):
                    [_ async for _ in api.pages(endpoint, strategy=NextLink())]
                else:
                    await api.get(endpoint)

            for endpoint in endpoints:
                with pytest.raises(HookBridgeError) as info:
                    await attempt(endpoint)
                errors.append(info.value)
            texts += [json.dumps(api.spec()), repr(api), repr(api.statistics())]
    for error in errors:
        texts += _shown(error)
    return errors, texts


async def test_http_request_errors_whose_url_carries_a_secret_are_redacted(
    subject: Subject, caplog: pytest.LogCaptureFixture
) -> None:
    if subject.name != "http":
        pytest.skip("HTTP URLs")
    caplog.set_level(logging.DEBUG)
    errors, texts = await _errors_and_texts(subject, "request")
    kinds = {type(error).__name__ for error in errors}
    assert {"RemoteStatusError", "Throttled", "TransportError", "ResponseTooLarge"} <= kinds
    texts.append(caplog.text)
    assert "***" in "".join(texts)  # redaction ran where the secrets were
    assert not _leaks(texts, subject.secret_forms())


async def test_http_link_errors_whose_url_carries_a_secret_are_redacted(
    subject: Subject, caplog: pytest.LogCaptureFixture
) -> None:
    if subject.name != "http":
        pytest.skip("HTTP URLs")
    caplog.set_level(logging.DEBUG)
    errors, texts = await _errors_and_texts(subject, "links")
    kinds = {type(error).__name__ for error in errors}
    assert {"HostRefused", "MalformedResponse", "PaginationRefused"} <= kinds
    texts.append(caplog.text)
    assert not _leaks(texts, subject.secret_forms())
