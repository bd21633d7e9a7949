"""Loopback servers on their own event loop in a thread, for tests that run several loops.

A test that starts a new event loop per phase (a trigger resumed on another loop) or that waits
for a ``dag.test()`` subprocess needs servers that outlive any one loop: these run on a loop of
their own, in a daemon thread, and are stopped when the fixture ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from hookbridge.testing import HTTPTestServer, SFTPTestServer

T = TypeVar("T")
DAGS = Path(__file__).resolve().parents[2] / "contrib" / "dags"


class ServerThread:
    """An asyncio loop in a thread that serves an HTTPTestServer (and optionally SFTP)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.http: HTTPTestServer | None = None
        self.sftp: SFTPTestServer | None = None

    def run(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Run ``await factory()`` on the servers' loop and wait for its result."""

        async def call() -> T:
            return await factory()

        future: Future[T] = asyncio.run_coroutine_threadsafe(call(), self.loop)
        return future.result(timeout=60)

    def start_http(self, **options: Any) -> HTTPTestServer:
        server = HTTPTestServer(**options)
        self.run(server.start)
        self.http = server
        return server

    def start_sftp(self, root: Path, **options: Any) -> SFTPTestServer:
        server = SFTPTestServer(root=root, **options)
        self.run(server.start)
        self.sftp = server
        return server

    def close(self) -> None:
        if self.http is not None:
            self.run(self.http.stop)
        if self.sftp is not None:
            self.run(self.sftp.aclose)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
