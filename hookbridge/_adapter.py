"""The Adapter base class: lifecycle, declared options, one error boundary, check and statistics.

Calling (``call``, ``call_sync``, ``hold``) lives in the engine (``_engine.py``) that this class
inherits; everything an adapter author implements is listed in :class:`Adapter`'s docstring.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypedDict, TypeVar, overload

import anyio
from anyio.abc import AsyncResource, ObjectReceiveStream

from ._airflow import connection_extra, get_connection
from ._clock import on_asyncio
from ._config import read_settings
from ._engine import CallEngine, translate_with
from ._errors import (
    AdapterClosed,
    ConfigurationError,
    HookBridgeError,
    TransportError,
    UsageError,
    redact,
)
from ._fanout import Outcome, Progress, amap
from ._limits import Limits, LimitsStatistics
from ._options import Option, OptionSource, parse_explicit, resolve
from ._retry import Retry

if TYPE_CHECKING:
    from ._registry import Opening

__all__ = ["Adapter", "AdapterOptions", "AdapterStatistics", "CheckResult"]

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A", bound="Adapter")

_State = Literal["new", "opening", "open", "closed"]
_RetryOn = Callable[[BaseException], bool]
_AdjustRetryOn = Callable[[_RetryOn], _RetryOn]
# How long a close may take when it runs under cancellation: bounded so that a dead peer cannot
# hold a cancelled task (or a trigger's shutdown) forever.
CLOSE_TIMEOUT = 10.0


class AdapterOptions(TypedDict, total=False):
    """The keyword arguments every adapter takes; an adapter's own options extend these.

    ``class WidgetOptions(AdapterOptions, total=False): timeout: float | None`` and
    ``def __init__(self, conn_id: str, **options: Unpack[WidgetOptions])`` type-check each option
    without an adapter listing them twice (once to take them, once to pass them on).
    """

    limits: Limits | None
    retry: Retry | None


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
    #: Long operations (``hold()``: streams, open files) in progress now.
    holding: int = 0


@dataclass(frozen=True)
class CheckResult:
    """What :meth:`Adapter.check` found: whether the remote side answered, how fast, and what."""

    ok: bool
    #: Seconds the probe took.
    latency: float
    #: What answered (a status line, the server's identity, the negotiated cipher) or what failed.
    detail: str

    def __str__(self) -> str:
        state = "ok" if self.ok else "FAILED"
        return f"{state} in {self.latency * 1000:.0f} ms: {self.detail}"


class Adapter(CallEngine, AsyncResource):
    """Base class of every adapter: an async resource over one Airflow connection.

    ``async with`` opens it, ``aclose()`` closes it, and a closed adapter refuses to reopen.
    An adapter author writes:

    - ``name``, ``conn_types`` and, for asyncio-only client libraries, ``asyncio_only = True``;
    - ``declared_options``: the adapter's :class:`~hookbridge.adapter.Option` list; its
      ``__init__`` passes the keyword arguments on to ``super().__init__``;
    - ``_open()``: ``conn = await self._connection()`` (looks the connection up on the async
      path and resolves :attr:`options`, :attr:`limits` and :attr:`retry`), then open clients;
      ``_close()``: close them, tolerating a partial open;
    - ``foreign_errors`` and ``_translate(exc, target)``: how the client library's errors
      become hookbridge errors (applied once per attempt by :meth:`call` and friends);
    - ``_probe()`` for :meth:`check`, ``_known_secrets()`` for redaction, ``_pool_statistics()``;
    - its operations, each going through :meth:`call`, :meth:`call_sync` or :meth:`hold`.
    """

    #: Registry name (``hookbridge.open(conn_id, adapter=name)``).
    name: ClassVar[str] = ""
    #: Airflow conn_types this adapter serves (``hookbridge.open(conn_id)`` picks by these).
    conn_types: ClassVar[tuple[str, ...]] = ()
    #: Set by adapters built on asyncio-only libraries: opening under trio is refused up front.
    asyncio_only: ClassVar[bool] = False
    #: The adapter's options (see :class:`~hookbridge.adapter.Option`).
    declared_options: ClassVar[tuple[Option[Any], ...]] = ()
    #: Exceptions of the client library that ``_translate`` turns into hookbridge errors.
    foreign_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError, TimeoutError)

    def __init__(
        self,
        conn_id: str,
        *,
        limits: Limits | None = None,
        retry: Retry | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(conn_id, str) or not conn_id:
            raise ConfigurationError(
                f"conn_id must be a non-empty string, got {conn_id!r}.", field="conn_id"
            )
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigurationError(
                f"limits must be a hookbridge.Limits, got {limits!r}.", conn_id=conn_id,
                field="limits",
            )  # fmt: skip
        if retry is not None and not isinstance(retry, Retry):
            raise ConfigurationError(
                f"retry must be a hookbridge.Retry, got {retry!r}.", conn_id=conn_id, field="retry"
            )
        self.conn_id = conn_id
        self._explicit_limits = limits
        self._explicit_retry = retry
        self.limits: Limits = limits if limits is not None else Limits()
        self.retry: Retry = retry if retry is not None else Retry()
        self._explicit = parse_explicit(self.declared_options, options, conn_id=conn_id)
        resolved, sources = resolve(self.declared_options, self._explicit, {}, conn_id=conn_id)
        #: The options in force: explicit arguments, else the connection extra, else defaults.
        #: Final once ``_connection()`` has read the extra.
        self.options: Mapping[str, Any] = MappingProxyType(resolved)
        self._option_sources = sources
        self._derived_retries: dict[_AdjustRetryOn, tuple[Retry, Retry]] = {}
        self._state: _State = "new"
        self._init_engine()

    @classmethod
    def for_connection(
        cls: type[A], conn_id: str, *, shared: bool = False, linger: float = 60.0, **options: Any
    ) -> Opening[A]:
        """``hookbridge.open(conn_id, adapter=cls, ...)``, typed as this adapter class."""
        from ._registry import open as open_adapter

        return open_adapter(conn_id, adapter=cls, shared=shared, linger=linger, **options)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self: A) -> A:
        if self._state != "new":
            raise AdapterClosed(
                f"{self!r} was already opened; an adapter is opened once. Create a new one with "
                "hookbridge.open(...) instead of reusing a closed one."
            )
        self._check_backend()
        self._state = "opening"
        # Calls are allowed while opening: an adapter may probe the server from _open.
        self._is_open = True
        try:
            await self._open()
        except BaseException:
            self._state = "closed"
            self._is_open = False
            # Release whatever the failed open acquired before re-raising.
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                await self._close()
            raise
        self._state = "open"
        return self

    async def aclose(self) -> None:
        """Close the pool and every connection. Idempotent; safe under cancellation."""
        if self._state == "closed":
            return
        was_opened = self._state != "new"
        self._state = "closed"
        self._is_open = False
        if was_opened:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                await self._close()

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    def _check_backend(self) -> None:
        if self.asyncio_only and not on_asyncio():
            raise ConfigurationError(
                f"the {self.name!r} adapter is built on asyncio-only libraries and cannot run "
                "under trio. Run it on asyncio (anyio.run(..., backend='asyncio')), or use an "
                "adapter whose libraries support trio.",
                conn_id=self.conn_id,
            )

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
        await self._connection()

    async def _close(self) -> None:
        """Close everything ``_open`` created, tolerating a partial open. Subclasses override."""

    # -- configuration ---------------------------------------------------------------------

    async def _connection(self, hook: Any = None) -> Any:
        """Look the Airflow connection up on the async path and settle the options from it.

        Reads the extra's ``hookbridge`` key: limits and retry (unless given as arguments) and
        the declared options (arguments win, then the extra, then the defaults). Returns the
        connection.
        """
        conn = await get_connection(self.conn_id, hook)
        self._configure(await connection_extra(conn))
        return conn

    def _configure(self, extra: Mapping[str, Any]) -> None:
        """Settle limits, retry and :attr:`options` from a connection extra."""
        settings = read_settings(extra, conn_id=self.conn_id, options=self.declared_options)
        if self._explicit_limits is None and settings.limits is not None:
            self.limits = settings.limits
        if self._explicit_retry is None and settings.retry is not None:
            self.retry = settings.retry
        resolved, self._option_sources = resolve(
            self.declared_options, self._explicit, settings.sections, conn_id=self.conn_id
        )
        self.options = MappingProxyType(resolved)

    def option_source(self, name: str) -> OptionSource:
        """Where option ``name``'s value came from: ``argument``, ``extra`` or ``default``."""
        try:
            return self._option_sources[name]
        except KeyError:
            raise UsageError(
                f"{type(self).__name__} has no option {name!r}; it has: "
                f"{', '.join(sorted(self._option_sources)) or 'none'}.",
                argument="name",
            ) from None

    def _spec_options(self) -> dict[str, Any]:
        """The explicit options in their JSON-safe spec form (never credentials)."""
        options: dict[str, Any] = {}
        if self._explicit_limits is not None:
            options["limits"] = self._explicit_limits.to_spec()
        if self._explicit_retry is not None:
            options["retry"] = self._explicit_retry.to_spec()
        for option in self.declared_options:
            if option.name in self._explicit:
                options[option.name] = option.to_spec(self._explicit[option.name])
        return options

    def spec(self) -> dict[str, Any]:
        """A JSON-safe description to re-create this adapter, e.g. in a trigger's serialize().

        Holds the adapter name, the conn_id and the explicit options; never a credential: those
        stay in the Airflow connection and are looked up again on the other side
        (``hookbridge.open_spec(spec)``).
        """
        spec = {"adapter": self.name, "conn_id": self.conn_id, "options": self._spec_options()}
        json.dumps(spec)  # fail here, not in the triggerer, if a subclass put something odd in
        return spec

    # -- the error boundary ------------------------------------------------------------------

    def _known_secrets(self) -> tuple[str, ...]:
        """The connection's secrets, for :meth:`redact`. Subclasses that hold some override."""
        return ()

    def redact(self, text: str) -> str:
        """``text`` without this adapter's secrets (in every encoding) or URL credentials."""
        return redact(text, self._known_secrets())

    def _translate(self, exc: Exception, target: object) -> HookBridgeError:
        """The hookbridge error for a foreign one (one of :attr:`foreign_errors`).

        ``target`` is what the call named (a URL, a path, a command). The base maps everything
        to :class:`~hookbridge.TransportError`; adapters override for their library.
        """
        where = f"{self.redact(str(target))}: " if target is not None else ""
        detail = self.redact(str(exc) or type(exc).__name__)
        if isinstance(exc, TimeoutError):
            return TransportError(f"{where}no answer within the timeout ({detail}).")
        return TransportError(f"{where}{type(exc).__name__}: {detail}")

    def _derived_retry(self, adjust: _AdjustRetryOn) -> Retry:
        """:attr:`retry` with ``retry_on`` replaced by ``adjust(retry.retry_on)``.

        The policy of one kind of operation: writes retried on less, reads on more. Built once
        per policy in force (the connection extra may replace :attr:`retry` at open, a caller
        may set another) rather than on every call that asks for it.
        """
        derived = self._derived_retries.get(adjust)
        if derived is None or derived[0] is not self.retry:
            policy = dataclasses.replace(self.retry, retry_on=adjust(self.retry.retry_on))
            derived = self._derived_retries[adjust] = (self.retry, policy)
        return derived[1]

    def _boundary(self, exc: Exception, target: object) -> Exception:
        return translate_with(self._translate, self.foreign_errors, exc, target)

    # -- probing -----------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        """Probe the remote side once (``hookbridge check CONN_ID``); never raises for a failure.

        A hookbridge error (refused, 4xx/5xx, authentication) gives ``ok=False`` with the
        error's message; misuse (the adapter is not open) still raises.
        """
        self._require_open()
        started = anyio.current_time()
        try:
            detail = await self._probe()
        except HookBridgeError as exc:
            if isinstance(exc, UsageError):
                raise
            return CheckResult(
                False, anyio.current_time() - started, f"{type(exc).__name__}: {exc}"
            )
        return CheckResult(True, anyio.current_time() - started, detail)

    async def _probe(self) -> str:
        """One cheap round trip that proves the connection works; returns what answered."""
        return "opened"

    # -- fan-out -----------------------------------------------------------------------------

    @overload
    def map(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        *,
        max_at_once: int | None = None,
        ordered: bool = True,
        on_error: Literal["raise"] = "raise",
        progress: Callable[[Progress], object] | None = None,
    ) -> AbstractAsyncContextManager[ObjectReceiveStream[R]]: ...

    @overload
    def map(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        *,
        max_at_once: int | None = None,
        ordered: bool = True,
        on_error: Literal["collect"],
        progress: Callable[[Progress], object] | None = None,
    ) -> AbstractAsyncContextManager[ObjectReceiveStream[Outcome[T, R]]]: ...

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

        ``max_at_once`` defaults to the adapter's ``max_concurrency``, or 100. The stream yields
        ``fn``'s results, or :class:`~hookbridge.Outcome` objects with ``on_error="collect"``.
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

    # -- introspection -----------------------------------------------------------------------

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
            holding=self._holding,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} conn_id={self.conn_id!r} state={self._state}>"
