"""Per-connection defaults: the ``hookbridge`` key of an Airflow connection's extra.

Operators tune an API's limits, retries and pool sizes there without touching DAGs::

    {"hookbridge": {"rate": "100/s", "burst": 10, "max_concurrency": 50,
                    "retry": {"attempts": 5, "deadline": 60}, "pool": {"max_size": 8}}}

Explicit arguments to the adapter always win over these defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._errors import ConfigurationError
from ._limits import Limits
from ._retry import Retry

__all__ = ["EXTRA_KEY", "ConnectionSettings", "read_settings"]

EXTRA_KEY = "hookbridge"
_LIMIT_KEYS = ("rate", "burst", "max_concurrency")
_RETRY_KEYS = ("attempts", "backoff", "max_backoff", "max_retry_after", "deadline")

T = TypeVar("T")


class ConnectionSettings:
    """The validated content of a connection's ``hookbridge`` extra."""

    __slots__ = ("adapter_options", "limits", "pool", "retry")

    def __init__(
        self,
        *,
        limits: Limits | None,
        retry: Retry | None,
        pool: dict[str, Any],
        adapter_options: dict[str, Any],
    ) -> None:
        self.limits = limits
        self.retry = retry
        self.pool = pool
        self.adapter_options = adapter_options


def _build(
    factory: Callable[..., T],
    kwargs: dict[str, Any],
    *,
    conn_id: str,
    key: str,
    section: str = EXTRA_KEY,
) -> T:
    try:
        return factory(**kwargs)
    except ConfigurationError as exc:
        field = f"{section}.{exc.field}" if exc.field else key
        message = str(exc).split("] ", 1)[-1] if str(exc).startswith("[") else str(exc)
        raise ConfigurationError(message, conn_id=conn_id, field=field) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"invalid value: {exc}. Fix the connection's extra.", conn_id=conn_id, field=key
        ) from exc


def read_settings(
    extra: Mapping[str, Any],
    *,
    conn_id: str,
    pool_keys: Mapping[str, type | tuple[type, ...]] = {},
    adapter_keys: Mapping[str, type | tuple[type, ...]] = {},
) -> ConnectionSettings:
    """Validate ``extra["hookbridge"]``; unknown keys and wrong types name the key to fix."""
    raw = extra.get(EXTRA_KEY, {})
    if isinstance(raw, str):
        import json

        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(
                "the extra's hookbridge value is a string that is not JSON; make it a JSON object.",
                conn_id=conn_id,
                field=EXTRA_KEY,
            ) from exc
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f'must be a JSON object such as {{"rate": "100/s"}}, got {type(raw).__name__}.',
            conn_id=conn_id,
            field=EXTRA_KEY,
        )
    known = {*_LIMIT_KEYS, "retry", "pool", *adapter_keys}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown key(s) {', '.join(map(repr, unknown))}; valid keys: "
            f"{', '.join(sorted(known))}.",
            conn_id=conn_id,
            field=f"{EXTRA_KEY}.{unknown[0]}",
        )

    limit_kwargs = {k: raw[k] for k in _LIMIT_KEYS if k in raw}
    limits = (
        _build(Limits, limit_kwargs, conn_id=conn_id, key=f"{EXTRA_KEY}.rate")
        if limit_kwargs
        else None
    )

    retry: Retry | None = None
    if "retry" in raw:
        retry_raw = _section(raw["retry"], conn_id=conn_id, key="retry", allowed=_RETRY_KEYS)
        retry = _build(
            Retry,
            retry_raw,
            conn_id=conn_id,
            key=f"{EXTRA_KEY}.retry",
            section=f"{EXTRA_KEY}.retry",
        )

    pool = _section(raw.get("pool", {}), conn_id=conn_id, key="pool", allowed=tuple(pool_keys))
    _check_types(pool, pool_keys, conn_id=conn_id, prefix=f"{EXTRA_KEY}.pool")
    adapter_options = {k: raw[k] for k in adapter_keys if k in raw}
    _check_types(adapter_options, adapter_keys, conn_id=conn_id, prefix=EXTRA_KEY)
    return ConnectionSettings(
        limits=limits, retry=retry, pool=pool, adapter_options=adapter_options
    )


def _section(value: Any, *, conn_id: str, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"must be a JSON object, got {type(value).__name__}.",
            conn_id=conn_id,
            field=f"{EXTRA_KEY}.{key}",
        )
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigurationError(
            f"unknown key(s) {', '.join(map(repr, unknown))}; valid keys: "
            f"{', '.join(allowed) or 'none'}.",
            conn_id=conn_id,
            field=f"{EXTRA_KEY}.{key}.{unknown[0]}",
        )
    return dict(value)


def _check_types(
    values: Mapping[str, Any],
    types: Mapping[str, type | tuple[type, ...]],
    *,
    conn_id: str,
    prefix: str,
) -> None:
    for key, value in values.items():
        expected = types[key]
        # bool is an int subclass: "max_size": true is a typo, not a size.
        if isinstance(value, bool) and expected is not bool and bool not in _as_tuple(expected):
            ok = False
        else:
            ok = isinstance(value, expected)
        if not ok:
            names = "/".join(t.__name__ for t in _as_tuple(expected))
            raise ConfigurationError(
                f"must be {names}, got {value!r}.", conn_id=conn_id, field=f"{prefix}.{key}"
            )


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)
