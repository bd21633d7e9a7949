"""Example DAG: a deferrable operator whose trigger pages through an API on a shared adapter.

``ItemPagesOperator`` (in ``hookbridge_paging_trigger.py``) defers to ``ItemPagesTrigger``, a
``hookbridge.PagingTrigger``: every trigger on the triggerer that uses the same connection and
options shares one adapter (one connection pool), the trigger serializes the adapter's spec and
its cursor (never credentials), and its event is small. ``count_items`` returns counts;
``export_items`` also writes every item to a sink and returns only the sink's reference.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag
from hookbridge_paging_trigger import ItemPagesOperator

CONN_ID = "hookbridge_example_api"


@dag(
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    params={"sink_dir": "file:///tmp/hookbridge-example/deferred"},
    tags=["hookbridge", "example"],
)
def hookbridge_deferred() -> None:
    ItemPagesOperator(
        task_id="count_items",
        conn_id=CONN_ID,
        endpoint="/paged/nextlink",
        query={"size": 25, "total": 200},
    )
    ItemPagesOperator(
        task_id="export_items",
        conn_id=CONN_ID,
        endpoint="/paged/nextlink",
        query={"size": 100, "total": 1000},
        sink="{{ params.sink_dir }}/{{ run_id | replace(':', '_') }}",
    )


example = hookbridge_deferred()
