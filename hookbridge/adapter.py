"""The adapter SDK: everything an adapter is built from, ours and a provider author's alike.

An adapter imports only ``hookbridge`` (the public names: errors, ``Limits``, ``Retry``,
``Pool``, ``amap``, the pagination strategies) and this module. A minimal one::

    from hookbridge.adapter import Adapter, Option, positive_seconds

    class WidgetAdapter(Adapter):
        name = "widget"
        conn_types = ("widget",)
        declared_options = (Option("timeout", positive_seconds, default=30.0),)
        foreign_errors = (WidgetError, OSError)

        def __init__(self, conn_id: str, *, timeout: float | None = None, **common: Any):
            super().__init__(conn_id, timeout=timeout, **common)

        async def _open(self) -> None:
            conn = await self._connection()      # the Airflow connection; options settled
            self._client = WidgetClient(conn.host, timeout=self.options["timeout"])

        async def _close(self) -> None:
            await self._client.close()

        def _translate(self, exc: Exception, target: object) -> HookBridgeError:
            ...                                  # WidgetError -> NotFound, TransportError, ...

        async def _probe(self) -> str:
            return await self.call(self._client.version)

        async def fetch(self, widget_id: str) -> dict[str, Any]:
            return await self.call(self._client.get, widget_id, target=widget_id)

Register it under the ``hookbridge.adapters`` entry point group; run
``hookbridge.testing.contract`` against it.
"""

from __future__ import annotations

from ._adapter import Adapter, AdapterOptions, AdapterStatistics, CheckResult
from ._airflow import connection_extra, get_connection
from ._errors import excerpt, redact
from ._options import (
    Option,
    OptionSource,
    boolean,
    checked_argument,
    host_list,
    non_negative_seconds,
    one_of,
    positive_int,
    positive_seconds,
    text,
)
from ._pagination import (
    HostPolicy,
    ItemsAt,
    ItemStream,
    JsonPath,
    PageOptions,
    PageStream,
    check_path,
    is_credential_header,
    items_at,
    next_url,
    parse_link_header,
)

__all__ = [
    "Adapter",
    "AdapterOptions",
    "AdapterStatistics",
    "CheckResult",
    "HostPolicy",
    "ItemStream",
    "ItemsAt",
    "JsonPath",
    "Option",
    "OptionSource",
    "PageOptions",
    "PageStream",
    "boolean",
    "check_path",
    "checked_argument",
    "connection_extra",
    "excerpt",
    "get_connection",
    "host_list",
    "is_credential_header",
    "items_at",
    "next_url",
    "non_negative_seconds",
    "one_of",
    "parse_link_header",
    "positive_int",
    "positive_seconds",
    "redact",
    "text",
]
