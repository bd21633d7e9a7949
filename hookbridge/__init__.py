"""hookbridge: uniform async adapters over Airflow provider hooks, on anyio."""

from __future__ import annotations

from ._errors import (
    AdapterClosed,
    AdapterNotFound,
    BatchError,
    ConfigurationError,
    DeadlineExceeded,
    FailedItem,
    HookBridgeError,
    PaginationRefused,
    PathRefused,
    PoolClosed,
    PoolTimeout,
    RemoteStatusError,
    ResponseTooLarge,
    Throttled,
    TransportError,
)

__all__ = [
    "AdapterClosed",
    "AdapterNotFound",
    "BatchError",
    "ConfigurationError",
    "DeadlineExceeded",
    "FailedItem",
    "HookBridgeError",
    "PaginationRefused",
    "PathRefused",
    "PoolClosed",
    "PoolTimeout",
    "RemoteStatusError",
    "ResponseTooLarge",
    "Throttled",
    "TransportError",
]

__version__ = "0.1.0"
