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
  ``/headers``.

Faults are scheduled from the test: ``server.throttle(...)`` and ``server.drop_next(...)``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import email.utils
import hashlib
import hmac
import json
import math
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlencode

import anyio
from aiohttp import hdrs, web

__all__ = [
    "HTTPTestServer",
    "RecordedRequest",
    "expected_sha256",
    "main",
    "pattern_bytes",
    "retry_after_date",
    "serve_forever",
]

_BLOCK = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
_CHUNK_SIZE = 64 * 1024
# A whole number of blocks, so every full chunk of any body is this same object.
_CHUNK = _BLOCK * (_CHUNK_SIZE // len(_BLOCK))
# Above this size the checksum header costs noticeable CPU, so it is sent only on ?checksum=1.
_CHECKSUM_HEADER_LIMIT = 16 * 1024 * 1024
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def pattern_bytes(n: int) -> bytes:
    """The first ``n`` bytes that ``GET /bytes/{n}`` sends (builds them in memory: small ``n``)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    full, rest = divmod(n, len(_BLOCK))
    return _BLOCK * full + _BLOCK[:rest]


@lru_cache(maxsize=64)
def expected_sha256(n: int) -> str:
    """Hex SHA-256 of the body of ``GET /bytes/{n}``, computed chunk by chunk without the body."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    digest = hashlib.sha256()
    full, rest = divmod(n, _CHUNK_SIZE)
    for _ in range(full):
        digest.update(_CHUNK)
    digest.update(_CHUNK[:rest])
    return digest.hexdigest()


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
class RecordedRequest:
    """One request the server received; ``status`` is None when no response was sent."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names, values as sent (credentials included)
    time: float  # time.monotonic() on arrival
    loop_time: float  # the server's event loop time on arrival (virtual under looptime)
    status: int | None = None


@dataclass(slots=True)
class _Fault:
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


def _json_error(cls: type[web.HTTPException], message: str, **extra: Any) -> web.HTTPException:
    body = {"error": message, "status": cls.status_code, **extra}
    return cls(text=json.dumps(body), content_type="application/json")


def _int_arg(
    request: web.Request, name: str, default: int, *, minimum: int = 0, raw: str | None = None
) -> int:
    text = request.query.get(name) if raw is None else raw
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise _json_error(web.HTTPBadRequest, f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise _json_error(web.HTTPBadRequest, f"{name} must be >= {minimum}, got {value}")
    return value


def _float_arg(request: web.Request, name: str, default: float) -> float:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise _json_error(web.HTTPBadRequest, f"{name} must be a finite number >= 0, got {text!r}")
    return value


def _items(start: int, stop: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"item-{i}"} for i in range(start, stop)]


def _safe_headers(request: web.BaseRequest) -> dict[str, str]:
    return {
        name.lower(): "<present>" if name.lower() in _SECRET_HEADERS else value
        for name, value in request.headers.items()
    }


def _basic_credentials(header: str) -> tuple[str, str] | None:
    # Parsed here: aiohttp 3.14 deprecates BasicAuth (a warning, an error under our test settings).
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except binascii.Error:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    user, colon, password = text.partition(":")
    return (user, password) if colon else None


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "offset":
            raise ValueError(text)
        offset = int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _json_error(
            web.HTTPBadRequest, f"cursor {token!r} is not a token we issued"
        ) from None
    if offset < 0:
        raise _json_error(web.HTTPBadRequest, f"cursor {token!r} is not a token we issued")
    return offset


class HTTPTestServer:
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
        self.host = host
        self.items = items
        self.user = user
        self.password = password
        self.log_requests = log_requests
        self._requested_port = port
        self._shutdown_timeout = shutdown_timeout
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state: Literal["new", "running", "stopped"] = "new"
        self._log: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._open_connections = 0
        self._total_connections = 0
        self.request_count = 0
        """Requests received since start or the last ``clear()``, counted even without a log."""

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; ``url`` is valid afterwards."""
        if self._state != "new":
            raise RuntimeError(
                f"HTTPTestServer is {self._state}: create a new one instead of restarting it"
            )
        self._state = "running"
        self._loop = asyncio.get_running_loop()
        runner = web.AppRunner(
            self._build_app(),
            access_log=None,
            handle_signals=False,
            # A client that goes away cancels its handler: no /slow sleeper outlives its client.
            handler_cancellation=True,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        self._runner = runner
        try:
            assert runner.server is not None
            self._track_connections(runner.server)
            site = web.TCPSite(runner, self.host, self._requested_port, backlog=1024)
            await site.start()
            self._port = site.port
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close the listener and every connection, and wait for them to be gone."""
        self._state = "stopped"
        runner, self._runner = self._runner, None
        if runner is None:
            return
        # Shielded: a stop skipped under cancellation would leave sockets open (ResourceWarning).
        with anyio.move_on_after(self._shutdown_timeout + 10, shield=True):
            await runner.cleanup()
            # Transports report connection_lost on a later loop iteration than their close().
            for _ in range(200):
                if self._open_connections == 0:
                    break
                await asyncio.sleep(0.005)

    async def __aenter__(self) -> HTTPTestServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- addresses -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("HTTPTestServer is not started: await start() or use async with")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` without a trailing slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def url_for(self, path: str) -> str:
        """The absolute URL of ``path`` (which starts with ``/``) on this server."""
        return self.url + path

    # -- request log -----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the log, oldest first (empty when ``log_requests`` is False)."""
        return list(self._log)

    def matching(
        self, path_prefix: str | None = None, method: str | None = None
    ) -> list[RecordedRequest]:
        """Logged requests whose path starts with ``path_prefix`` and whose method is ``method``."""
        return [
            record
            for record in self._log
            if (path_prefix is None or record.path.startswith(path_prefix))
            and (method is None or record.method == method.upper())
        ]

    def count(self, path_prefix: str | None = None, method: str | None = None) -> int:
        """How many logged requests match (see ``matching``)."""
        return len(self.matching(path_prefix, method))

    def clear(self) -> None:
        """Forget the request log and ``request_count``; scheduled faults stay."""
        self._log.clear()
        self.request_count = 0

    # -- connections -----------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        """TCP connections to the server open right now."""
        return self._open_connections

    @property
    def total_connections(self) -> int:
        """TCP connections accepted since start."""
        return self._total_connections

    def _track_connections(self, server: web.Server) -> None:
        # web.Server is the manager every RequestHandler (the per-connection protocol) reports to
        # exactly once on connection_made and once on connection_lost; aiohttp has no public hook.
        made = server.connection_made
        lost = server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            self._open_connections += 1
            self._total_connections += 1
            made(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            self._open_connections -= 1
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    # -- fault schedule --------------------------------------------------------------------------

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
            _Fault(
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
        self._add_fault(_Fault("drop", count, path_prefix, _method(method)))

    @property
    def pending_faults(self) -> int:
        """Scheduled throttles and drops not yet served."""
        return sum(fault.remaining for fault in self._faults)

    def clear_faults(self) -> None:
        """Cancel every scheduled throttle and drop."""
        self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining:
            self._faults.append(fault)

    def _take_fault(self, request: web.BaseRequest) -> _Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.matches(request):
                fault.remaining -= 1
                if fault.remaining == 0:
                    del self._faults[index]
                return fault
        return None

    # -- application -----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        add = app.router.add_route
        add("*", "/items/{id}", self._item)
        add("GET", "/paged/nextlink", self._paged_nextlink)
        add("GET", "/paged/link", self._paged_link)
        add("GET", "/paged/page", self._paged_page)
        add("GET", "/paged/offset", self._paged_offset)
        add("GET", "/paged/cursor", self._paged_cursor)
        add("GET", "/slow", self._slow)
        add("GET", "/slow/stream", self._slow_stream)
        add("GET", "/bytes/{n}", self._bytes)
        add("*", "/drop", self._drop_after)
        add("GET", "/auth/basic", self._auth_basic)
        add("GET", "/auth/echo", self._auth_echo)
        add("*", "/status/{code}", self._status)
        add("GET", "/headers", self._headers)
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
            return await self._drop_now(request)
        try:
            if fault is not None:
                response: web.StreamResponse = _throttled(fault)
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

    async def _drop_now(self, request: web.Request) -> web.StreamResponse:
        if request.body_exists:
            await request.read()
        if request.transport is not None:
            request.transport.close()
        # Writing this to the closed transport fails with ConnectionError, which aiohttp takes
        # quietly as the client going away.
        return web.Response(status=500)

    def _total(self, request: web.Request) -> int:
        return _int_arg(request, "total", self.items)

    def _link(self, request: web.Request, **changes: int) -> str:
        query = dict(request.query)
        query.update({name: str(value) for name, value in changes.items()})
        target = f"{request.path}?{urlencode(query)}"
        if query.get("relative") == "1":
            return target
        host = query.get("host")
        if host == "other":
            return f"http://localhost:{self.port}{target}"
        if host:
            return f"http://{host}{target}"
        return self.url + target

    async def _item(self, request: web.Request) -> web.StreamResponse:
        item_id = _int_arg(request, "id", 0, minimum=-(2**63), raw=request.match_info["id"])
        if request.method in ("GET", "HEAD"):
            if not 0 <= item_id < self._total(request):
                raise _json_error(web.HTTPNotFound, f"no item {item_id}", id=item_id)
            return web.json_response({"id": item_id, "name": f"item-{item_id}"})
        body = await request.read()
        payload: Any = None
        data: str | None = None
        if body and request.content_type == "application/json":
            try:
                payload = json.loads(body)
            except ValueError:
                raise _json_error(web.HTTPBadRequest, "the body is not valid JSON") from None
        elif body:
            data = body.decode("utf-8", "replace")
        return web.json_response(
            {
                "method": request.method,
                "id": item_id,
                "json": payload,
                "data": data,
                "size": len(body),
                "query": dict(request.query),
                "headers": _safe_headers(request),
            }
        )

    async def _paged_nextlink(self, request: web.Request) -> web.StreamResponse:
        total = self._total(request)
        size = _int_arg(request, "size", 100, minimum=1)
        skip = _int_arg(request, "skip", 0)
        body: dict[str, Any] = {"value": _items(skip, min(skip + size, total))}
        if skip + size < total:
            body["@odata.nextLink"] = self._link(request, skip=skip + size)
        return web.json_response(body)

    async def _paged_link(self, request: web.Request) -> web.StreamResponse:
        total = self._total(request)
        size = _int_arg(request, "size", 100, minimum=1)
        page = _int_arg(request, "page", 1, minimum=1)
        pages = max(1, -(-total // size))
        start = (page - 1) * size
        links = []
        if page < pages:
            links.append(f'<{self._link(request, page=page + 1)}>; rel="next"')
        links.append(f'<{self._link(request, page=pages)}>; rel="last"')
        return web.json_response(
            _items(start, min(start + size, total)), headers={hdrs.LINK: ", ".join(links)}
        )

    async def _paged_page(self, request: web.Request) -> web.StreamResponse:
        total = self._total(request)
        size = _int_arg(request, "size", 100, minimum=1)
        page = _int_arg(request, "page", 1, minimum=1)
        start = (page - 1) * size
        return web.json_response(
            {
                "items": _items(start, min(start + size, total)),
                "page": page,
                "total_pages": -(-total // size),
            }
        )

    async def _paged_offset(self, request: web.Request) -> web.StreamResponse:
        total = self._total(request)
        limit = _int_arg(request, "limit", 100, minimum=1)
        offset = _int_arg(request, "offset", 0)
        return web.json_response(
            {"items": _items(offset, min(offset + limit, total)), "total": total}
        )

    async def _paged_cursor(self, request: web.Request) -> web.StreamResponse:
        total = self._total(request)
        size = _int_arg(request, "size", 100, minimum=1)
        token = request.query.get("cursor")
        offset = _decode_cursor(token) if token else 0
        end = min(offset + size, total)
        return web.json_response(
            {
                "items": _items(offset, end),
                "next_cursor": _encode_cursor(end) if end < total else None,
            }
        )

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        delay = _float_arg(request, "delay", 1.0)
        await asyncio.sleep(delay)
        return web.json_response({"delay": delay})

    async def _slow_stream(self, request: web.Request) -> web.StreamResponse:
        chunks = _int_arg(request, "chunks", 5)
        interval = _float_arg(request, "interval", 0.1)
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for index in range(chunks):
                if index:
                    await asyncio.sleep(interval)
                await response.write(f"chunk {index}\n".encode())
            await response.write_eof()
        except ConnectionError:
            pass  # the client left; aiohttp settles the connection
        return response

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        size = _int_arg(request, "n", 0, raw=request.match_info["n"])
        headers: dict[str, str] = {hdrs.CONTENT_TYPE: "application/octet-stream"}
        if size <= _CHECKSUM_HEADER_LIMIT:
            headers["X-Checksum-Sha256"] = expected_sha256(size)
        elif request.query.get("checksum") == "1":
            headers["X-Checksum-Sha256"] = await asyncio.to_thread(expected_sha256, size)
        response = web.StreamResponse(headers=headers)
        response.content_length = size
        await response.prepare(request)
        try:
            await _write_pattern(response, size)
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    async def _drop_after(self, request: web.Request) -> web.StreamResponse:
        after = _int_arg(request, "after_bytes", 0)
        declared = _int_arg(request, "declared", after + _CHUNK_SIZE)
        if declared <= after:
            raise _json_error(
                web.HTTPBadRequest, f"declared ({declared}) must exceed after_bytes ({after})"
            )
        if request.body_exists:
            await request.read()
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "application/octet-stream"})
        response.content_length = declared
        await response.prepare(request)
        try:
            await _write_pattern(response, after)
        except ConnectionError:
            return response
        if request.transport is not None:
            # close() (not abort()) so the bytes already written still reach the client.
            request.transport.close()
        return response

    async def _auth_basic(self, request: web.Request) -> web.StreamResponse:
        credentials = _basic_credentials(request.headers.get(hdrs.AUTHORIZATION, ""))
        if credentials is None or not (
            hmac.compare_digest(credentials[0].encode(), self.user.encode())
            & hmac.compare_digest(credentials[1].encode(), self.password.encode())
        ):
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": "basic credentials missing or wrong", "status": 401}),
                content_type="application/json",
                headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="hookbridge"'},
            )
        return web.json_response({"authenticated": True, "user": credentials[0]})

    async def _auth_echo(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"authorization": hdrs.AUTHORIZATION in request.headers})

    async def _status(self, request: web.Request) -> web.StreamResponse:
        code = _int_arg(request, "code", 0, raw=request.match_info["code"])
        if not 200 <= code <= 599:
            raise _json_error(web.HTTPBadRequest, f"status must be 200..599, got {code}")
        headers = {}
        if "retry_after" in request.query:
            headers[hdrs.RETRY_AFTER] = request.query["retry_after"]
        if code in (204, 304):
            return web.Response(status=code, headers=headers)
        body: dict[str, Any] = {"status": code, "method": request.method}
        body_size = _int_arg(request, "body_size", 0)
        if body_size:
            body["padding"] = "x" * body_size
        return web.json_response(body, status=code, headers=headers)

    async def _headers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"headers": _safe_headers(request)})


def _method(method: str | None) -> str | None:
    return None if method is None else method.upper()


def _throttled(fault: _Fault) -> web.Response:
    headers = {} if fault.retry_after is None else {hdrs.RETRY_AFTER: fault.retry_after}
    error = "throttled" if fault.status == 429 else "unavailable"
    return web.json_response(
        {"error": error, "status": fault.status}, status=fault.status, headers=headers
    )


async def _write_pattern(response: web.StreamResponse, size: int) -> None:
    full, rest = divmod(size, _CHUNK_SIZE)
    for _ in range(full):
        await response.write(_CHUNK)
    if rest:
        await response.write(_CHUNK[:rest])


async def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    items: int = 1000,
    log_requests: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (or cancellation); ``ready(url)`` is called once bound."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        async with HTTPTestServer(
            host=host, port=port, items=items, log_requests=log_requests
        ) as server:
            if ready is not None:
                ready(server.url)
            await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the bound URL on one line, then serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m hookbridge.testing._http_server",
        description="Serve the hookbridge test HTTP API until SIGTERM/SIGINT.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
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
