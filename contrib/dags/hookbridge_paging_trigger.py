"""Example trigger and deferrable operator on ``hookbridge.PagingTrigger`` (no DAG in this file).

``ItemPagesTrigger`` pages through an endpoint that puts its next link in the body, on the
adapter shared by every trigger of the triggerer's loop, and fires one small event. With
``sink=`` the items go to storage and the event carries only a reference; with ``checkpoint=``
the trigger resumes after a triggerer restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger

import hookbridge


class ItemPagesTrigger(hookbridge.PagingTrigger, BaseTrigger):
    """Counts the items of ``endpoint`` (and sums their ``id``), following ``@odata.nextLink``."""

    def __init__(self, endpoint: str, params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.params = params or {}

    def trigger_kwargs(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "params": self.params}

    def pages(self, api: Any, cursor: dict[str, Any] | None) -> AsyncIterable[hookbridge.Page[Any]]:
        strategy = hookbridge.NextLink(link="@odata.nextLink", items="value")
        return api.pages(self.endpoint, strategy=strategy, params=self.params, cursor=cursor)

    async def on_page(self, page: hookbridge.Page[Any]) -> None:
        self.state["items"] = self.state.get("items", 0) + len(page.items)
        self.state["id_sum"] = self.state.get("id_sum", 0) + sum(item["id"] for item in page.items)


class ItemPagesOperator(BaseOperator):
    """Defers to :class:`ItemPagesTrigger`; returns the event's payload (small) through XCom."""

    template_fields = ("sink",)

    def __init__(
        self,
        *,
        conn_id: str,
        endpoint: str,
        query: dict[str, Any] | None = None,
        max_connections: int = 10,
        sink: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.endpoint = endpoint
        self.query = query or {}  # not "params": BaseOperator reserves that name
        self.max_connections = max_connections
        self.sink = sink

    def execute(self, context: Any) -> None:
        from hookbridge.adapters.http import HttpAdapter

        # The spec names the connection and the options; the credentials stay in Airflow.
        spec = HttpAdapter(self.conn_id, max_connections=self.max_connections).spec()
        trigger = ItemPagesTrigger(self.endpoint, self.query, spec=spec, sink=self.sink)
        self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        return event
