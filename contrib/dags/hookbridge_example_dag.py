"""Example DAG: an async task and a deferrable operator using hookbridge on one HTTP API.

Connection ``hookbridge_example_api`` (conn_type http) must point at an API with the endpoints of
``hookbridge.testing.HTTPTestServer`` (``/paged/nextlink`` and ``/items/{id}``).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import BaseOperator, dag, task
from hookbridge_example_triggers import CountItemsTrigger

import hookbridge
from hookbridge.adapters.http import HttpAdapter

CONN_ID = "hookbridge_example_api"


@task
async def fetch_details(total: int = 300) -> dict[str, Any]:
    """A paginated listing feeding a bounded fan-out of detail requests, in one async task."""
    limits = hookbridge.Limits(rate="500/s", burst=20, max_concurrency=20)
    async with hookbridge.open(CONN_ID, limits=limits) as api:
        listing = api.items(
            "/paged/nextlink",
            strategy=hookbridge.NextLink(link="@odata.nextLink", items="value"),
            params={"size": 50, "total": total},
        )

        async def detail(item: dict[str, Any]) -> str:
            response = await api.get(f"/items/{item['id']}")
            return str(response.json()["name"])

        ok = failed = 0
        async with api.map(detail, listing, max_at_once=20, on_error="collect") as outcomes:
            async for outcome in outcomes:
                if outcome.ok:
                    ok += 1
                else:
                    failed += 1
        stats = api.statistics()
    result = {"ok": ok, "failed": failed, "calls": stats.calls, "retries": stats.retries}
    print(f"HOOKBRIDGE_EXAMPLE fetch_details {result}")
    return result


class CountItemsOperator(BaseOperator):
    """Defers to :class:`CountItemsTrigger`, handing it the adapter's spec (no credentials)."""

    def __init__(self, *, conn_id: str, endpoint: str, query: dict[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.endpoint = endpoint
        self.query = query  # not "params": BaseOperator reserves that name

    def execute(self, context: Any) -> None:
        spec = HttpAdapter(self.conn_id, limits=hookbridge.Limits(rate="100/s")).spec()
        self.defer(
            trigger=CountItemsTrigger(spec, self.endpoint, self.query),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> int:
        print(f"HOOKBRIDGE_EXAMPLE count_items {event['count']}")
        return int(event["count"])


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["hookbridge"])
def hookbridge_example() -> None:
    fetch_details()
    CountItemsOperator(
        task_id="count_items",
        conn_id=CONN_ID,
        endpoint="/paged/nextlink",
        query={"size": 40, "total": 200},
    )


example = hookbridge_example()
