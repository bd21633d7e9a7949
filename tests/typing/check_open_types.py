"""Type-checked, not run: mypy (in CI, strict) fails if the adapter's type is lost.

``hookbridge.open(conn_id, adapter=Cls)`` and ``Cls.for_connection(conn_id)`` give ``Cls`` to the
type checker; a registry name gives ``Any``; ``Adapter.map`` keeps ``amap``'s result stream.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

import hookbridge
from hookbridge.adapter import Adapter


class Widgets(Adapter):
    name = "widgets"

    async def fetch(self, n: int) -> int:
        return n


async def opened() -> None:
    async with hookbridge.open("w", adapter=Widgets) as a:
        assert_type(a, Widgets)
    async with Widgets.for_connection("w", shared=True) as b:
        assert_type(b, Widgets)
        assert_type(await b.fetch(1), int)
        async with b.map(b.fetch, range(3)) as values:
            async for value in values:
                assert_type(value, int)
        async with b.map(b.fetch, range(3), on_error="collect") as outcomes:
            async for outcome in outcomes:
                assert_type(outcome, hookbridge.Outcome[int, int])
    async with hookbridge.open("w", adapter="widgets") as c:
        assert_type(c, Any)
