"""The Graph emulator's fault storm: seeded drops, 500s, 503s and 429s on real Graph resources.

A mixin of :class:`~hookbridge.testing._graph_server.GraphTestServer`. Unlike the HTTP server's
``/storm/{id}`` endpoint, the storm here strikes the emulator's own resources, so the adapter's
real code path (kiota, the token, Graph's error shapes) is what gets exercised:

- a read of item ``i`` is ``GET /users/u-{i:06d}`` (the user at index ``i``),
- a write of item ``i`` is ``POST /users`` creating a user whose ``userPrincipalName`` is
  ``storm-{i}@...`` (:func:`storm_user`); a write the storm lets through really creates the user
  (``applied`` counts it), so the directory shows what was applied.

Every other request (``$batch``, ``/organization``, paging, the token endpoint) is left alone.
The fates of :class:`~hookbridge.testing._storm.Storm`, acted out as Graph does:

- ``500``: ``generalException`` (Graph's "something went wrong on our side");
- ``503``: ``serviceNotAvailable`` **with** ``Retry-After``: Graph throttles with 503 as well as
  429 (its throttling guidance tells clients to honour Retry-After on both);
- ``429``: ``TooManyRequests`` with ``Retry-After``;
- ``drop-before``: the connection closes with no answer (the write is not applied);
- ``drop-during``: the write is applied, half the answer is written, the connection closes;
- ``drop-after``: the write is applied, the whole answer is written, the connection closes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ._app_server import answer_then_drop, drop_connection
from ._graph_resources import Answer, Call
from ._storm import StormHost

__all__ = ["GraphStorm", "storm_item", "storm_user"]

_USER = re.compile(r"/users/u-(\d{6,})")
_STORM_UPN = re.compile(r"storm-(\d+)@")

_ERRORS = {
    500: ("generalException", "An unexpected error occurred on the server."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable."),
    429: ("TooManyRequests", "Too many requests. Retry after a while."),
}


def storm_user(item: int) -> dict[str, Any]:
    """The body of the write of ``item``: a new user the storm recognises by its name."""
    return {
        "displayName": f"Storm {item}",
        "mail": f"storm-{item}@hookbridge.test",
        "userPrincipalName": f"storm-{item}@hookbridge.test",
    }


def storm_item(call: Call) -> int | None:
    """The item a request addresses (a storm read or write), or None for any other request."""
    if call.method == "GET":
        match = _USER.fullmatch(call.resource)
        return None if match is None else int(match.group(1))
    if call.method == "POST" and call.resource == "/users":
        try:
            body = json.loads(call.body or b"null")
        except ValueError:
            return None
        upn = body.get("userPrincipalName") if isinstance(body, dict) else None
        match = _STORM_UPN.match(upn) if isinstance(upn, str) else None
        return None if match is None else int(match.group(1))
    return None


class GraphStorm(StormHost):
    """The storm state of the emulator and how one stormed request is answered."""

    def stormed(self, call: Call) -> bool:
        """Whether the storm decides the answer of ``call``."""
        return self.storm_counts is not None and storm_item(call) is not None

    async def storm_answer(
        self,
        request: web.Request,
        call: Call,
        dispatch: Callable[[Call], Answer],
        respond: Callable[[Answer], web.Response],
    ) -> web.StreamResponse:
        """Answer ``call`` as its fate says; ``dispatch`` applies it, ``respond`` renders it."""
        storm, item = self.storm_counts, storm_item(call)
        assert storm is not None, "call stormed() first"
        assert item is not None, "call stormed() first"
        method = call.method
        fate, _ = storm.next_fate(method, item)
        if fate == "drop-before":
            return await drop_connection(request)
        if fate in ("500", "503", "429"):
            status = int(fate)
            code, message = _ERRORS[status]
            headers = {} if status == 500 else {"Retry-After": storm.retry_after}
            return respond(Answer(status, {"error": {"code": code, "message": message}}, headers))
        answer = dispatch(call)
        if method != "GET" and 200 <= answer.status < 300:
            storm.applied[item] += 1
        if fate == "ok":
            if answer.status < 300:
                storm.answered[method, item] += 1
            return respond(answer)
        return await answer_then_drop(request, storm, (method, item), respond(answer), fate)
