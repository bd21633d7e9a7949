"""The hookbridge adapter over :class:`KeyValueHook`, written on the public SDK only.

It shows the parts an adapter author writes: a declared option (``timeout``, which operators can
also set in the connection extra's ``hookbridge`` key), ``_open`` that looks the connection up on
the async path, the blocking client run on worker threads through ``call_sync`` (under the
adapter's limits and retries), one ``_translate`` that turns the client's errors into hookbridge
errors (``BUSY`` becomes ``Throttled``, so every caller pauses), and ``_probe`` for ``check()``.

Each operation opens its own client connection: simple and cancellation-safe (a thread that was
started finishes and closes its socket). A busier adapter would keep clients in a
``hookbridge.Pool``.
"""

from __future__ import annotations

from typing import Any

from hookbridge import ConnectFailed, HookBridgeError, NotFound, RemoteError, Throttled
from hookbridge.adapter import Adapter, Option, positive_seconds

from .hook import KeyValueBusy, KeyValueClient, KeyValueError, KeyValueHook, KeyValueMissing

__all__ = ["KeyValueAdapter"]


class KeyValueAdapter(Adapter):
    """``async with hookbridge.open("my_kv") as kv: await kv.get("key")``."""

    name = "kv"
    conn_types = ("kv",)
    declared_options = (
        Option("timeout", positive_seconds, default=10.0, doc="seconds per operation"),
    )
    foreign_errors = (KeyValueError, OSError, TimeoutError)

    def __init__(self, conn_id: str, *, timeout: float | None = None, **common: Any) -> None:
        super().__init__(conn_id, timeout=timeout, **common)
        self._conn: Any = None

    async def _open(self) -> None:
        self._conn = await self._connection()

    async def _close(self) -> None:
        self._conn = None

    def _known_secrets(self) -> tuple[str, ...]:
        password = getattr(self._conn, "password", None)
        return (password,) if password else ()

    def _client(self) -> KeyValueClient:
        return KeyValueHook.client_for(self._conn, timeout=self.options["timeout"])

    def _run(self, operation: str, *args: Any) -> Any:
        # On a worker thread: connect, authenticate, do one operation, close.
        client = self._client()
        try:
            return getattr(client, operation)(*args)
        finally:
            client.close()

    def _translate(self, exc: Exception, target: object) -> HookBridgeError:
        where = self.redact(str(target)) if target is not None else self.conn_id
        if isinstance(exc, KeyValueBusy):
            return Throttled(
                f"{where}: the key/value server is busy", status=429, retry_after=exc.seconds
            )
        if isinstance(exc, KeyValueMissing):
            return NotFound(f"{where}: no such key", code="MISSING", target=where)
        if isinstance(exc, KeyValueError):
            return RemoteError(f"{where}: {self.redact(str(exc))}", code="ERR", target=where)
        if isinstance(exc, ConnectionRefusedError):
            return ConnectFailed(f"{where}: connection refused ({self.conn_id})")
        return super()._translate(exc, target)

    async def _probe(self) -> str:
        name = await self.call_sync(self._run, "ping", target="PING")
        return f"key/value server {name}"

    async def get(self, key: str) -> Any:
        """The value stored under ``key``; ``hookbridge.NotFound`` when there is none."""
        return await self.call_sync(self._run, "get", key, target=key)

    async def set(self, key: str, value: Any) -> None:
        """Store a JSON-encodable ``value`` under ``key``."""
        await self.call_sync(self._run, "set", key, value, target=key)
