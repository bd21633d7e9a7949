"""Loopback HTTP API server for tests and benchmarks: JSON items, every pagination style, faults.

Built on ``aiohttp.web`` (``AppRunner`` + ``TCPSite``) rather than ``aiohttp.test_utils.TestServer``
because the tests need things that one does not give: a schedule of 429/503 answers and dropped
connections, a request log with the loop time of each arrival, a count of open TCP connections, and
a mode that runs in its own process (``python -m hookbridge.testing._http_server --port 0``) so a
benchmark's client does not share a core with the server.

Items are ``{"id": i, "name": "item-i"}`` with ids ``0 .. total - 1``; ``total`` is the server's
``items`` unless a request overrides it with ``?total=``. Endpoints:

- ``GET /items/{id}``; ``POST/PUT/PATCH/DELETE /items/{id}`` echo method, body and headers.
- ``GET /paged/nextlink?skip=&size=`` (``{"value", "@odata.nextLink"}``; ``relative=1`` gives a
  relative link, ``host=other`` a link to ``localhost:PORT``, ``host=<netloc>`` that netloc),
  ``/paged/link?page=&size=`` (RFC 8288 ``Link`` header), ``/paged/page?page=&size=``,
  ``/paged/offset?offset=&limit=``, ``/paged/cursor?cursor=&size=``. Pages are 1-based.
- ``GET /slow?delay=``, ``/slow/stream?chunks=&interval=``, ``/bytes/{n}`` (``pattern_bytes``),
  ``/drop?after_bytes=&declared=``, ``/auth/basic``, ``/auth/echo``, ``/status/{code}``,
  ``/headers``, ``/redirect?to=&status=``, ``/redirect/loop`` (``_http_endpoints.py``).

Faults are scheduled from the test: ``server.throttle(...)`` and ``server.drop_next(...)``
(``_http_faults.py``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from ._app_server import AppServer, RequestLog, drop_connection
from ._http_endpoints import Endpoints, expected_sha256, pattern_bytes
from ._http_faults import FaultSchedule, retry_after_date, throttled_response
from ._serve import argument_parser, serve_until_signalled

__all__ = [
    "HTTPTestServer",
    "RecordedRequest",
    "expected_sha256",
    "main",
    "pattern_bytes",
    "retry_after_date",
    "serve_forever",
]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class RecordedRequest:
    """One request the server received; ``status`` is None when no response was sent."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names, values as sent (credentials included)
    time: float  # time.monotonic() on arrival
    loop_time: float  # the server's event loop time on arrival (virtual under looptime)
    status: int | None = None


class HTTPTestServer(AppServer, RequestLog[RecordedRequest], FaultSchedule, Endpoints):
    """A real aiohttp server on 127.0.0.1 and a random port, with faults scheduled by the test.

    ``async with HTTPTestServer() as server:`` (or ``await server.start()`` / ``await
    server.stop()``); ``server.url`` is ``"http://127.0.0.1:PORT"``. A stopped server does not
    restart. Only asyncio: it runs on the running loop of whoever starts it.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        items: int = 1000,
        user: str = "user",
        password: str = "hookbridge-test-secret",
        log_requests: bool = True,
        shutdown_timeout: float = 1.0,
    ) -> None:
        if items < 0:
            raise ValueError(f"items must be >= 0, got {items}")
        AppServer.__init__(self, host=host, port=port, shutdown_timeout=shutdown_timeout)
        FaultSchedule.__init__(self)
        self.items = items
        self.user = user
        self.password = password
        self.log_requests = log_requests
        self._log = []
        self.request_count = 0
        """Requests received since start or the last ``clear()``, counted even without a log."""
        self.item_delay = 0.0
        """Seconds each ``GET /items/{id}`` waits before answering (a fan-out that takes time)."""

    async def _bind(self) -> None:
        # A client that goes away cancels its handler: no /slow sleeper outlives its client.
        await self._listen(
            "http", self._build_app(), port=self._requested_port, handler_cancellation=True
        )

    # -- addresses -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port("http")

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` without a trailing slash."""
        return self._origin("http", "http")

    def url_for(self, path: str) -> str:
        """The absolute URL of ``path`` (which starts with ``/``) on this server."""
        return self.url + path

    # -- request log -----------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget the request log and ``request_count``; scheduled faults stay."""
        self._log.clear()
        self.request_count = 0

    # -- application -----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self._add_routes(app.router)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        self.request_count += 1
        record = None
        if self.log_requests:
            assert self._loop is not None
            record = RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={name.lower(): value for name, value in request.headers.items()},
                time=time.monotonic(),
                loop_time=self._loop.time(),
            )
            self._log.append(record)
        fault = self._take_fault(request) if self._faults else None
        if fault is not None and fault.kind == "drop":
            return await drop_connection(request)
        try:
            if fault is not None:
                response: web.StreamResponse = throttled_response(fault)
            else:
                response = await handler(request)
        except web.HTTPException as exc:
            if record is not None:
                record.status = exc.status
            raise
        except Exception:
            if record is not None:
                record.status = 500  # what aiohttp answers for an unexpected handler error
            raise
        if record is not None:
            record.status = response.status
        return response


async def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    items: int = 1000,
    log_requests: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (or cancellation); ``ready(url)`` is called once bound."""
    server = HTTPTestServer(host=host, port=port, items=items, log_requests=log_requests)
    await serve_until_signalled(
        server, None if ready is None else lambda serving: ready(serving.url)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the bound URL on one line, then serve until SIGTERM or SIGINT."""
    parser = argument_parser(
        "_http_server", "Serve the hookbridge test HTTP API until SIGTERM/SIGINT."
    )
    parser.add_argument("--items", type=int, default=1000, help="items in the collection")
    parser.add_argument("--log-requests", action="store_true", help="keep a request log")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (must be installed)")
    args = parser.parse_args(argv)

    def ready(url: str) -> None:
        print(url, flush=True)

    coro = serve_forever(
        host=args.host,
        port=args.port,
        items=args.items,
        log_requests=args.log_requests,
        ready=ready,
    )
    if args.uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
