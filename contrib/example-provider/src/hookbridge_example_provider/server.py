"""A loopback key/value server speaking the hook's protocol, for tests (asyncio, in-process)."""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any

__all__ = ["KeyValueServer"]


class KeyValueServer:
    """``async with KeyValueServer(password=...) as server:``; ``server.port``, counters."""

    def __init__(self, *, password: str, name: str = "kv-test") -> None:
        self.password = password
        self.name = name
        self.data: dict[str, Any] = {"answer": 42}
        self.open_connections = 0
        self.requests = 0
        self._busy: list[float] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    def connection(self) -> dict[str, Any]:
        """The Airflow connection (JSON form of ``AIRFLOW_CONN_<ID>``) for this server."""
        return {
            "conn_type": "kv",
            "host": "127.0.0.1",
            "port": self.port,
            "password": self.password,
        }

    def busy_next(self, seconds: float) -> None:
        """Answer the next command ``BUSY seconds``."""
        self._busy.append(seconds)

    async def __aenter__(self) -> KeyValueServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # so that stopping the server ends every connection
        self.open_connections += 1
        try:
            authenticated = False
            while line := (await reader.readline()).decode().rstrip("\n"):
                self.requests += 1
                word, _, rest = line.partition(" ")
                if self._busy:
                    answer = f"BUSY {self._busy.pop(0)}"
                elif not authenticated:
                    authenticated = word == "AUTH" and rest == self.password
                    answer = "OK" if authenticated else "ERR authentication failed"
                elif word == "GET":
                    answer = (
                        f"VALUE {json.dumps(self.data[rest])}" if rest in self.data else "MISSING"
                    )
                elif word == "SET":
                    key, _, value = rest.partition(" ")
                    self.data[key] = json.loads(value)
                    answer = "OK"
                elif word == "PING":
                    answer = f"PONG {self.name}"
                else:
                    answer = f"ERR unknown command {word}"
                writer.write(answer.encode() + b"\n")
                await writer.drain()
                if answer.startswith("ERR auth"):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open_connections -= 1
            self._tasks.discard(task)
            writer.close()
