"""The adapter registry (entry point group ``hookbridge.adapters``) and ``hookbridge.open``.

Built-in adapters register through the same entry point group a third-party provider uses, so the
plug-in path is the path our own adapters take. Entry points are loaded lazily: importing hookbridge
imports no adapter, and an adapter whose extra is not installed is listed as unavailable with the
reason instead of breaking the others.
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, Literal, TypeVar, overload

import anyio
from anyio.lowlevel import RunVar

from ._adapter import Adapter
from ._airflow import get_connection
from ._errors import AdapterNotFound, ConfigurationError, UsageError
from ._limits import Limits
from ._retry import Retry

__all__ = [
    "ENTRY_POINT_GROUP",
    "AdapterInfo",
    "Opening",
    "aclose_shared",
    "get_adapter",
    "open",
    "open_spec",
    "register",
    "registered_adapters",
]

ENTRY_POINT_GROUP = "hookbridge.adapters"
log = logging.getLogger("hookbridge")

A = TypeVar("A", bound=Adapter)


@dataclass(frozen=True)
class AdapterInfo:
    """One registered adapter, as ``hookbridge adapters`` lists it."""

    name: str
    target: str
    source: Literal["entry point", "register()"]
    conn_types: tuple[str, ...] = ()
    #: Why the adapter cannot be loaded (a missing extra, usually); None when it loads.
    error: str | None = None


class _Registry:
    def __init__(self) -> None:
        self._explicit: dict[str, type[Adapter] | str] = {}
        self._loaded: dict[str, type[Adapter]] = {}
        self._errors: dict[str, str] = {}
        # Entry points are read once per process: scanning every installed distribution takes
        # ~30 ms, on the event loop when open() looks an adapter up (200 triggers starting in a
        # triggerer blocked its loop for 6 s). A distribution installed later needs a restart.
        self._discovered: dict[str, str] | None = None

    def register(self, adapter: type[Adapter] | str, *, name: str | None, replace: bool) -> str:
        if isinstance(adapter, str):
            if ":" not in adapter or name is None:
                raise ConfigurationError(
                    "register a string target as 'package.module:ClassName' and pass name=.",
                    field="adapter",
                )
            key = name
        else:
            if not (isinstance(adapter, type) and issubclass(adapter, Adapter)):
                raise ConfigurationError(
                    f"{adapter!r} is not a hookbridge.Adapter subclass.", field="adapter"
                )
            key = name or adapter.name
            if not key:
                raise ConfigurationError(
                    f"{adapter.__name__} has no name: set the class attribute name or pass name=.",
                    field="name",
                )
        if key in self._explicit and not replace:
            raise ConfigurationError(
                f"an adapter named {key!r} is already registered; pass replace=True to replace it.",
                field="name",
            )
        self._explicit[key] = adapter
        self._loaded.pop(key, None)
        self._errors.pop(key, None)
        return key

    def _targets(
        self,
    ) -> dict[str, tuple[type[Adapter] | str, Literal["entry point", "register()"]]]:
        targets: dict[str, tuple[type[Adapter] | str, Literal["entry point", "register()"]]] = {}
        if self._discovered is None:
            self._discovered = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
        for name, target in self._discovered.items():
            targets[name] = (target, "entry point")
        for key, value in self._explicit.items():
            targets[key] = (value, "register()")
        return targets

    def _load(self, key: str, target: type[Adapter] | str) -> type[Adapter] | None:
        if key in self._loaded:
            return self._loaded[key]
        if not isinstance(target, str):
            self._loaded[key] = target
            return target
        module_name, _, attr = target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # a missing extra must not hide the other adapters
            self._errors[key] = f"{type(exc).__name__}: {exc}"
            return None
        if not (isinstance(obj, type) and issubclass(obj, Adapter)):
            self._errors[key] = f"{target} is not a hookbridge.Adapter subclass"
            return None
        self._loaded[key] = obj
        return obj

    def infos(self) -> list[AdapterInfo]:
        infos = []
        for key, (target, source) in sorted(self._targets().items()):
            cls = self._load(key, target)
            infos.append(
                AdapterInfo(
                    name=key,
                    target=target if isinstance(target, str) else _qualname(target),
                    source=source,
                    conn_types=cls.conn_types if cls else (),
                    error=None if cls else self._errors.get(key),
                )
            )
        return infos

    def by_name(self, name: str) -> type[Adapter]:
        targets = self._targets()
        if name not in targets:
            raise AdapterNotFound(f"no adapter named {name!r}", installed=list(targets))
        cls = self._load(name, targets[name][0])
        if cls is None:
            raise AdapterNotFound(
                f"the adapter {name!r} is registered but cannot be loaded ({self._errors[name]})",
                installed=[i.name for i in self.infos() if i.error is None],
            )
        return cls

    def by_conn_type(self, conn_type: str, *, conn_id: str | None = None) -> type[Adapter]:
        infos = self.infos()
        for info in infos:
            if info.error is None and conn_type in info.conn_types:
                return self.by_name(info.name)
        served = [f"{i.name} ({', '.join(i.conn_types)})" for i in infos if i.error is None]
        raise AdapterNotFound(
            f"no adapter serves conn_type {conn_type!r}",
            installed=served,
            conn_id=conn_id,
            field="conn_type",
        )


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


_registry = _Registry()


def register(
    adapter: type[Adapter] | str, *, name: str | None = None, replace: bool = False
) -> str:
    """Register an adapter class (or ``"module:Class"``) for code that cannot ship an entry point.

    Prefer the entry point group ``hookbridge.adapters`` in a distribution's metadata. Returns the
    registered name.
    """
    return _registry.register(adapter, name=name, replace=replace)


def registered_adapters() -> list[AdapterInfo]:
    """Every registered adapter, with its conn_types, or the reason it cannot be loaded."""
    return _registry.infos()


def get_adapter(name: str | None = None, *, conn_type: str | None = None) -> type[Adapter]:
    """Look an adapter class up by registry name or by Airflow conn_type."""
    if (name is None) == (conn_type is None):
        raise ConfigurationError("pass exactly one of name= or conn_type=.", field="name")
    if name is not None:
        return _registry.by_name(name)
    assert conn_type is not None
    return _registry.by_conn_type(conn_type)


# -- open, and shared leases -------------------------------------------------------------------


@dataclass
class _SharedEntry:
    adapter: Adapter
    leases: int
    ready: anyio.Event
    idle_since: float | None = None
    linger: float = 0.0
    error: BaseException | None = None


# One table per event loop: an adapter's sockets belong to the loop that opened them.
_shared: RunVar[dict[str, _SharedEntry]] = RunVar("hookbridge_shared")


def _shared_table() -> dict[str, _SharedEntry]:
    try:
        return _shared.get()
    except LookupError:
        table: dict[str, _SharedEntry] = {}
        _shared.set(table)
        return table


async def _close_expired(table: dict[str, _SharedEntry]) -> None:
    # Shared adapters linger after their last lease without a background task: the sweep runs on
    # every shared open and lease release in the same loop, and aclose_shared() ends the rest.
    now = anyio.current_time()
    for key, entry in list(table.items()):
        idle_since = entry.idle_since
        if entry.leases == 0 and idle_since is not None and now - idle_since >= entry.linger:
            del table[key]
            await entry.adapter.aclose()


async def aclose_shared() -> None:
    """Close every shared adapter of the current event loop, leased or not (shutdown, tests)."""
    table = _shared_table()
    entries = list(table.values())
    table.clear()
    for entry in entries:
        await entry.adapter.aclose()


class Opening(Generic[A]):
    """What :func:`open` returns: ``async with`` yields the opened adapter and closes it after.

    With ``shared=True`` it is a lease on the one adapter per (event loop, spec): the first lease
    opens it, the last one ends it after ``linger`` seconds.
    """

    def __init__(
        self,
        conn_id: str,
        adapter: type[A] | str | None,
        *,
        shared: bool,
        linger: float,
        options: dict[str, Any],
    ) -> None:
        if linger < 0:
            raise ConfigurationError(
                f"linger must be >= 0 seconds, got {linger!r}.", field="linger"
            )
        self.conn_id = conn_id
        self._adapter = adapter
        self._shared = shared
        self._linger = linger
        self._options = options
        self._instance: A | None = None
        self._key: str | None = None

    def __getattr__(self, name: str) -> Any:
        # Only reached for names Opening lacks: most likely an adapter method called on open(...)
        # itself, without the async with that opens the adapter.
        if name.startswith("_"):
            raise AttributeError(name)
        raise _NotOpened(
            f"{name!r} is not available on hookbridge.open(...) itself, which is not the adapter "
            f"yet: write `async with hookbridge.open({self.conn_id!r}) as api:` and then "
            f"`api.{name}(...)`.",
            argument=name,
        )

    async def _adapter_class(self) -> type[A]:
        if isinstance(self._adapter, type):
            return self._adapter
        if isinstance(self._adapter, str):
            return _registry.by_name(self._adapter)  # type: ignore[return-value]
        conn = await get_connection(self.conn_id)
        conn_type = getattr(conn, "conn_type", None)
        if not conn_type:
            raise ConfigurationError(
                "the connection has no conn_type, so no adapter can be chosen: set its conn_type "
                "or pass adapter= explicitly.",
                conn_id=self.conn_id,
                field="conn_type",
            )
        return _registry.by_conn_type(conn_type, conn_id=self.conn_id)  # type: ignore[return-value]

    async def __aenter__(self) -> A:
        if self._instance is not None:
            raise UsageError("this open() was already entered; call open() again.")
        cls = await self._adapter_class()
        candidate = cls(self.conn_id, **self._options)
        if not self._shared:
            self._instance = candidate
            return await candidate.__aenter__()
        return await self._lease(candidate)

    async def _lease(self, candidate: A) -> A:
        table = _shared_table()
        await _close_expired(table)
        key = json.dumps([type(candidate).__qualname__, candidate.spec()], sort_keys=True)
        entry = table.get(key)
        if entry is None:
            entry = _SharedEntry(
                adapter=candidate, leases=1, ready=anyio.Event(), linger=self._linger
            )
            table[key] = entry
            try:
                await candidate.__aenter__()
            except BaseException as exc:
                entry.error = exc
                del table[key]
                raise
            finally:
                entry.ready.set()
        else:
            entry.leases += 1
            entry.idle_since = None
            entry.linger = max(entry.linger, self._linger)
            await entry.ready.wait()
            if entry.error is not None:
                entry.leases -= 1
                raise ConfigurationError(
                    f"the shared adapter failed to open: {entry.error}", conn_id=self.conn_id
                ) from entry.error
        self._key = key
        self._instance = entry.adapter  # type: ignore[assignment]
        return entry.adapter  # type: ignore[return-value]

    async def __aexit__(self, *exc_info: Any) -> None:
        instance, self._instance = self._instance, None
        if instance is None:
            return
        if not self._shared:
            await instance.aclose()
            return
        table = _shared_table()
        entry = table.get(self._key or "")
        if entry is None or entry.adapter is not instance:
            return  # closed already by aclose_shared()
        entry.leases -= 1
        if entry.leases == 0:
            entry.idle_since = anyio.current_time()
        await _close_expired(table)


class _NotOpened(UsageError, AttributeError):
    """An adapter method was looked up on an Opening (``async with`` is missing)."""


@overload
def open(
    conn_id: str,
    *,
    adapter: type[A],
    shared: bool = False,
    linger: float = 60.0,
    **options: Any,
) -> Opening[A]: ...


@overload
def open(
    conn_id: str,
    *,
    adapter: str | None = None,
    shared: bool = False,
    linger: float = 60.0,
    **options: Any,
) -> Opening[Any]: ...


def open(
    conn_id: str,
    *,
    adapter: type[A] | str | None = None,
    shared: bool = False,
    linger: float = 60.0,
    **options: Any,
) -> Opening[Any]:
    """Open the adapter for an Airflow connection: ``async with hookbridge.open("api") as api``.

    The adapter is chosen by the connection's ``conn_type`` through the registry, or by
    ``adapter=`` (a registry name or a class). ``options`` go to the adapter's constructor.
    With ``adapter=SomeAdapter`` (the class) type checkers know the adapter's type; so they do
    with ``SomeAdapter.for_connection(conn_id, ...)``.
    ``shared=True`` (for triggers) leases one adapter per (event loop, spec), ref-counted and
    closed ``linger`` seconds after its last lease ends; the sweep happens on the next shared
    open or release in that loop, and :func:`aclose_shared` closes them all.
    """
    return Opening(conn_id, adapter, shared=shared, linger=linger, options=options)


def open_spec(spec: dict[str, Any], *, shared: bool = True, linger: float = 60.0) -> Opening[Any]:
    """Re-open an adapter from its :meth:`Adapter.spec` (what a trigger serialized)."""
    try:
        conn_id = spec["conn_id"]
        name = spec["adapter"]
        options = dict(spec.get("options", {}))
    except (KeyError, TypeError) as exc:
        raise ConfigurationError(
            "not an adapter spec: expected {'adapter': ..., 'conn_id': ..., 'options': {...}} "
            "as returned by Adapter.spec().",
            field="spec",
        ) from exc
    if "limits" in options:
        options["limits"] = Limits.from_spec(options["limits"])
    if "retry" in options:
        options["retry"] = Retry.from_spec(options["retry"])
    return Opening(conn_id, name, shared=shared, linger=linger, options=options)
