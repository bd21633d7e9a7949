"""The Microsoft Graph part of ``hookbridge demo``: streamed users, a $batch, a delta round.

Starts the Graph emulator (a TLS token endpoint and the Graph API on loopback), defines the
Airflow msgraph connection in-process, then: streams 300 users (pages of 50) into a 20-wide
fan-out that reads each one's details while the emulator throttles once (the shared cool-down);
reads 100 users through ``batch()`` in 5 ``$batch`` calls, one sub-request throttled twice; and
runs a delta round, changes three users, and resumes from the stored delta link.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

from hookbridge import Limits
from hookbridge._demos import DemoResult, DemoUI, airflow_connection

# Importing Airflow creates $AIRFLOW_HOME/logs: keep a demo run out of the user's home. The
# provider is imported here, when the demo loads its parts, outside this part's timing.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="hookbridge-demo-airflow-"))

import airflow.providers.microsoft.azure.hooks.msgraph  # noqa: F401

from hookbridge.adapters.msgraph import MSGraphAdapter
from hookbridge.testing._graph_server import GraphTestServer

__all__ = ["run"]

CONN_ID = "hookbridge_demo_msgraph"
USERS = 300
PAGE_SIZE = 50
BATCH_READS = 100
# After this many details, the emulator answers the next request 429 with Retry-After: 1.
THROTTLE_AT = 120


async def run(ui: DemoUI) -> DemoResult:
    """Stream, batch and delta against the emulator; one line of the summary table."""
    # A secret long enough for Airflow's secret masker (it skips secrets under 5 characters).
    async with GraphTestServer(users=USERS, client_secret="demo-graph-client-secret") as server:
        connection = server.airflow_connection(
            hookbridge={"retry": {"attempts": 5, "backoff": 0.05}}
        )
        with airflow_connection(CONN_ID, connection):
            limits = Limits(rate="5000/s", burst=20, max_concurrency=20)
            async with MSGraphAdapter(CONN_ID, limits=limits) as graph:
                started = time.perf_counter()
                streamed, failed, received = await _stream(ui, graph, server)
                batched = await _batch(ui, graph, server)
                changes = await _delta(ui, graph, server)
                seconds = time.perf_counter() - started
                stats = graph.statistics()
        round_trips = server.request_count
    return DemoResult.of_calls(
        "msgraph",
        stats,
        seconds=seconds,
        failed=failed,
        received=received,
        notes=(
            f"{streamed:,} users streamed into a 20-wide fan-out; {BATCH_READS} reads in "
            f"{batched} $batch calls (throttled sub-requests re-sent alone); delta round "
            f"resumed with {changes} changes; "
            f"{round_trips:,} HTTP round trips in all"
        ),
    )


async def _stream(
    ui: DemoUI, graph: MSGraphAdapter, server: GraphTestServer
) -> tuple[int, int, int]:
    progress = ui.progress(f"msgraph: stream {USERS} users, read each (20 at once)", USERS)
    done = failed = received = 0

    async def detail(user: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await graph.get(
            f"users/{user['id']}", query={"$select": "displayName,department,jobTitle"}
        )
        return result

    listing = graph.items("users", query={"$top": PAGE_SIZE, "$select": "id"})
    async with graph.map(detail, listing, max_at_once=20, on_error="collect") as results:
        async for outcome in results:
            if outcome.ok:
                done += 1
                received += len(json.dumps(outcome.unwrap()))
            else:
                failed += 1
                ui.log(f"msgraph: user {outcome.item['id']} failed: {outcome.error}")
            progress.advance()
            if done + failed == THROTTLE_AT:
                server.throttle(1, 429, 1, path_prefix="/users/")
    return done, failed, received


async def _batch(ui: DemoUI, graph: MSGraphAdapter, server: GraphTestServer) -> int:
    progress = ui.progress(f"msgraph: {BATCH_READS} reads through $batch", BATCH_READS)
    before = server.request_count
    server.throttle(2, 429, 0.2, path_prefix="/users/u-000042", in_batch=True)
    outcomes = await graph.batch([f"users/u-{i:06d}" for i in range(BATCH_READS)])
    for outcome in outcomes:
        if not outcome.ok:
            ui.log(f"msgraph: batch request #{outcome.index} failed: {outcome.error}")
    progress.advance(len(outcomes))
    return server.request_count - before


async def _delta(ui: DemoUI, graph: MSGraphAdapter, server: GraphTestServer) -> int:
    progress = ui.progress("msgraph: delta round, 3 changes, resume", USERS + 3)
    first = graph.delta("users/delta", query={"$select": "displayName"}, page_size=200)
    async for _ in first:
        progress.advance()
    directory = server.resources.directory
    directory.update("u-000007", {"displayName": "Renamed in the demo"})
    directory.delete("u-000008")
    directory.add({"displayName": "Joined during the demo"})
    assert first.delta_link is not None
    changes = 0
    second = graph.delta("users/delta", first.delta_link)
    async for _ in second:
        changes += 1
        progress.advance()
    return changes
