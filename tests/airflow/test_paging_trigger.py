"""PagingTrigger: 200 triggers on one shared adapter, resuming mid-pagination, small events.

The triggers run as the triggerer runs them: many ``run()`` generators in one asyncio loop.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

import hookbridge
from hookbridge.testing import HTTPTestServer

PASSWORD = "trigger-s3cret-password"
CONN = "hookbridge_trigger_api"
LIMIT = 10


def set_conn(monkeypatch: pytest.MonkeyPatch, server: HTTPTestServer) -> None:
    conn = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": server.port,
        "login": "user",
        "password": PASSWORD,
    }
    monkeypatch.setenv("AIRFLOW_CONN_" + CONN.upper(), json.dumps(conn))


def make_trigger(**kwargs: Any) -> Any:
    from hookbridge_paging_trigger import ItemPagesTrigger

    from hookbridge.adapters.http import HttpAdapter

    kwargs.setdefault("spec", HttpAdapter(CONN, max_connections=LIMIT).spec())
    params = kwargs.pop("params", {"size": 10, "total": 100})
    return ItemPagesTrigger("/paged/nextlink", params, **kwargs)


async def drain(trigger: Any) -> dict[str, Any]:
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    return dict(events[0].payload)


def skips(server: HTTPTestServer) -> list[int]:
    return [int(r.query.get("skip", 0)) for r in server.matching("/paged/nextlink")]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_200_triggers_share_one_adapter_within_its_connection_limit(
    http_server: HTTPTestServer, monkeypatch: pytest.MonkeyPatch, dags_on_path: Path
) -> None:
    set_conn(monkeypatch, http_server)
    payloads: list[dict[str, Any]] = []

    async def one(i: int) -> None:
        trigger = make_trigger(params={"size": 10, "total": 50 + i % 7})
        payloads.append(await drain(trigger))

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, i)
    await hookbridge.aclose_shared()
    assert sorted(p["items"] for p in payloads) == sorted(50 + i % 7 for i in range(200))
    assert http_server.count("/paged/nextlink") == sum(-(-(50 + i % 7) // 10) for i in range(200))
    # One adapter for all 200: never more connections than its limit, at the server.
    assert http_server.peak_connections <= LIMIT
    assert http_server.total_connections <= LIMIT
    print(
        f"\n200 PagingTriggers: peak {http_server.peak_connections} connections open, "
        f"{http_server.total_connections} opened in all (limit {LIMIT})"
    )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_200_provider_http_triggers_open_a_connection_each(
    http_server: HTTPTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.http.triggers.http import HttpTrigger

    # Without a login: HttpTrigger's default auth_type (None) is called with the login and
    # fails ("'NoneType' object is not callable"); the connection count is what is measured.
    plain = {"conn_type": "http", "host": "127.0.0.1", "port": http_server.port}
    monkeypatch.setenv("AIRFLOW_CONN_" + CONN.upper(), json.dumps(plain))
    statuses: list[str] = []

    async def one(i: int) -> None:
        trigger = HttpTrigger(http_conn_id=CONN, method="GET", endpoint=f"/items/{i}")
        async for event in trigger.run():
            statuses.append(event.payload["status"])

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, i)
    assert statuses == ["success"] * 200
    # The anchor: a client session, so a connection, per trigger.
    assert http_server.total_connections > LIMIT
    print(
        f"\n200 HttpTriggers: peak {http_server.peak_connections} connections open, "
        f"{http_server.total_connections} opened in all"
    )


def test_a_trigger_serialized_mid_pagination_resumes_on_a_new_loop(
    servers: Any, monkeypatch: pytest.MonkeyPatch, dags_on_path: Path
) -> None:
    server = servers.start_http(password="http-test-secret")
    set_conn(monkeypatch, server)
    first = make_trigger()
    stop_after = 4

    async def until_stopped() -> None:
        with anyio.CancelScope() as scope:
            original = first.on_page

            async def on_page(page: Any) -> None:
                await original(page)
                if first.pages_done + 1 == stop_after:
                    scope.cancel()  # as a triggerer that stops would cancel the trigger

            first.on_page = on_page
            await first.work()
        await hookbridge.aclose_shared()

    anyio.run(until_stopped)
    # The cancel lands while page 5 is being fetched: that request may have left, unprocessed.
    before = skips(server)
    assert before[:4] == [0, 10, 20, 30] and before[4:] in ([], [40])
    classpath, kwargs = first.serialize()
    text = json.dumps(kwargs)
    assert PASSWORD not in text and "user" not in json.dumps(kwargs["spec"])
    assert kwargs["pages_done"] == 4 and kwargs["state"]["items"] == 40

    module, _, name = classpath.rpartition(".")
    cls = getattr(__import__(module), name)
    resumed = cls(**json.loads(text))

    async def finish() -> dict[str, Any]:
        try:
            return await drain(resumed)
        finally:
            await hookbridge.aclose_shared()

    payload = anyio.run(finish)  # a new event loop, as after a triggerer restart
    # From the cursor on: no processed page fetched again, none skipped. The request for page 5
    # that the cancel interrupted reaches the server's log (it runs in its own thread) at any
    # time, possibly after `before` was read: it may appear once more, at the seam only.
    after = skips(server)[4:]
    assert after in (list(range(40, 100, 10)), [40, *range(40, 100, 10)]), after
    assert payload["state"] == {"items": 100, "id_sum": sum(range(100))}
    assert payload["pages"] == 10 and payload["sink"] is None


def test_a_checkpoint_resumes_a_trigger_rebuilt_from_its_original_kwargs(
    servers: Any, monkeypatch: pytest.MonkeyPatch, dags_on_path: Path, tmp_path: Path
) -> None:
    server = servers.start_http(password="http-test-secret")
    set_conn(monkeypatch, server)
    checkpoint = f"file://{tmp_path}/checkpoints"
    sink = f"file://{tmp_path}/items"
    deferred = make_trigger(checkpoint=checkpoint, sink=sink, checkpoint_every=2)
    _, original = deferred.serialize()  # what the metadata DB holds

    async def until_stopped() -> None:
        with anyio.CancelScope() as scope:
            on_page = deferred.on_page

            async def stop(page: Any) -> None:
                await on_page(page)
                if deferred.pages_done + 1 == 5:
                    scope.cancel()

            deferred.on_page = stop
            await deferred.work()
        await hookbridge.aclose_shared()

    anyio.run(until_stopped)
    before = skips(server)
    assert before[:5] == [0, 10, 20, 30, 40] and before[5:] in ([], [50])
    saved = list((tmp_path / "checkpoints").glob("*.json"))
    assert len(saved) == 1 and PASSWORD not in saved[0].read_text()

    from hookbridge_paging_trigger import ItemPagesTrigger

    restarted = ItemPagesTrigger(**json.loads(json.dumps(original)))

    async def finish() -> dict[str, Any]:
        try:
            return await drain(restarted)
        finally:
            await hookbridge.aclose_shared()

    payload = anyio.run(finish)
    # Checkpointed after every 2 pages: page 5 (skip=40) was done after the last save, so it
    # is the one processed page fetched again; the sink was rewound to match.
    assert skips(server)[len(before) :] == list(range(40, 100, 10))
    assert payload["state"] == {"items": 100, "id_sum": sum(range(100))}
    ref = payload["sink"]
    assert ref["items"] == 100 and len(json.dumps(payload)) < 400
    assert [row["id"] for row in hookbridge.read_sink(ref)] == list(range(100))
    assert list((tmp_path / "checkpoints").glob("*.json")) == []  # ended with the work


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_no_secret_in_logs_spec_or_event(
    http_server: HTTPTestServer,
    monkeypatch: pytest.MonkeyPatch,
    dags_on_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    set_conn(monkeypatch, http_server)
    caplog.set_level(logging.DEBUG)
    trigger = make_trigger()
    payload = await drain(trigger)
    await hookbridge.aclose_shared()
    everything = caplog.text + json.dumps(trigger.serialize()) + json.dumps(payload) + repr(trigger)
    assert PASSWORD not in everything
    with pytest.raises(hookbridge.ConfigurationError, match="spec"):
        make_trigger(spec={"conn_id": CONN, "password": PASSWORD})
