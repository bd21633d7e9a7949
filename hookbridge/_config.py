"""Per-connection defaults: the ``hookbridge`` key of an Airflow connection's extra.

Operators tune an API's limits, retries and pool sizes there without touching DAGs::

    {"hookbridge": {"rate": "100/s", "burst": 10, "max_concurrency": 50,
                    "retry": {"attempts": 5, "deadline": 60}, "pool": {"max_size": 8}}}

``"shared": {"redis_conn_id": "redis_default"}`` next to the rate shares it through Redis with every
process that opens the same connection (see ``hookbridge._shared_limits``).

Explicit arguments to the adapter always win over these defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ._errors import ConfigurationError
from ._limits import Limits
from ._options import Option
from ._retry import Retry

__all__ = ["EXTRA_KEY", "ConnectionSettings", "read_settings"]

EXTRA_KEY = "hookbridge"
_LIMIT_KEYS = ("rate", "burst", "max_concurrency", "shared")
_RETRY_KEYS = ("attempts", "backoff", "max_backoff", "max_retry_after", "deadline")

T = TypeVar("T")


class ConnectionSettings:
    """The validated content of a connection's ``hookbridge`` extra."""

    __slots__ = ("limits", "retry", "sections")

    def __init__(
        self,
        *,
        limits: Limits | None,
        retry: Retry | None,
        sections: dict[str, dict[str, Any]],
    ) -> None:
        self.limits = limits
        self.retry = retry
        #: Raw adapter option values by section ("" is the top level); parsed by the Options.
        self.sections = sections


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
        raise ConfigurationError(exc.reason, conn_id=conn_id, field=field) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"invalid value: {exc}. Fix the connection's extra.", conn_id=conn_id, field=key
        ) from exc


def read_settings(
    extra: Mapping[str, Any],
    *,
    conn_id: str,
    options: Sequence[Option[Any]] = (),
) -> ConnectionSettings:
    """Validate ``extra["hookbridge"]``; unknown keys and wrong shapes name the key to fix.

    ``options`` are the adapter's declared options: those with ``in_extra`` may appear at the
    top level or in their section. Their values are parsed later, by the options themselves.
    """
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
    in_extra = [option for option in options if option.in_extra]
    top_level = {option.name for option in in_extra if option.section is None}
    section_names = {option.section for option in in_extra if option.section is not None}
    known = {*_LIMIT_KEYS, "retry", *section_names, *top_level}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown key(s) {', '.join(map(repr, unknown))}; valid keys: "
            f"{', '.join(sorted(known))}.",
            conn_id=conn_id,
            field=f"{EXTRA_KEY}.{unknown[0]}",
        )

    limit_kwargs = {k: raw[k] for k in _LIMIT_KEYS if k in raw}
    if isinstance(limit_kwargs.get("shared"), Mapping):
        # A shared limit's key defaults to the conn_id: every process opening it shares a budget.
        limit_kwargs["shared"] = {"key": conn_id, **limit_kwargs["shared"]}
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

    sections: dict[str, dict[str, Any]] = {"": {k: raw[k] for k in top_level if k in raw}}
    for name in sorted(section_names):
        allowed = tuple(o.name for o in in_extra if o.section == name)
        sections[name] = _section(raw.get(name, {}), conn_id=conn_id, key=name, allowed=allowed)
    return ConnectionSettings(limits=limits, retry=retry, sections=sections)


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
