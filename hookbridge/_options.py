"""Adapter options declared as data: parsed once, merged argument > connection extra > default.

An adapter lists its options as :class:`Option` objects. The base class validates explicit
arguments when the adapter is created, reads the connection extra's ``hookbridge`` key when it
opens, and renders the explicit ones into ``spec()``; no adapter writes that plumbing again.
Parsers raise ``ValueError``/``TypeError`` with what is wrong ("must be ..., got ..."); the base
adds the conn_id and the field (``max_connections`` or ``hookbridge.pool.max_connections``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from ._checks import is_count, is_number
from ._errors import ConfigurationError, UsageError

__all__ = [
    "Option",
    "checked_argument",
    "OptionSource",
    "boolean",
    "host_list",
    "non_negative_seconds",
    "one_of",
    "parse_explicit",
    "positive_int",
    "positive_seconds",
    "resolve",
    "text",
]

T = TypeVar("T")

#: Where a resolved option's value came from.
OptionSource = Literal["argument", "extra", "default"]


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Option(Generic[T]):
    """One adapter option: its name, how to read it, its default and where it may come from.

    - ``parse`` turns a given value (an argument, a JSON value from the extra, or what
      ``to_spec`` wrote) into the option's value, or raises ``ValueError``/``TypeError``.
    - ``section``: None for the top level of the extra's ``hookbridge`` object, or the name of a
      sub-object (``"pool"``) it lives in.
    - ``in_extra``: False for options that only code may set.
    - ``to_spec``: the JSON-safe form written into ``spec()`` (the value itself by default);
      ``parse`` must accept it back.
    """

    name: str
    parse: Callable[[Any], T]
    default: T | None = None
    section: str | None = None
    in_extra: bool = True
    to_spec: Callable[[T], Any] = _identity
    doc: str = ""

    def field(self, source: OptionSource) -> str:
        """The name to show in an error about this option's value from ``source``."""
        if source != "extra":
            return self.name
        path = f"{self.section}.{self.name}" if self.section else self.name
        return f"hookbridge.{path}"

    def read(self, value: Any, *, conn_id: str | None, source: OptionSource) -> T:
        """``parse(value)``, with a ConfigurationError naming the conn_id and field on failure."""
        try:
            return self.parse(value)
        except ConfigurationError:
            raise
        except (TypeError, ValueError) as exc:
            where = "the connection extra" if source == "extra" else "the argument"
            raise ConfigurationError(
                f"{exc} Fix {where}.", conn_id=conn_id, field=self.field(source)
            ) from None


def parse_explicit(
    declared: Sequence[Option[Any]], given: Mapping[str, Any], *, conn_id: str | None
) -> dict[str, Any]:
    """Validate the options passed as arguments (None means "not given")."""
    by_name = {option.name: option for option in declared}
    parsed: dict[str, Any] = {}
    for name, value in given.items():
        option = by_name.get(name)
        if option is None:
            raise ConfigurationError(
                f"unknown option {name!r}; this adapter takes: "
                f"{', '.join(sorted(by_name)) or 'none'} (and limits=, retry=).",
                conn_id=conn_id,
                field=name,
            )
        if value is not None:
            parsed[name] = option.read(value, conn_id=conn_id, source="argument")
    return parsed


def resolve(
    declared: Sequence[Option[Any]],
    explicit: Mapping[str, Any],
    extra: Mapping[str, Mapping[str, Any]],
    *,
    conn_id: str,
) -> tuple[dict[str, Any], dict[str, OptionSource]]:
    """Merge argument > extra > default; ``extra`` maps a section (None: top level) to values."""
    values: dict[str, Any] = {}
    sources: dict[str, OptionSource] = {}
    for option in declared:
        section = extra.get(option.section or "", {})
        if option.name in explicit:
            values[option.name], sources[option.name] = explicit[option.name], "argument"
        elif option.in_extra and option.name in section:
            values[option.name] = option.read(section[option.name], conn_id=conn_id, source="extra")
            sources[option.name] = "extra"
        else:
            values[option.name], sources[option.name] = option.default, "default"
    return values, sources


def checked_argument(parse: Callable[[Any], T], value: Any, name: str) -> T:
    """``parse(value)`` for a per-call argument; a bad one is a :class:`UsageError` naming it."""
    try:
        return parse(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc), argument=name) from None


# -- parsers -------------------------------------------------------------------------------


def positive_int(value: Any) -> int:
    """A whole number >= 1 (``true`` is not a number here)."""
    if not is_count(value):
        raise ValueError(f"must be a whole number >= 1, got {value!r}.")
    return value


def positive_seconds(value: Any) -> float:
    """A finite number of seconds > 0."""
    if not is_number(value) or not 0 < value < math.inf:
        raise ValueError(f"must be a finite number of seconds > 0, got {value!r}.")
    return float(value)


def non_negative_seconds(value: Any) -> float:
    """A finite number of seconds >= 0."""
    if not is_number(value) or not 0 <= value < math.inf:
        raise ValueError(f"must be a finite number of seconds >= 0, got {value!r}.")
    return float(value)


def boolean(value: Any) -> bool:
    """true or false (JSON booleans; strings such as "yes" are refused, not guessed)."""
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}.")
    return value


def text(value: Any) -> str:
    """Non-empty text."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be non-empty text, got {value!r}.")
    return value


def host_list(value: Any) -> tuple[str, ...]:
    """Host names (``api.example.com``) or ``host:port`` entries, as a list."""
    if isinstance(value, str) or not isinstance(value, Collection):
        raise ValueError(
            f'must be a list of host names or host:port entries such as ["api.example.com"], '
            f"got {value!r}."
        )
    hosts = tuple(value)
    if not all(isinstance(host, str) and host and "/" not in host for host in hosts):
        raise ValueError(
            f"must hold host names or host:port entries (no scheme, no path), got {value!r}."
        )
    return hosts


def one_of(*choices: str) -> Callable[[Any], str]:
    """A parser accepting exactly one of ``choices``."""

    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(repr, choices))}, got {value!r}.")
        return str(value)

    parse.__name__ = f"one_of({', '.join(choices)})"
    return parse
