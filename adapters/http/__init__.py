"""The HTTP adapter: one pooled aiohttp session over an Airflow HTTP connection (asyncio only)."""

from __future__ import annotations

from ._adapter import HttpAdapter, HttpPoolStatistics, ItemStream, PageStream
from ._response import Response, StreamedResponse
from ._translate import ConnectFailed

__all__ = [
    "ConnectFailed",
    "HttpAdapter",
    "HttpPoolStatistics",
    "ItemStream",
    "PageStream",
    "Response",
    "StreamedResponse",
]
