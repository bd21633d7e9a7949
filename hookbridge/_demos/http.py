"""The HTTP part of ``hookbridge demo``: a paginated listing feeding a throttled fan-out."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from hookbridge._demos import DemoResult, DemoUI, airflow_connection

# Importing Airflow creates $AIRFLOW_HOME/logs: keep a demo run out of the user's home. Airflow and
# the servers are imported here, when the demo loads its parts, so that their import is not counted
# in this part's time and heap peak.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="hookbridge-demo-airflow-"))

import airflow.providers.http.hooks.http  # noqa: F401

from hookbridge import Limits, NextLink
from hookbridge.adapters.http import HttpAdapter, Response
from hookbridge.testing._http_server import HTTPTestServer

__all__ = ["run"]

CONN_ID = "hookbridge_demo_http"
ITEMS = 2000
PAGE_SIZE = 100
# When the fan-out has delivered this many details, the server answers the next request with
# this status and Retry-After; the adapter's shared cool-down then pauses every caller.
THROTTLES = {500: (429, "1"), 1300: (503, "1")}


async def run(ui: DemoUI) -> DemoResult:
    """List 2,000 items (pages of 100) and fetch each one's details, 50 at a time."""
    # A password long enough for Airflow's secret masker (it skips secrets under 5 characters).
    async with HTTPTestServer(items=ITEMS, password="demo-secret") as server:
        connection = {
            "conn_type": "http",
            "host": server.host,
            "port": server.port,
            "login": server.user,
            "password": server.password,
            "extra": {
                "hookbridge": {
                    "retry": {"attempts": 5, "backoff": 0.05},
                    "pool": {"max_connections": 50},
                }
            },
        }
        with airflow_connection(CONN_ID, connection):
            limits = Limits(rate="5000/s", burst=50, max_concurrency=50)
            async with HttpAdapter(CONN_ID, limits=limits) as api:
                started = time.perf_counter()  # the workload, not the server's start-up

                async def details(item: dict[str, Any]) -> Response:
                    return await api.get(f"/items/{item['id']}")

                progress = ui.progress("http: list 2,000 items, fetch each (50 at once)", ITEMS)
                listing = api.items(
                    "/paged/nextlink", strategy=NextLink(), params={"size": PAGE_SIZE}
                )
                done = failed = received = 0
                async with api.map(details, listing, max_at_once=50, on_error="collect") as out:
                    async for outcome in out:
                        if outcome.ok:
                            done += 1
                            received += len(outcome.unwrap().content)
                        else:
                            failed += 1
                            ui.log(f"http: item {outcome.item['id']} failed: {outcome.error}")
                        progress.advance()
                        if done + failed in THROTTLES:
                            status, retry_after = THROTTLES[done + failed]
                            server.throttle(1, status, retry_after, path_prefix="/items/")
                seconds = time.perf_counter() - started
                stats = api.statistics()
        pages = server.count("/paged/nextlink")
    return DemoResult.of_calls(
        "http",
        stats,
        seconds=seconds,
        failed=failed,
        received=received,
        notes=(
            f"{done:,} items from {pages} pages streamed into a 50-wide fan-out; "
            f"{stats.throttled} Retry-After (429, 503) honoured by every caller (shared cool-down)"
        ),
    )
