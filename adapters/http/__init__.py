"""The HTTP adapter: one pooled aiohttp session over an Airflow HTTP connection (asyncio only)."""

from __future__ import annotations

from ._adapter import HttpAdapter, HttpPoolStatistics
from ._pagination_function import PaginationFunction
from ._response import Response, StreamedResponse

__all__ = [
    "HttpAdapter",
    "HttpPoolStatistics",
    "PaginationFunction",
    "Response",
    "StreamedResponse",
]
