"""hookbridge: uniform async adapters over Airflow provider hooks, on anyio.

Everything public is importable from here; the modules behind it are private.
"""

from __future__ import annotations

from ._adapter import Adapter, AdapterStatistics, CheckResult
from ._checkpoint import Checkpoint, CheckpointStore, FileStore, MemoryStore
from ._errors import (
    AdapterClosed,
    AdapterNotFound,
    AlreadyExists,
    BatchError,
    ConfigurationError,
    ConnectFailed,
    DeadlineExceeded,
    FailedItem,
    HookBridgeError,
    HostRefused,
    MalformedResponse,
    NotFound,
    PaginationRefused,
    PathRefused,
    PermissionDenied,
    PoolClosed,
    PoolTimeout,
    RemoteError,
    RemoteStatusError,
    ResponseTooLarge,
    Throttled,
    TransportError,
    UsageError,
)
from ._fanout import Outcome, Progress, amap
from ._limits import Limits, LimitsStatistics, Rate
from ._pagination import (
    CursorToken,
    HostPolicy,
    LinkHeader,
    NextLink,
    OffsetLimit,
    Page,
    PageNumber,
    PageRequest,
    PageResponse,
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
from ._shared_limits import SharedLimit
from ._sink import Sink, SinkReader, read_sink
from ._trigger import PagingTrigger

__all__ = [
    "Adapter",
    "AdapterClosed",
    "AdapterInfo",
    "AdapterNotFound",
    "AdapterStatistics",
    "AlreadyExists",
    "BatchError",
    "CheckResult",
    "ConfigurationError",
    "ConnectFailed",
    "CursorToken",
    "DeadlineExceeded",
    "FailedItem",
    "HookBridgeError",
    "HostPolicy",
    "HostRefused",
    "Limits",
    "LimitsStatistics",
    "LinkHeader",
    "MalformedResponse",
    "NextLink",
    "NotFound",
    "OffsetLimit",
    "Opening",
    "Outcome",
    "Page",
    "PageNumber",
    "PageRequest",
    "PageResponse",
    "PaginationRefused",
    "PathRefused",
    "PermissionDenied",
    "Pool",
    "PoolClosed",
    "PoolStatistics",
    "PoolTimeout",
    "Progress",
    "Rate",
    "RemoteError",
    "RemoteStatusError",
    "ResponseTooLarge",
    "Retry",
    "RetryEvent",
    "SharedLimit",
    "Strategy",
    "Throttled",
    "TransportError",
    "UsageError",
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
    # Airflow integration: resume after a retry, results too big for XCom
    "Checkpoint",
    "CheckpointStore",
    "FileStore",
    "MemoryStore",
    "Sink",
    "SinkReader",
    "read_sink",
    "PagingTrigger",
]

__version__ = "0.1.0"
