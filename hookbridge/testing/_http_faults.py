"""The HTTP test server's fault schedule: throttled answers and dropped connections on demand.

A mixin of :class:`~hookbridge.testing._http_server.HTTPTestServer`; the server's middleware
asks ``_take_fault`` before each request is handled.
"""

from __future__ import annotations

import email.utils
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from aiohttp import hdrs, web

from ._app_server import answer_then_drop, drop_connection
from ._storm import Storm, StormHost

__all__ = ["Fault", "FaultSchedule", "retry_after_date", "throttled_response"]


def retry_after_date(seconds: float) -> str:
    """An HTTP-date ``seconds`` from now, for a ``Retry-After`` header.

    HTTP dates have whole seconds: the time is rounded up, so the date is never earlier than
    ``now + seconds`` (a client waiting until it never comes back too early).
    """
    target = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    if target.microsecond:
        target = target.replace(microsecond=0) + timedelta(seconds=1)
    return email.utils.format_datetime(target, usegmt=True)


@dataclass(slots=True)
class Fault:
    """One scheduled fault: a throttled answer or a dropped connection, for `remaining` requests."""

    kind: Literal["throttle", "drop"]
    remaining: int
    path_prefix: str | None
    method: str | None
    status: int = 0
    retry_after: str | None = None

    def matches(self, request: web.BaseRequest) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        return self.path_prefix is None or request.path.startswith(self.path_prefix)


class FaultSchedule(StormHost):
    """Throttles and drops scheduled by a test, served in the order they were scheduled."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        # No storm yet: /storm/{id} answers every request (a storm of no faults).
        self.storm_counts = Storm()

    async def _storm_endpoint(self, request: web.Request) -> web.StreamResponse:
        """``/storm/{id}``: item ``id`` as ``{"id", "attempt"}``, or the fault the storm picks."""
        try:
            item = int(request.match_info["id"])
        except ValueError:
            raise web.HTTPBadRequest(text="the item id must be an integer") from None
        if request.body_exists:
            await request.read()
        storm, method = self.storm_counts, request.method
        assert storm is not None  # set in __init__, replaced by storm()
        fate, attempt = storm.next_fate(method, item)
        if fate == "drop-before":
            return await drop_connection(request)
        if fate in ("500", "503", "429"):
            status = int(fate)
            headers = {hdrs.RETRY_AFTER: storm.retry_after} if status == 429 else {}
            return web.json_response(
                {"error": fate, "status": status}, status=status, headers=headers
            )
        if method not in ("GET", "HEAD"):
            storm.applied[item] += 1
        whole = web.Response(
            body=json.dumps({"id": item, "attempt": attempt}).encode(),
            content_type="application/json",
        )
        if fate == "ok":
            storm.answered[method, item] += 1
            return whole
        return await answer_then_drop(request, storm, (method, item), whole, fate)

    def throttle(
        self,
        count: int = 1,
        status: int = 429,
        retry_after: str | float | None = "1",
        *,
        path_prefix: str | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` and ``Retry-After``.

        ``retry_after`` is sent as given (seconds, or an HTTP-date from ``retry_after_date``); a
        number is sent as seconds; None sends no header. Faults apply in the order scheduled.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an error status 400..599, got {status}")
        if isinstance(retry_after, float) and retry_after.is_integer():
            retry_after = int(retry_after)
        header = None if retry_after is None else str(retry_after)
        self._add_fault(
            Fault(
                "throttle", count, path_prefix, _method(method), status=status, retry_after=header
            )
        )

    def drop_next(
        self, count: int = 1, *, path_prefix: str | None = None, method: str | None = None
    ) -> None:
        """Close the connection of the next ``count`` matching requests without any response.

        The request body is read first, so the client sees a clean disconnect (not a reset). Note
        that aiohttp's client re-sends an idempotent request once after such a disconnect: drop
        two GETs to make one ``session.get`` fail.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self._add_fault(Fault("drop", count, path_prefix, _method(method)))

    @property
    def pending_faults(self) -> int:
        """Scheduled throttles and drops not yet served."""
        return sum(fault.remaining for fault in self._faults)

    def clear_faults(self) -> None:
        """Cancel every scheduled throttle and drop."""
        self._faults.clear()

    def _add_fault(self, fault: Fault) -> None:
        if fault.remaining:
            self._faults.append(fault)

    def _take_fault(self, request: web.BaseRequest) -> Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.matches(request):
                fault.remaining -= 1
                if fault.remaining == 0:
                    del self._faults[index]
                return fault
        return None


def _method(method: str | None) -> str | None:
    return None if method is None else method.upper()


def throttled_response(fault: Fault) -> web.Response:
    headers = {} if fault.retry_after is None else {hdrs.RETRY_AFTER: fault.retry_after}
    error = "throttled" if fault.status == 429 else "unavailable"
    return web.json_response(
        {"error": error, "status": fault.status}, status=fault.status, headers=headers
    )
