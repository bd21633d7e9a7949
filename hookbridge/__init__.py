"""hookbridge: uniform async adapters over Airflow provider hooks, on anyio.

Everything public is importable from here; the modules behind it are private.
"""

from __future__ import annotations

from ._adapter import Adapter, AdapterStatistics
from ._errors import (
    AdapterClosed,
    AdapterNotFound,
    BatchError,
    ConfigurationError,
    DeadlineExceeded,
    FailedItem,
    HookBridgeError,
    MalformedResponse,
    PaginationRefused,
    PathRefused,
    PoolClosed,
    PoolTimeout,
    RemoteStatusError,
    ResponseTooLarge,
    Throttled,
    TransportError,
)
from ._fanout import Outcome, Progress, amap
from ._limits import Limits, LimitsStatistics, Rate
from ._pagination import (
    CursorToken,
    LinkHeader,
    NextLink,
    OffsetLimit,
    Page,
    PageNumber,
    PageRequest,
    PageResponse,
    PaginationFunction,
    Strategy,
    iter_items,
    paginate,
    prefetch,
)
from ._pool import Pool, PoolStatistics
from ._registry import (
    AdapterInfo,
    Opening,
    aclose_shared,
    get_adapter,
    open,
    open_spec,
    register,
    registered_adapters,
)
from ._retry import Retry, RetryEvent, default_retry_on, parse_retry_after

__all__ = [
    "Adapter",
    "AdapterClosed",
    "AdapterInfo",
    "AdapterNotFound",
    "AdapterStatistics",
    "BatchError",
    "ConfigurationError",
    "CursorToken",
    "DeadlineExceeded",
    "FailedItem",
    "HookBridgeError",
    "Limits",
    "LimitsStatistics",
    "LinkHeader",
    "MalformedResponse",
    "NextLink",
    "OffsetLimit",
    "Opening",
    "Outcome",
    "Page",
    "PageNumber",
    "PageRequest",
    "PageResponse",
    "PaginationFunction",
    "PaginationRefused",
    "PathRefused",
    "Pool",
    "PoolClosed",
    "PoolStatistics",
    "PoolTimeout",
    "Progress",
    "Rate",
    "RemoteStatusError",
    "ResponseTooLarge",
    "Retry",
    "RetryEvent",
    "Strategy",
    "Throttled",
    "TransportError",
    "aclose_shared",
    "amap",
    "default_retry_on",
    "get_adapter",
    "iter_items",
    "open",
    "open_spec",
    "paginate",
    "parse_retry_after",
    "prefetch",
    "register",
    "registered_adapters",
]

__version__ = "0.1.0"
