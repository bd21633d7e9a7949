"""Example trigger: counts the items of a paginated API through a shared hookbridge adapter.

It shows the two rules for triggers: open the adapter with ``shared=True`` (every trigger in the
triggerer's loop leases the same pool), and serialize the adapter's ``spec()`` and the pagination
cursor, never credentials, so a restarted trigger resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

import hookbridge


class CountItemsTrigger(BaseTrigger):
    """Pages through ``endpoint`` (next link in the body) and fires once with the item count."""

    def __init__(
        self,
        spec: dict[str, Any],
        endpoint: str,
        params: dict[str, Any] | None = None,
        cursor: dict[str, Any] | None = None,
        counted: int = 0,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.endpoint = endpoint
        self.params = params or {}
        self.cursor = cursor
        self.counted = counted

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "spec": self.spec,
                "endpoint": self.endpoint,
                "params": self.params,
                "cursor": self.cursor,
                "counted": self.counted,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async with hookbridge.open_spec(self.spec, shared=True) as api:
            async for page in api.pages(
                self.endpoint,
                strategy=hookbridge.NextLink(link="@odata.nextLink", items="value"),
                params=self.params,
                cursor=self.cursor,
            ):
                self.counted += len(page.items)
                # Kept on the trigger so that serialize() after a restart resumes from here.
                self.cursor = page.cursor
        yield TriggerEvent({"count": self.counted, "cursor": self.cursor})
