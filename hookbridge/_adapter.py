"""The Adapter base class: an async resource that owns a pool, limits, a retry policy and stats."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Literal, TypeVar

import anyio
from anyio.abc import ObjectReceiveStream

from ._config import ConnectionSettings, read_settings
from ._errors import AdapterClosed, ConfigurationError, Throttled
from ._fanout import Progress, amap
from ._limits import Limits, LimitsStatistics
from ._retry import Retry, RetryEvent

__all__ = ["Adapter", "AdapterStatistics"]

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A", bound="Adapter")

_State = Literal["new", "opening", "open", "closed"]
# How long a close may take when it runs under cancellation: bounded so that a dead peer cannot
# hold a cancelled task (or a trigger's shutdown) forever.
CLOSE_TIMEOUT = 10.0


@dataclass(frozen=True)
class AdapterStatistics:
    """What an adapter has done so far; tests and the demo read it."""

    adapter: str
    conn_id: str
    state: str
    calls: int
    succeeded: int
    failed: int
    retries: int
    throttled: int
    limits: LimitsStatistics
    pool: Any = None


class Adapter:
    """Base class of every adapter: an async resource over one Airflow connection.

    ``async with`` opens it (resolves the connection, opens the pool), ``aclose()`` closes it, and a
    closed adapter refuses to reopen. Subclasses implement ``_open`` and ``_close`` and call
    :meth:`call` for every remote operation so that limits, retries and statistics apply.
    """

    #: Registry name (``hookbridge.open(conn_id, adapter=name)``).
    name: ClassVar[str] = ""
    #: Airflow conn_types this adapter serves (``hookbridge.open(conn_id)`` picks by these).
    conn_types: ClassVar[tuple[str, ...]] = ()
    #: Set by adapters built on asyncio-only libraries: opening under trio is refused up front.
    asyncio_only: ClassVar[bool] = False

    def __init__(
        self,
        conn_id: str,
        *,
        limits: Limits | None = None,
        retry: Retry | None = None,
    ) -> None:
        if not isinstance(conn_id, str) or not conn_id:
            raise ConfigurationError(
                f"conn_id must be a non-empty string, got {conn_id!r}.", field="conn_id"
            )
        self.conn_id = conn_id
        self._explicit_limits = limits
        self._explicit_retry = retry
        self.limits: Limits = limits if limits is not None else Limits()
        self.retry: Retry = retry if retry is not None else Retry()
        self._state: _State = "new"
        self._calls = self._succeeded = self._failed = self._retries = self._throttled = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self: A) -> A:
        if self._state != "new":
            raise AdapterClosed(
                f"{self!r} was already opened; an adapter is opened once. Create a new one with "
                "hookbridge.open(...) instead of reusing a closed one."
            )
        self._check_backend()
        self._state = "opening"
        try:
            await self._open()
        except BaseException:
            self._state = "closed"
            # Release whatever the failed open acquired before re-raising.
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                await self._close()
            raise
        self._state = "open"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool and every connection. Idempotent; safe under cancellation."""
        if self._state == "closed":
            return
        was_opened = self._state != "new"
        self._state = "closed"
        if was_opened:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                await self._close()

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    def _check_backend(self) -> None:
        if not self.asyncio_only:
            return
        try:
            import asyncio

            asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                f"the {self.name!r} adapter is built on asyncio-only libraries and cannot run "
                "under trio. Run it on asyncio (anyio.run(..., backend='asyncio')), or use an "
                "adapter whose libraries support trio.",
                conn_id=self.conn_id,
            ) from None

    def _require_open(self) -> None:
        if self._state != "open":
            hint = (
                "open it first: async with hookbridge.open(conn_id) as adapter: ..."
                if self._state in ("new", "opening")
                else "it was closed; create a new adapter"
            )
            raise AdapterClosed(f"{self!r} is not open: {hint}.")

    async def _open(self) -> None:
        """Resolve the connection and open the pool. Subclasses override."""

    async def _close(self) -> None:
        """Close everything ``_open`` created, tolerating a partial open. Subclasses override."""

    # -- configuration ---------------------------------------------------------------------

    def _apply_settings(
        self,
        extra: Mapping[str, Any],
        *,
        pool_keys: Mapping[str, type | tuple[type, ...]] = {},
        adapter_keys: Mapping[str, type | tuple[type, ...]] = {},
    ) -> ConnectionSettings:
        """Read the connection extra's ``hookbridge`` defaults; explicit arguments win."""
        settings = read_settings(
            extra, conn_id=self.conn_id, pool_keys=pool_keys, adapter_keys=adapter_keys
        )
        if self._explicit_limits is None and settings.limits is not None:
            self.limits = settings.limits
        if self._explicit_retry is None and settings.retry is not None:
            self.retry = settings.retry
        return settings

    def _spec_options(self) -> dict[str, Any]:
        """JSON-safe options the caller gave explicitly (never credentials). Subclasses extend."""
        options: dict[str, Any] = {}
        if self._explicit_limits is not None:
            options["limits"] = self._explicit_limits.to_spec()
        if self._explicit_retry is not None:
            options["retry"] = self._explicit_retry.to_spec()
        return options

    def spec(self) -> dict[str, Any]:
        """A JSON-safe description to re-create this adapter, e.g. in a trigger's serialize().

        Holds the adapter name, the conn_id and the explicit options; never a credential: those
        stay in the Airflow connection and are looked up again on the other side.
        """
        spec = {"adapter": self.name, "conn_id": self.conn_id, "options": self._spec_options()}
        json.dumps(spec)  # fail here, not in the triggerer, if a subclass put something odd in
        return spec

    # -- calling ---------------------------------------------------------------------------

    async def call(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        retry: Retry | None = None,
    ) -> T:
        """Run ``await fn(*args)`` through this adapter's policy.

        Each attempt takes a concurrency slot and a rate token from :attr:`limits`; failures
        go through :attr:`retry` (or ``retry=``). Use it to reach the raw client and still be
        limited: ``await api.call(session.get, url)``.
        """
        if self._state != "open":
            self._require_open()
        policy = retry or self.retry
        limits = self.limits
        self._calls += 1
        try:
            if policy.deadline is None and limits._enter_now():
                # The common case inline: no deadline, and a slot and a token at once. This is
                # nearly every call's path, and a coroutine for the policy and two for the
                # limiter cost more than the rest of call() together.
                failed: Exception | None = None
                try:
                    result = await fn(*args)
                except Exception as exc:
                    failed = exc
                finally:
                    limits._exit_slot()
                if failed is not None:
                    try:
                        result = await policy._attempts(fn, args, limits, self._count_retry, failed)
                    finally:
                        failed = None  # no reference cycle through this frame
            else:
                result = await policy._attempts(fn, args, limits, self._count_retry, None)
        except Exception:
            self._failed += 1
            raise
        self._succeeded += 1
        return result

    def _count_retry(self, event: RetryEvent) -> None:
        self._retries += 1
        if isinstance(event.error, Throttled):
            self._throttled += 1

    def map(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        *,
        max_at_once: int | None = None,
        ordered: bool = True,
        on_error: Literal["raise", "collect"] = "raise",
        progress: Callable[[Progress], object] | None = None,
    ) -> AbstractAsyncContextManager[ObjectReceiveStream[Any]]:
        """Fan ``fn`` out over ``items`` (see :func:`hookbridge.amap`).

        ``max_at_once`` defaults to the adapter's ``max_concurrency``, or 100.
        """
        if max_at_once is None:
            max_at_once = self.limits.max_concurrency or 100
        return amap(
            fn,
            items,
            max_at_once=max_at_once,
            ordered=ordered,
            on_error=on_error,
            progress=progress,
        )

    # -- introspection ---------------------------------------------------------------------

    def _pool_statistics(self) -> Any:
        return None

    def statistics(self) -> AdapterStatistics:
        return AdapterStatistics(
            adapter=self.name,
            conn_id=self.conn_id,
            state=self._state,
            calls=self._calls,
            succeeded=self._succeeded,
            failed=self._failed,
            retries=self._retries,
            throttled=self._throttled,
            limits=self.limits.statistics(),
            pool=self._pool_statistics(),
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} conn_id={self.conn_id!r} state={self._state}>"
