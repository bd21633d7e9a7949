"""The Graph emulator's data: a directory of users, OData query options, skip and delta tokens.

Kept apart from the HTTP side (``_graph_server``) so that the rules a Graph client must follow are
readable in one place. Users ``0 .. users - 1`` exist from the start and are computed from their
index (a directory of 200,000 users costs nothing until it is changed); changes are kept as
overrides and numbered, which is what delta queries report.

Rules the emulator enforces, as Microsoft Graph does:

- ``$top`` is 1..999; ``$select`` names known properties; ``$filter`` accepts ``prop eq 'text'``
  (or ``true``/``false``), at most two joined by ``and``; a query option given twice is refused.
- ``$count=true`` is an advanced query: it needs the ``ConsistencyLevel: eventual`` header, on every
  page (the skip token remembers it), and answers ``@odata.count``.
- A ``$skiptoken`` is bound to the ``$filter``, ``$select`` and ``$top`` it was issued for: a client
  that changes or drops them on a later page gets a 400, not a silently different collection.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEPARTMENTS",
    "MAX_TOP",
    "USER_PROPERTIES",
    "GraphDirectory",
    "GraphError",
    "ODataQuery",
    "decode_token",
    "encode_token",
    "photo_bytes",
    "user_id",
]

DEPARTMENTS = ("Engineering", "Sales", "Finance", "Support", "Marketing")
_TITLES = ("Engineer", "Manager", "Analyst")
USER_PROPERTIES = frozenset(
    {"id", "displayName", "mail", "department", "jobTitle", "accountEnabled", "userPrincipalName"}
)
_WRITABLE = USER_PROPERTIES - {"id"}
MAX_TOP = 999
DEFAULT_PAGE_SIZE = 100
_ID = re.compile(r"u-(\d{6,})")
_CLAUSE = re.compile(r"\s*(\w+)\s+eq\s+('(?:[^']|'')*'|true|false)\s*", re.IGNORECASE)


class GraphError(Exception):
    """An answer in Graph's error shape: ``{"error": {"code", "message"}}`` with an HTTP status."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def _bad(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


def user_id(index: int) -> str:
    """The id of the user at ``index`` (ids sort in index order)."""
    return f"u-{index:06d}"


