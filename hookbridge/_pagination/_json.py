"""JSON paths into page bodies and the RFC 8288 Link header parser.

Written here rather than taken from a library: the paths need exactly one rule that JSONPath
libraries lack (a key that exists verbatim, such as ``@odata.nextLink``, wins over splitting on
dots), and every parser of remote data must fail with ``MalformedResponse`` only, which is
simplest to guarantee (and fuzz) in a few lines.
"""

from __future__ import annotations

from collections.abc import (
    Sequence,
)
from typing import Any

from .._errors import (
    ConfigurationError,
)
from ._request import JsonPath

__all__ = ["check_path", "parse_link_header"]

# --------------------------------------------------------------------------------------------
# JSON paths and Link headers


class _Missing:
    def __repr__(self) -> str:
        return "_MISSING"


#: A path that leads nowhere (absent key or null on the way).
_MISSING: Any = _Missing()
# A path that runs into a value that is not an object (a list, a string, a number).
_WRONG_SHAPE: Any = _Missing()


def check_path(path: JsonPath | None, name: str, *, optional: bool) -> JsonPath | None:
    """Validate a JSON path option (``"data.items"``, ``["@odata.nextLink"]``) or None."""
    if path is None:
        if optional:
            return None
        raise ConfigurationError(f"{name} needs a JSON path", field=name)
    if isinstance(path, str):
        if not path:
            hint = " (use None for the whole body)" if optional else ""
            raise ConfigurationError(f"{name} must not be empty{hint}", field=name)
        return path
    if isinstance(path, Sequence) and path and all(isinstance(key, str) for key in path):
        return tuple(path)
    raise ConfigurationError(
        f"{name} must be a dotted path like 'data.items' or a list of keys, got {path!r}",
        field=name,
    )


def _lookup(body: Any, path: JsonPath) -> Any:
    """Return the value at ``path`` in ``body``, or ``_MISSING`` when a key is absent or null.

    A dotted string prefers the longest key that exists verbatim: ``"@odata.nextLink"`` finds
    that key rather than ``body["@odata"]["nextLink"]``. A sequence is the exact keys.
    Raises ``TypeError`` when the path runs into something that is not an object.
    """
    keys = path.split(".") if isinstance(path, str) else list(path)
    joined = isinstance(path, str)
    found = _walk(body, keys, 0, joined)
    if found is _WRONG_SHAPE:
        raise TypeError(f"the body has no object where {_show_path(path)} leads")
    return found


def _walk(node: Any, keys: list[str], start: int, joined: bool) -> Any:
    if start == len(keys):
        return node
    if node is None:
        return _MISSING
    if not isinstance(node, dict):
        return _WRONG_SHAPE
    result = _MISSING
    ends = range(len(keys), start, -1) if joined else (start + 1,)
    for end in ends:
        key = ".".join(keys[start:end])
        if key in node:
            found = _walk(node[key], keys, end, joined)
            if found is not _MISSING and found is not _WRONG_SHAPE:
                return found
            if found is _WRONG_SHAPE:
                result = _WRONG_SHAPE
    return result


def _show_path(path: JsonPath | None) -> str:
    if path is None:
        return "the body"
    return repr(path) if isinstance(path, str) else repr(list(path))


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OWS = " \t"


def parse_link_header(value: str) -> list[tuple[str, dict[str, str]]]:
    """Parse an RFC 8288 ``Link`` header into ``(target, params)`` pairs; ValueError if broken.

    Parameter names are lower-cased; the first occurrence of a parameter wins (RFC 8288 3.3).
    """
    links: list[tuple[str, dict[str, str]]] = []
    pos, end = 0, len(value)

    def skip(chars: str) -> None:
        nonlocal pos
        while pos < end and value[pos] in chars:
            pos += 1

    while True:
        skip(_OWS + ",")
        if pos >= end:
            return links
        if value[pos] != "<":
            raise ValueError(f"expected '<' at {pos}")
        close = value.find(">", pos + 1)
        if close < 0:
            raise ValueError("unterminated '<'")
        target = value[pos + 1 : close].strip(_OWS)
        pos = close + 1
        params: dict[str, str] = {}
        while True:
            skip(_OWS)
            if pos >= end or value[pos] == ",":
                break
            if value[pos] != ";":
                raise ValueError(f"expected ';' or ',' at {pos}")
            pos += 1
            skip(_OWS)
            start = pos
            while pos < end and value[pos] in _TCHAR:
                pos += 1
            name = value[start:pos].lower()
            if not name:
                if pos >= end or value[pos] in ";,":
                    continue  # an empty parameter ("; ;"): tolerated
                raise ValueError(f"expected a parameter name at {pos}")
            skip(_OWS)
            param = ""
            if pos < end and value[pos] == "=":
                pos += 1
                skip(_OWS)
                if pos < end and value[pos] == '"':
                    param, pos = _quoted_string(value, pos)
                else:
                    start = pos
                    while pos < end and value[pos] not in _OWS + ";,":
                        pos += 1
                    param = value[start:pos]
            params.setdefault(name, param)
        links.append((target, params))


def _quoted_string(value: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    pos += 1
    while pos < len(value):
        char = value[pos]
        if char == "\\" and pos + 1 < len(value):
            out.append(value[pos + 1])
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    raise ValueError("unterminated quoted string")
