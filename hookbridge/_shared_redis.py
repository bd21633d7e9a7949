"""How a shared limit reaches Redis: redis-py's asyncio client on asyncio, its sync client on trio.

redis-py's asyncio client is built on asyncio streams and primitives and does not run under trio.
On trio each script call runs the sync client in a worker thread (``anyio.to_thread``), through a
capacity limiter of its own sized like the connection pool; the asyncio client needs no thread.

An asyncio client's sockets belong to the event loop that opened them, and ``Limits`` may serve
several loops one after another: there is one client per loop, closed when that loop shuts down
(see :func:`_closer`) or by ``SharedLimits.aclose()``.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio

from ._errors import ConfigurationError, redact
from ._shared_script import SCRIPT

__all__ = ["RedisTarget", "Transport", "down_errors", "resolve_target"]

#: Connections to Redis per SharedLimits and event loop (threads too, on trio). An acquire holds
#: one for a round trip only; more callers queue for one here, rather than each opening its
#: own (a storm of connects when 50 tasks start at once, on every process).
POOL_SIZE = 8


class RedisTarget:
    """Where Redis is and how to log in: the redis-py connection options, password included.

    Kept out of every repr, message and spec: :meth:`describe` is what may be shown.
    """

    __slots__ = ("_options", "_password", "_where")

    def __init__(self, options: dict[str, Any], where: str, password: str | None) -> None:
        self._options = options
        self._where = where
        self._password = password

    def describe(self) -> str:
        """host:port/db, or the URL without credentials."""
        return self._where

    def secrets(self) -> tuple[str | None, ...]:
        return (self._password,)

    def __repr__(self) -> str:
        return f"RedisTarget({self._where!r})"


def _from_url(url: str, timeout: float) -> RedisTarget:
    from redis.connection import parse_url

    try:
        options = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ConfigurationError(
            f"cannot read redis_url {redact(url)!r}: {redact(str(exc), [url])}. Write it as "
            "redis://[[user]:password@]host:port/db (or rediss:// for TLS, unix:///path.sock).",
            field="shared.redis_url",
        ) from None
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.hostname or ''}{':' if parts.port else ''}{parts.port or ''}"
    where += parts.path or ""
    options["socket_timeout"] = options["socket_connect_timeout"] = timeout
    # By name: the sync and the asyncio client each take their own class of that name.
    if "connection_class" in options:
        options["connection_class"] = options["connection_class"].__name__
    return RedisTarget(options, where, options.get("password"))


async def _from_connection(conn_id: str, socket_timeout: float) -> RedisTarget:
    from ._airflow import connection_extra, get_connection

    if sys.modules.get("trio") is not None and _on_trio():
        # Airflow's async lookup is asyncio-only (asgiref): look it up in a worker thread.
        conn = await anyio.to_thread.run_sync(_sync_connection, conn_id)
        extra = dict(conn.extra_dejson or {})
    else:
        conn = await get_connection(conn_id)
        extra = await connection_extra(conn)
    if conn.conn_type not in (None, "", "redis"):
        raise ConfigurationError(
            f"redis_conn_id names a connection of type {conn.conn_type!r}; shared limits need a "
            'connection of type \'redis\' (host, port, password, extra {"db": 0, "ssl": false}).',
            conn_id=conn_id,
            field="shared.redis_conn_id",
        )
    try:
        db = int(extra.get("db", 0) or 0)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"the extra's db must be a whole number, got {extra.get('db')!r}.",
            conn_id=conn_id,
            field="db",
        ) from None
    host = conn.host or "localhost"
    port = int(conn.port or 6379)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "db": db,
        "username": conn.login or None,
        "password": conn.password or None,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
    }
    if extra.get("ssl") in (True, "true", "True", 1):
        options["connection_class"] = "SSLConnection"
    return RedisTarget(options, f"{host}:{port}/{db} (connection {conn_id!r})", conn.password)


def _sync_connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:
        if type(exc).__name__ in {"AirflowNotFoundException", "ConnectionNotFound"}:
            raise ConfigurationError(
                "the connection is not defined; define it in Airflow or as the environment "
                f"variable AIRFLOW_CONN_{conn_id.upper()}.",
                conn_id=conn_id,
            ) from exc
        raise


def _on_trio() -> bool:
    import sniffio

    return sniffio.current_async_library() == "trio"


async def resolve_target(
    redis_url: str | None, redis_conn_id: str | None, socket_timeout: float
) -> RedisTarget:
    """The Redis to use: from the URL, or from the Airflow connection (looked up once)."""
    if redis_url is not None:
        return _from_url(redis_url, socket_timeout)
    assert redis_conn_id is not None
    return await _from_connection(redis_conn_id, socket_timeout)


def down_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "Redis is unreachable or too slow" (the failure policy applies)."""
    from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError

    return (ConnectionError, TimeoutError, ReadOnlyError, OSError)


