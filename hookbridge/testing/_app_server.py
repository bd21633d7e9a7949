"""What the aiohttp test servers share: a start-once lifecycle, connection counts, a request log,
and connections dropped on purpose.

:class:`AppServer` serves one or more ``web.Application`` on ``host`` (``AppRunner`` +
``TCPSite``), counts the TCP connections they hold (``web.Server`` is the manager every
``RequestHandler`` reports to exactly once on ``connection_made`` and once on
``connection_lost``; aiohttp has no public hook, so both are wrapped), and on stop closes every
connection and waits for them to be gone. Only asyncio: a server runs on the running loop of
whoever starts it, and a stopped server does not restart.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, Generic, Literal, Protocol, TypeVar

import anyio
from aiohttp import web

from ._storm import Storm

__all__ = [
    "AppServer",
    "RequestLog",
    "answer_then_drop",
    "drop_connection",
    "track_connections",
]

_S = TypeVar("_S", bound="AppServer")


def track_connections(
    server: web.Server, made: Callable[[], None], lost: Callable[[], None]
) -> None:
    """Call ``made()`` on every connection ``server`` accepts and ``lost()`` when it ends."""
    connection_made = server.connection_made
    connection_lost = server.connection_lost

    def on_made(handler: Any, transport: asyncio.Transport) -> None:
        made()
        connection_made(handler, transport)

    def on_lost(handler: Any, exc: BaseException | None = None) -> None:
        lost()
        connection_lost(handler, exc)

    server.connection_made = on_made  # type: ignore[method-assign]
    server.connection_lost = on_lost  # type: ignore[method-assign]


class AppServer:
    """``async with`` (or ``await start()`` / ``await stop()``) serves what ``_bind`` listens on.

    A subclass implements ``_bind`` with one ``await self._listen(name, app, ...)`` per
    application; ``_port(name)`` and ``_origin(scheme, name)`` are then its address.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, shutdown_timeout: float = 1.0
    ) -> None:
        self.host = host
        self._requested_port = port  # of the first application (0: a free port)
        self._shutdown_timeout = shutdown_timeout
        self._state: Literal["new", "running", "stopped"] = "new"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runners: list[web.AppRunner] = []
        self._ports: dict[str, int] = {}
        self._open_connections = 0
        self._total_connections = 0
        self._peak_connections = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; the addresses are valid afterwards."""
        if self._state != "new":
            raise RuntimeError(
                f"{type(self).__name__} is {self._state}: create a new one instead of restarting it"
            )
        self._state = "running"
        self._loop = asyncio.get_running_loop()
        try:
            await self._bind()
        except BaseException:
            await self.stop()
            raise

    async def _bind(self) -> None:
        raise NotImplementedError

    async def _listen(
        self,
        name: str,
        app: web.Application,
        *,
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        handler_cancellation: bool = False,
    ) -> None:
        """Serve ``app`` on ``host`` and ``port`` (0: a free one), known as ``_port(name)``."""
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            handler_cancellation=handler_cancellation,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        self._runners.append(runner)
        assert runner.server is not None
        track_connections(runner.server, self._connection_made, self._connection_lost)
        site = web.TCPSite(runner, self.host, port, ssl_context=ssl_context, backlog=1024)
        await site.start()
        self._ports[name] = site.port

    async def stop(self) -> None:
        """Close the listeners and every connection, and wait for them to be gone."""
        self._state = "stopped"
        runners, self._runners = self._runners, []
        # Shielded: a stop skipped under cancellation would leave sockets open (ResourceWarning).
        with anyio.move_on_after(self._shutdown_timeout + 10, shield=True):
            for runner in runners:
                await runner.cleanup()
            # Transports report connection_lost on a later loop iteration than their close().
            for _ in range(200):
                if self._open_connections == 0:
                    break
                await asyncio.sleep(0.005)

    async def __aenter__(self: _S) -> _S:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- addresses -------------------------------------------------------------------------------

    def _port(self, name: str) -> int:
        if name not in self._ports:
            raise RuntimeError(
                f"{type(self).__name__} is not started: await start() or use async with"
            )
        return self._ports[name]

    def _origin(self, scheme: str, name: str) -> str:
        """``scheme://HOST:PORT`` of the application ``name`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self._port(name)}"

    # -- connections -----------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        """TCP connections to the server open right now."""
        return self._open_connections

    @property
    def total_connections(self) -> int:
        """TCP connections accepted since start."""
        return self._total_connections

    @property
    def peak_connections(self) -> int:
        """The most TCP connections that were open at once since start (or ``reset_peak()``)."""
        return self._peak_connections

    def reset_peak(self) -> None:
        """Start counting ``peak_connections`` again from the connections open now."""
        self._peak_connections = self._open_connections

    def _connection_made(self) -> None:
        self._open_connections += 1
        self._total_connections += 1
        self._peak_connections = max(self._peak_connections, self._open_connections)

    def _connection_lost(self) -> None:
        self._open_connections -= 1


class _Logged(Protocol):
    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...


_R = TypeVar("_R", bound=_Logged)


class RequestLog(Generic[_R]):
    """A server's log of the requests it received (kept while its ``log_requests`` is True)."""

    _log: list[_R]

    @property
    def requests(self) -> list[_R]:
        """A copy of the log, oldest first (empty when ``log_requests`` is False)."""
        return list(self._log)

    def matching(self, path_prefix: str | None = None, method: str | None = None) -> list[_R]:
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


async def drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the connection of ``request`` without any answer.

    The request body is read first (if it was not already), so the client sees a clean
    disconnect, not a reset. The response returned is for aiohttp: writing it to the closed
    transport fails with ConnectionError, which aiohttp takes quietly as the client going away.
    """
    if request.body_exists:
        await request.read()
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)


async def answer_then_drop(
    request: web.Request,
    storm: Storm,
    key: tuple[str, int],
    whole: web.Response,
    fate: str,
) -> web.StreamResponse:
    """Write half of ``whole`` (``drop-during``) or all of it (``drop-after``), then hang up.

    A complete answer counts in ``storm.answered[key]``.
    """
    payload = whole.body if isinstance(whole.body, bytes) else b""
    response = web.StreamResponse(status=whole.status, headers=whole.headers)
    response.content_length = len(payload)
    try:
        await response.prepare(request)
        if fate == "drop-during":
            await response.write(payload[: len(payload) // 2])
        else:
            await response.write(payload)
            await response.write_eof()
            storm.answered[key] += 1
    except ConnectionError:
        return response
    if request.transport is not None:
        # close() (not abort()) so the bytes already written still reach the client.
        request.transport.close()
    return response
