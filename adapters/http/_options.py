"""The HTTP adapter's options, declared once: what each accepts, its default, its spec form."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import aiohttp

from hookbridge.adapter import (
    AdapterOptions,
    Option,
    PageOptions,
    boolean,
    host_list,
    non_negative_seconds,
    positive_int,
)

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "HTTP_OPTIONS",
    "HttpOptions",
    "HttpPageOptions",
    "TimeoutOption",
    "client_timeout",
    "stream_timeout",
    "timeout_spec",
    "truthy",
]

DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BODY_SIZE = 32 * 1024 * 1024
_TIMEOUT_FIELDS = ("total", "connect", "sock_connect", "sock_read")
_TRUE = ("true", "1", "yes", "on")

TimeoutOption = float | int | Mapping[str, float | None] | aiohttp.ClientTimeout


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(
            f"must be a number of seconds > 0 or an object with {', '.join(_TIMEOUT_FIELDS)}, "
            f"got {value!r}."
        )
    return float(value)


def client_timeout(value: Any) -> aiohttp.ClientTimeout:
    """A timeout in seconds (the total), a dict of aiohttp's fields, or a ClientTimeout."""
    if isinstance(value, aiohttp.ClientTimeout):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(_TIMEOUT_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown timeout field(s) {unknown}; valid: {', '.join(_TIMEOUT_FIELDS)}."
            )
        parts: dict[str, Any] = {
            key: None if value[key] is None else _seconds(value[key]) for key in value
        }
        return aiohttp.ClientTimeout(**parts)
    return aiohttp.ClientTimeout(total=_seconds(value))


def timeout_spec(timeout: aiohttp.ClientTimeout) -> float | dict[str, float | None]:
    """A timeout's JSON form: the total alone when only it is set, else the fields."""
    parts = {key: getattr(timeout, key) for key in _TIMEOUT_FIELDS}
    if all(parts[key] is None for key in _TIMEOUT_FIELDS[1:]) and parts["total"] is not None:
        return float(parts["total"])
    return {key: value for key, value in parts.items() if value is not None}


def stream_timeout(timeout: aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
    """A download may take longer than any total: streams time out only when data stops."""
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeout.connect,
        sock_connect=timeout.sock_connect,
        sock_read=timeout.sock_read or timeout.total,
    )


def truthy(value: Any) -> bool:
    """An extra's boolean as HttpHook users write it: true/false, or "true"/"False" strings."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


def _hosts_spec(hosts: tuple[str, ...]) -> list[str]:
    return list(hosts)


HTTP_OPTIONS: tuple[Option[Any], ...] = (
    Option(
        "max_connections",
        positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        section="pool",
        doc="connections the session keeps open at most",
    ),
    Option("max_per_host", positive_int, section="pool", doc="connections per host (no cap)"),
    Option(
        "keepalive",
        non_negative_seconds,
        section="pool",
        doc="seconds an idle connection is kept; 0 closes each after its response",
    ),
    Option(
        "timeout",
        client_timeout,
        to_spec=timeout_spec,
        doc="seconds for a whole request (30), or {total, connect, sock_connect, sock_read}",
    ),
    Option(
        "max_body_size",
        positive_int,
        default=DEFAULT_MAX_BODY_SIZE,
        doc="bytes a buffered response may have",
    ),
    Option("raise_for_status", boolean, doc="a status >= 400 raises (True)"),
    Option(
        "retry_non_idempotent",
        boolean,
        default=False,
        doc="retry POST/PATCH like GET, not only when nothing was sent",
    ),
    Option(
        "allowed_hosts",
        host_list,
        default=(),
        to_spec=_hosts_spec,
        doc="hosts besides the connection's that URLs, redirects and next links may reach",
    ),
)


class HttpOptions(AdapterOptions, total=False):
    """The keyword arguments of :class:`~hookbridge.adapters.http.HttpAdapter` (see its doc)."""

    max_connections: int | None
    max_per_host: int | None
    keepalive: float | None
    timeout: TimeoutOption | None
    max_body_size: int | None
    raise_for_status: bool | None
    retry_non_idempotent: bool | None
    allowed_hosts: Collection[str] | None


class HttpPageOptions(PageOptions, total=False):
    """``pages()``/``items()`` keywords: the first request's, then the SDK's page options."""

    method: str
    params: Mapping[str, Any] | None
    headers: Mapping[str, str] | None
    json: Any
    data: Any
