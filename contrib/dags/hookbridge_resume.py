"""Example DAG: a fan-out that resumes after a retry, with results too big for XCom in a sink.

``fetch_all`` pages through ``/paged/nextlink`` and fetches every item's details, keeping its
progress in Airflow 3.3's task state store (``context["task_state_store"]``) through a
``hookbridge.Checkpoint``: if a try fails, the retry starts from the page the failed try was on
and skips every item already done. Each result is written to a ``hookbridge.Sink`` (JSON lines,
gzip, in parts) under ``sink_dir`` (a local path or an object store URL such as
``s3://bucket/prefix``); XCom carries the sink's reference and a few counts, and ``summarize``
streams the results back from it.

The ``fail_at`` param makes the first try fail when that item is fetched (``-1``: never), to
see the resume at work. When the work completes the checkpoint deletes itself, so clearing the
task and running it again does everything again.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task

import hookbridge

CONN_ID = "hookbridge_example_api"
PARAMS = {
    "total": 1000,
    "page_size": 50,
    "max_at_once": 10,
    "fail_at": -1,
    "sink_dir": "file:///tmp/hookbridge-example/resume",
    "every": 50,
}


@dag(
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    params=PARAMS,
    tags=["hookbridge", "example"],
)
def hookbridge_resume() -> None:
    @task(retries=1, retry_delay=pendulum.duration(seconds=0))
    async def fetch_all(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every item's details, once each across tries, into a sink; returns its reference."""
        params = params or PARAMS
        context = get_current_context()
        ti = context["ti"]
        store = context["task_state_store"]
        sink_dir = f"{params['sink_dir']}/{context['run_id'].replace(':', '_')}"
        async with (
            hookbridge.open(CONN_ID) as api,
            hookbridge.Sink(sink_dir, compression="gzip") as sink,
            hookbridge.Checkpoint(store, "fetch_all", every=int(params["every"]), sink=sink) as cp,
        ):
            resumed_at = cp.completed
            cp.state.setdefault("fetched", 0)
            strategy = hookbridge.NextLink(link="@odata.nextLink", items="value")
            query = {"size": int(params["page_size"]), "total": int(params["total"])}

            def pages(cursor: dict[str, Any] | None) -> Any:
                return api.pages("/paged/nextlink", strategy=strategy, params=query, cursor=cursor)

            async def detail(item: dict[str, Any]) -> dict[str, Any]:
                if item["id"] == params["fail_at"] and ti.try_number == 1:
                    raise RuntimeError(f"simulated outage at item {item['id']}")
                return (await api.get(f"/items/{item['id']}")).json()

            async with cp.amap(
                detail, pages=pages, max_at_once=int(params["max_at_once"])
            ) as results:
                async for value in results:
                    await sink.write(value)
                    cp.state["fetched"] += 1
        return {
            "try": ti.try_number,
            "resumed_at": resumed_at,
            "skipped": cp.skipped,
            "fetched": cp.state["fetched"],
            "sink": sink.reference(),
        }

    @task
    async def summarize(result: dict[str, Any]) -> dict[str, Any]:
        """Streams the results back from the sink (never through XCom)."""
        ids = set()
        count = 0
        async with hookbridge.read_sink(result["sink"]) as rows:
            async for row in rows:
                ids.add(row["id"])
                count += 1
        return {"rows": count, "unique": len(ids), "min": min(ids), "max": max(ids)}

    summarize(fetch_all())


example = hookbridge_resume()
