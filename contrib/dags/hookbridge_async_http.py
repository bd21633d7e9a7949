"""Example DAGs: one ``@task async def`` that pages through a listing and fans out detail calls.

Connection ``hookbridge_example_api`` (conn_type http) points at an API shaped like
``hookbridge.testing.HTTPTestServer``: ``/paged/nextlink`` lists items (``{"value": [...],
"@odata.nextLink": ...}``), ``/items/{id}`` returns one. The listing feeds the fan-out lazily, so
memory does not grow with the number of items; progress goes to the task log every
``progress_interval`` seconds; the task returns a small aggregate through XCom.

``hookbridge_async_http`` collects failures (``on_error="collect"``): the result names the items
that failed. ``hookbridge_async_http_raise`` stops at the first failure: the task fails with an
error naming the failed items.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

import hookbridge

CONN_ID = "hookbridge_example_api"
PARAMS = {"total": 300, "known": 300, "progress_interval": 5.0, "max_at_once": 20}


async def _details(params: dict[str, Any], on_error: str) -> dict[str, Any]:
    async with hookbridge.open(CONN_ID, max_connections=int(params["max_at_once"])) as api:
        listing = api.items(
            "/paged/nextlink",
            strategy=hookbridge.NextLink(link="@odata.nextLink", items="value"),
            params={"size": 50, "total": int(params["total"])},
        )

        async def detail(item: dict[str, Any]) -> str:
            # ids at or above "known" answer 404: the failures the fan-out reports by item.
            response = await api.get(f"/items/{item['id']}", params={"total": params["known"]})
            return str(response.json()["name"])

        ok, failed = 0, []
        async with hookbridge.amap(
            detail,
            listing,
            max_at_once=int(params["max_at_once"]),
            on_error=on_error,  # type: ignore[call-overload]
            progress_interval=float(params["progress_interval"]),
        ) as results:
            async for result in results:
                if on_error == "raise" or result.ok:
                    ok += 1
                else:
                    failed.append(result.item["id"])
        calls = api.statistics().calls
    return {"ok": ok, "failed": len(failed), "failed_ids": failed[:20], "calls": calls}


@dag(
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    params=PARAMS,
    tags=["hookbridge", "example"],
)
def hookbridge_async_http() -> None:
    @task
    async def fetch_details(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Listing → details, every failure collected and named in the result."""
        return await _details(params or PARAMS, "collect")

    fetch_details()


@dag(
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    params=PARAMS,
    tags=["hookbridge", "example"],
)
def hookbridge_async_http_raise() -> None:
    @task
    async def fetch_details(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Listing → details; the first failure fails the task (BatchError names the items)."""
        return await _details(params or PARAMS, "raise")

    fetch_details()


collecting = hookbridge_async_http()
raising = hookbridge_async_http_raise()