def photo_bytes(index: int, size: int) -> bytes:
    """The deterministic content of ``/users/{id}/photo/$value`` for the user at ``index``."""
    seed = f"photo-{index}:".encode()
    return (seed * (size // len(seed) + 1))[:size]


def encode_token(payload: Mapping[str, Any]) -> str:
    """An opaque URL-safe token (skip or delta) holding ``payload``."""
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, kind: str) -> dict[str, Any]:
    """The payload of a token of ``kind`` this emulator issued, or a 400 naming the token."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (ValueError, binascii.Error):
        payload = None
    if not isinstance(payload, dict) or payload.get("k") != kind:
        raise _bad(f"The {kind} token {token[:40]!r} is not one this service issued.")
    return payload


@dataclass(frozen=True, slots=True)
class ODataQuery:
    """The OData query options of one request, validated."""

    top: int | None = None
    select: tuple[str, ...] = ()
    filter: tuple[tuple[str, Any], ...] = ()
    count: bool = False
    skiptoken: str | None = None
    deltatoken: str | None = None
    raw_filter: str = ""

    @classmethod
    def parse(cls, pairs: Sequence[tuple[str, str]]) -> ODataQuery:
        """Parse ``(name, value)`` pairs as received; names may omit the ``$`` (Graph allows it)."""
        seen: dict[str, str] = {}
        for name, value in pairs:
            key = name if name.startswith("$") else f"${name}"
            if key in seen:
                raise _bad(
                    f"Query option '{key}' was specified more than once, but it must be"
                    " specified at most once."
                )
            seen[key] = value
        top = None
        if "$top" in seen:
            try:
                top = int(seen["$top"])
            except ValueError:
                top = 0
            if not 1 <= top <= MAX_TOP:
                raise _bad(
                    f"Invalid page size specified: '{seen['$top']}'. Must be between 1 and"
                    f" {MAX_TOP} inclusive.",
                    "Request_BadRequest",
                )
        select = tuple(part.strip() for part in seen.get("$select", "").split(",") if part.strip())
        for name in select:
            if name not in USER_PROPERTIES:
                raise _bad(
                    f"Could not find a property named '{name}' on type 'microsoft.graph.user'.",
                    "Request_BadRequest",
                )
        raw_filter = seen.get("$filter", "")
        count_text = seen.get("$count", "false").lower()
        if count_text not in ("true", "false"):
            raise _bad(f"$count must be true or false, got {seen['$count']!r}.")
        return cls(
            top=top,
            select=select,
            filter=_parse_filter(raw_filter),
            count=count_text == "true",
            skiptoken=seen.get("$skiptoken"),
            deltatoken=seen.get("$deltatoken"),
            raw_filter=raw_filter,
        )

    @property
    def page_size(self) -> int:
        return self.top or DEFAULT_PAGE_SIZE

    def shape(self) -> str:
        """What a skip token is bound to: the options that decide the collection and its pages."""
        return f"{self.raw_filter}|{','.join(self.select)}|{self.top}|{self.count}"

    def matches(self, user: Mapping[str, Any]) -> bool:
        return all(user.get(name) == value for name, value in self.filter)

    def project(self, user: Mapping[str, Any]) -> dict[str, Any]:
        if not self.select:
            return dict(user)
        # Graph always returns the id of a selected entity.
        return {name: user[name] for name in ("id", *self.select) if name in user}


def _parse_filter(text: str) -> tuple[tuple[str, Any], ...]:
    if not text.strip():
        return ()
    clauses = re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE)
    if len(clauses) > 2:
        raise _bad("This emulator supports at most two 'eq' clauses joined by 'and'.")
    parsed = []
    for clause in clauses:
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise _bad(
                f"Invalid filter clause: {clause!r} (supported: property eq 'value').",
                "Request_UnsupportedQuery",
            )
        name, literal = match.groups()
        if name not in USER_PROPERTIES:
            raise _bad(
                f"Could not find a property named '{name}' on type 'microsoft.graph.user'.",
                "Request_BadRequest",
            )
        value: Any
        if literal.lower() in ("true", "false"):
            value = literal.lower() == "true"
        else:
            value = literal[1:-1].replace("''", "'")
        parsed.append((name, value))
    return tuple(parsed)


def _base_user(index: int) -> dict[str, Any]:
    return {
        "id": user_id(index),
        "displayName": f"User {index}",
        "mail": f"user{index}@hookbridge.test",
        "userPrincipalName": f"user{index}@hookbridge.test",
        "department": DEPARTMENTS[index % len(DEPARTMENTS)],
        "jobTitle": _TITLES[index % len(_TITLES)],
        "accountEnabled": index % 7 != 0,
    }


@dataclass(slots=True)
class GraphDirectory:
    """Users computed from their index, plus numbered changes (the source of delta answers)."""

    users: int
    _count: int = 0
    _overrides: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    _changed_at: dict[int, int] = field(default_factory=dict)
    sequence: int = 0
    """Number of the latest change (0: none yet)."""

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError(f"users must be >= 0, got {self.users}")
        self._count = self.users

    @property
    def size(self) -> int:
        """Indices in use, deleted users included (the upper bound of a scan)."""
        return self._count

    def index_of(self, identifier: str) -> int | None:
        match = _ID.fullmatch(identifier)
        if match is None:
            return None
        index = int(match.group(1))
        return index if index < self._count else None

    def get(self, index: int) -> dict[str, Any] | None:
        """The user at ``index``, or None when deleted or out of range."""
        if index in self._overrides:
            return self._overrides[index]
        return _base_user(index) if 0 <= index < self.users else None

    def find(self, identifier: str) -> tuple[int, dict[str, Any]]:
        index = self.index_of(identifier)
        user = None if index is None else self.get(index)
        if index is None or user is None:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{identifier}' does not exist or one of its queried"
                " reference-property objects are not present.",
            )
        return index, user

    def scan(self, start: int, query: ODataQuery) -> Iterator[tuple[int, dict[str, Any]]]:
        """Existing users from index ``start`` on that match the query's filter."""
        for index in range(start, self._count):
            user = self.get(index)
            if user is not None and query.matches(user):
                yield index, user

    def count(self, query: ODataQuery) -> int:
        return sum(1 for _ in self.scan(0, query))

    # -- changes ---------------------------------------------------------------------------------

    def _changed(self, index: int, user: dict[str, Any] | None) -> None:
        self.sequence += 1
        self._overrides[index] = user
        self._changed_at[index] = self.sequence

    def add(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Create a user (fields override the generated ones); returns it."""
        _check_writable(fields)
        index = self._count
        self._count += 1
        user = {**_base_user(index), **fields}
        self._changed(index, user)
        return user

    def update(self, identifier: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        _check_writable(fields)
        index, user = self.find(identifier)
        updated = {**user, **fields}
        self._changed(index, updated)
        return updated

    def delete(self, identifier: str) -> None:
        index, _ = self.find(identifier)
        self._changed(index, None)

    def changed_since(self, sequence: int, until: int) -> list[int]:
        """Indices changed after change ``sequence`` and last changed no later than ``until``."""
        return sorted(i for i, at in self._changed_at.items() if sequence < at <= until)


def _check_writable(fields: Mapping[str, Any]) -> None:
    for name in fields:
        if name not in _WRITABLE:
            raise _bad(
                f"Property '{name}' does not exist or cannot be written on type"
                " 'microsoft.graph.user'.",
                "Request_BadRequest",
            )
