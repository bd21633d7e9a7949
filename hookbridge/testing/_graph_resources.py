"""The Graph emulator's resources: users, delta, photos, organization, answered from a ``Call``.

Independent of HTTP so that a request and a ``$batch`` sub-request are answered by the same code;
``_graph_server`` turns aiohttp requests and batch entries into :class:`Call` objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from ._graph_directory import (
    GraphDirectory,
    GraphError,
    ODataQuery,
    decode_token,
    encode_token,
    photo_bytes,
    user_id,
)

__all__ = ["Answer", "Call", "GraphResources", "LowerHeaders"]

_T = TypeVar("_T")


@dataclass(slots=True)
class Call:
    """A Graph request, from HTTP or from a batch: resource path without the version."""

    method: str
    resource: str
    query: list[tuple[str, str]]
    headers: Mapping[str, str]  # case-insensitive (a CIMultiDict or lower-case keys)
    body: bytes
    base: str  # "http://127.0.0.1:PORT/v1.0": links are built on it


@dataclass(slots=True)
class Answer:
    """What a resource answers: status, body (JSON value, bytes or None) and headers."""

    status: int
    body: Any = None  # JSON value, bytes, or None (no content)
    headers: dict[str, str] = field(default_factory=dict)


class LowerHeaders(dict[str, str]):
    """Sub-request headers: looked up case-insensitively, as HTTP headers are."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class GraphResources:
    """Routes a :class:`Call` to the resource it names, over one :class:`GraphDirectory`."""

    def __init__(self, directory: GraphDirectory, photo_size: int) -> None:
        self.directory = directory
        self.photo_size = photo_size

    def dispatch(self, call: Call) -> Answer:
        """Answer one request; a Graph error becomes its error answer."""
        try:
            return self._route(call)
        except GraphError as exc:
            return Answer(exc.status, exc.body(), exc.headers)

    def _route(self, call: Call) -> Answer:
        parts = [part for part in call.resource.split("/") if part]
        method = call.method
        if parts == ["users"]:
            if method == "GET":
                return self._list_users(call)
            if method == "POST":
                user = self.directory.add(_json_body(call))
                return Answer(
                    201, {"@odata.context": f"{call.base}/$metadata#users/$entity", **user}
                )
        elif parts == ["users", "delta"] and method == "GET":
            return self._delta(call)
        elif parts == ["organization"] and method == "GET":
            org = {"id": "org-0001", "displayName": "Hookbridge Test Tenant"}
            return Answer(
                200, {"@odata.context": f"{call.base}/$metadata#organization", "value": [org]}
            )
        elif len(parts) == 2 and parts[0] == "users":
            if method == "GET":
                query = ODataQuery.parse(call.query)
                _, user = self.directory.find(parts[1])
                return Answer(
                    200,
                    {
                        "@odata.context": f"{call.base}/$metadata#users/$entity",
                        **query.project(user),
                    },
                )
            if method == "PATCH":
                self.directory.update(parts[1], _json_body(call))
                return Answer(204)
            if method == "DELETE":
                self.directory.delete(parts[1])
                return Answer(204)
        elif parts[:1] == ["users"] and parts[2:] == ["photo", "$value"] and method == "GET":
            index, _ = self.directory.find(parts[1])
            return Answer(200, photo_bytes(index, self.photo_size), {"Content-Type": "image/jpeg"})
        else:
            segment = parts[0] if parts else ""
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
        raise GraphError(
            405, "Request_BadRequest", f"The method {method} is not allowed on {call.resource}."
        )

    def _list_users(self, call: Call) -> Answer:
        query = ODataQuery.parse(call.query)
        if query.deltatoken is not None:
            raise GraphError(400, "BadRequest", "$deltatoken is only valid on /users/delta.")
        eventual = call.headers.get("ConsistencyLevel", "").lower() == "eventual"
        start = 0
        advanced = query.count
        if query.skiptoken is not None:
            payload = decode_token(query.skiptoken, "skip")
            if payload.get("q") != query.shape():
                raise GraphError(
                    400,
                    "BadRequest",
                    "The $skiptoken was issued for another query: keep $filter, $select,"
                    " $top and $count as in the nextLink.",
                )
            start = int(payload["p"])
            advanced = advanced or bool(payload.get("c"))
        if advanced and not eventual:
            raise GraphError(
                400,
                "Request_BadRequest",
                "$count is an advanced query: send the header 'ConsistencyLevel:"
                " eventual' with every request, nextLink pages included.",
            )
        matches = self.directory.scan(start, query)
        page = [query.project(user) for _, user in _take(matches, query.page_size)]
        body: dict[str, Any] = {"@odata.context": f"{call.base}/$metadata#users"}
        if query.count:
            body["@odata.count"] = self.directory.count(query)
        body["value"] = page
        following = next(matches, None)
        if following is not None:
            token = encode_token(
                {"k": "skip", "p": following[0], "q": query.shape(), "c": advanced}
            )
            pairs = [(name, value) for name, value in call.query if name.lstrip("$") != "skiptoken"]
            body["@odata.nextLink"] = _link(call.base, "/users", [*pairs, ("$skiptoken", token)])
        return Answer(200, body)

    def _delta(self, call: Call) -> Answer:
        query = ODataQuery.parse(call.query)
        if query.raw_filter or query.top is not None or query.count:
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                "users/delta supports $select only; set the page size with the header"
                " 'Prefer: odata.maxpagesize=N'.",
            )
        directory = self.directory
        if query.skiptoken is not None:
            state = decode_token(query.skiptoken, "skip")
            if state.get("m") != "delta":
                raise GraphError(400, "BadRequest", "This $skiptoken is not a delta token.")
        else:
            since: int | None = None
            if query.deltatoken == "latest":
                return Answer(
                    200,
                    {
                        "value": [],
                        "@odata.deltaLink": _delta_link(
                            call.base, directory.sequence, list(query.select)
                        ),
                    },
                )
            selected = list(query.select)
            if query.deltatoken is not None:
                stored = decode_token(query.deltatoken, "delta")
                # The delta link carries the first round's $select, as Graph's does.
                since, selected = int(stored["s"]), list(stored["sel"])
            size = _max_page_size(call.headers.get("Prefer", ""))
            state = {
                "k": "skip",
                "m": "delta",
                "from": since,
                "to": directory.sequence,
                "p": 0,
                "sel": selected,
                "n": size,
            }
        select = ODataQuery(select=tuple(state["sel"]))
        position, size = int(state["p"]), int(state["n"])
        entries: list[dict[str, Any]] = []
        more = False
        if state["from"] is None:  # the first round: every user that exists
            matches = directory.scan(position, select)
            entries = [select.project(user) for _, user in _take(matches, size)]
            following = next(matches, None)
            more = following is not None
            next_position = following[0] if following is not None else 0
        else:
            changed = directory.changed_since(int(state["from"]), int(state["to"]))
            for index in changed[position : position + size]:
                user = directory.get(index)
                entries.append(
                    select.project(user)
                    if user is not None
                    else {"id": user_id(index), "@removed": {"reason": "deleted"}}
                )
            more = position + size < len(changed)
            next_position = position + size
        body: dict[str, Any] = {"@odata.context": f"{call.base}/$metadata#users", "value": entries}
        if more:
            token = encode_token({**state, "p": next_position})
            body["@odata.nextLink"] = _link(call.base, "/users/delta", [("$skiptoken", token)])
        else:
            body["@odata.deltaLink"] = _delta_link(call.base, int(state["to"]), state["sel"])
        return Answer(200, body)


def _json_body(call: Call) -> dict[str, Any]:
    try:
        body = json.loads(call.body or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return body


def _take(iterator: Iterator[_T], count: int) -> list[_T]:
    # range first: zip stops before pulling an item past the page from the iterator.
    return [entry for _, entry in zip(range(count), iterator, strict=False)]


def _link(base: str, path: str, pairs: Sequence[tuple[str, str]]) -> str:
    return f"{base}{path}?{urlencode(pairs, quote_via=quote, safe='$,')}"


def _delta_link(base: str, sequence: int, select: list[str]) -> str:
    token = encode_token({"k": "delta", "s": sequence, "sel": select})
    return _link(base, "/users/delta", [("$deltatoken", token)])


def _max_page_size(prefer: str) -> int:
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
            return max(1, min(int(value), 999))
    return 100