def _one_retry(retry_class: Any) -> Any:
    # One immediate retry on a dropped connection, on a new one: a pooled connection that Redis
    # closed (it restarted) fails once without Redis being down. Nothing more: the failure
    # policy decides what an outage means, and redis-py's default (3 retries with back-off)
    # would only hide one for a while; a timeout is not retried at all.
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError

    return retry_class(NoBackoff(), 1, supported_errors=(ConnectionError,))


async def _closer(close: Callable[[], Any]) -> AsyncGenerator[None, None]:
    # Started once, never resumed: the event loop's async-generator hooks then call aclose() on
    # it when the loop shuts down (asyncio.run, anyio.run) or when it is dropped, and the client
    # is closed on its own loop, without a task of ours.
    try:
        yield
    finally:
        await close()


class Transport:
    """Runs the script on the current event loop's client; one per ``SharedLimits``."""

    __slots__ = ("_async", "_limiter", "_sync", "_target")

    def __init__(self, target: RedisTarget) -> None:
        self._target = target
        # loop -> (client, script, closer, gate), weakly: a finished loop takes its client along.
        self._async: weakref.WeakKeyDictionary[Any, tuple[Any, Any, Any, asyncio.Semaphore]] = (
            weakref.WeakKeyDictionary()
        )
        self._sync: tuple[Any, Any] | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    def secrets(self) -> tuple[str | None, ...]:
        return self._target.secrets()

    async def run(self, args: list[Any], key: str) -> Any:
        """One EVALSHA (one round trip; SCRIPT LOAD once per server first)."""
        try:
            loop = asyncio.get_running_loop()  # cheaper than asking sniffio on every call
        except RuntimeError:  # trio
            return await self._run_in_thread(args, key)
        entry = self._async.get(loop)
        if entry is None:
            entry = await self._open_async(loop)
        # An asyncio.Semaphore rather than redis-py's BlockingConnectionPool: its uncontended
        # path does not suspend, where the pool's condition costs every call a loop iteration.
        async with entry[3]:
            return await entry[1](keys=[key], args=args)

    async def _open_async(self, loop: Any) -> tuple[Any, Any, Any, asyncio.Semaphore]:
        import redis.asyncio as aredis
        from redis.asyncio.retry import Retry as AsyncRetry

        options = dict(self._target._options)
        if "connection_class" in options:
            options["connection_class"] = getattr(aredis, options["connection_class"])
        pool = aredis.ConnectionPool(retry=_one_retry(AsyncRetry), **options)
        client = aredis.Redis(connection_pool=pool)
        closer = _closer(pool.disconnect)
        await closer.asend(None)
        entry = (client, client.register_script(SCRIPT), closer, asyncio.Semaphore(POOL_SIZE))
        self._async[loop] = entry
        return entry

    async def _run_in_thread(self, args: list[Any], key: str) -> Any:
        if self._sync is None:
            import redis
            from redis.retry import Retry

            options = dict(self._target._options)
            if "connection_class" in options:
                options["connection_class"] = getattr(redis, options["connection_class"])
            pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
                max_connections=POOL_SIZE, timeout=None, retry=_one_retry(Retry), **options
            )
            client = redis.Redis(connection_pool=pool)
            self._sync = (client, client.register_script(SCRIPT))
            self._limiter = anyio.CapacityLimiter(POOL_SIZE)
        script = self._sync[1]
        return await anyio.to_thread.run_sync(
            lambda: script(keys=[key], args=args), limiter=self._limiter
        )

    async def aclose(self) -> None:
        """Close the current loop's client and the thread client."""
        if not _on_trio():
            entry = self._async.pop(asyncio.get_running_loop(), None)
            if entry is not None:
                await entry[2].aclose()
        if self._sync is not None:
            client = self._sync[0]
            self._sync = None
            await anyio.to_thread.run_sync(client.connection_pool.disconnect)
