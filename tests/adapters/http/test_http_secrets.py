"""Credentials of an HTTP connection never show in logs, reprs, error messages or spec()."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable

# Imported first: importing Airflow configures logging (root level INFO), which would otherwise
# undo caplog's DEBUG level in the middle of the test.
import airflow.providers.http.hooks.http  # noqa: F401
import pytest

from hookbridge import NextLink, RemoteStatusError, Retry, TransportError
from hookbridge.adapters.http import HttpAdapter

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
]

Connect = Callable[..., str]
LOGIN = "user"
PASSWORD = "s3cret-Pa55word"  # the password of the conftest's connections and server
TOKEN = "tok-9f8e7d6c5b4a"


async def test_credentials_never_leak(
    connect: Connect, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    basic = base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
    conn_id = connect("secretapi", **{"X-Api-Token": TOKEN, "hookbridge": {"timeout": 5}})
    seen: list[str] = []
    async with HttpAdapter(conn_id, retry=Retry(attempts=2, backoff=0.0)) as api:
        seen += [repr(api), json.dumps(api.spec()), repr(api.statistics()), str(await api.check())]
        response = await api.get("/auth/basic")
        assert response.status == 200  # the credentials were used...
        seen.append(repr(response))
        # ...and an error whose URL and body both carry the token (the server echoes the id).
        with pytest.raises(RemoteStatusError) as status_error:
            await api.get(f"/items/{TOKEN}")
        with pytest.raises(RemoteStatusError) as unauthorized:
            await api.get("/status/401")
        with pytest.raises(TransportError) as transport_error:
            await api.get(f"/drop?after_bytes=10&token={TOKEN}")
        async with api.stream("GET", f"/items/{TOKEN}", raise_for_status=False) as body:
            seen.append(repr(body))
        pages = api.pages("/paged/nextlink", strategy=NextLink(), max_pages=1)
        seen += [repr(page) async for page in pages]
    seen.append(repr(api))
    for info in (status_error, unauthorized, transport_error):
        error = info.value
        seen += [str(error), repr(error), str(getattr(error, "url", "")), repr(error.args)]
        seen.append(getattr(error, "body_excerpt", ""))
    captured = capfd.readouterr()
    seen += [caplog.text, captured.out, captured.err]
    assert any(record.name == "hookbridge.http" for record in caplog.records)  # it did log
    # The redaction ran (the token is replaced where it would have been), so this test can fail.
    assert "/items/***" in str(status_error.value)
    assert "token=***" in str(transport_error.value)
    assert "got '***'" in status_error.value.body_excerpt
    for text in seen:
        for secret in (PASSWORD, TOKEN, basic):
            assert secret not in text, f"{secret!r} leaked into {text[:300]!r}"
