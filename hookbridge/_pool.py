"""A generic async resource pool: bounded, LIFO reuse, FIFO waiters, never leaks a resource.

Written here rather than taken from a library because none fits: httpcore's pool is tied to HTTP
connections, and anyio offers only the primitives. The pool is a small synchronous state machine in
the style of httpcore's: every decision (take an idle resource, reserve a slot, hand a returned
resource to a waiter) is made in plain code with no ``await`` in between, so no lock is needed on
one event loop, and every ``await`` (create, health check, dispose) happens with the pool's books
already balanced. A task cancelled at any ``await`` gives back exactly what it holds.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import anyio
from anyio.abc import AsyncResource

from ._checks import is_count, is_number
from ._errors import ConfigurationError, PoolClosed, PoolTimeout, UsageError

__all__ = ["Pool", "PoolStatistics"]

T = TypeVar("T")

logger = logging.getLogger("hookbridge.pool")


def _never_broken(exc: BaseException) -> bool:
    return False


@dataclass(frozen=True)
class PoolStatistics:
    """A snapshot of a :class:`Pool`'s books.

    :ivar name: the pool's name
    :ivar max_size: most resources that may exist at once
    :ivar size: ``idle + in_use`` plus the creations under way
    :ivar idle: resources waiting in the pool for a user
    :ivar in_use: resources checked out (including one being health-checked or handed to a waiter)
    :ivar waiting: tasks queued for a resource because the pool is at ``max_size``
    :ivar created: resources created since the pool was built
    :ivar disposed: resources taken out of the pool for good (their ``dispose`` was started);
        ``created - disposed == idle + in_use`` always holds
    :ivar discarded: of the disposed, those thrown away as faulty: ``is_broken`` said so for the
        error their user raised, or their health check failed
    """

    name: str
    max_size: int
    size: int
    idle: int
    in_use: int
    waiting: int
    created: int
    disposed: int
    discarded: int


class _Entry(Generic[T]):
    """One resource the pool owns, with the times that decide when it retires."""

    __slots__ = ("created_at", "resource", "returned_at")

    def __init__(self, resource: T, now: float) -> None:
        self.resource = resource
        self.created_at = now
        self.returned_at = now


class _Waiter(Generic[T]):
    """A task queued for a resource. Whoever wakes it first sets exactly one of the grants."""

    __slots__ = ("closed", "entry", "event", "slot")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.entry: _Entry[T] | None = None  # a returned resource, handed over directly
        self.slot = False  # a freed slot, already reserved: the waiter creates a resource in it
        self.closed = False  # the pool closed while it waited

    @property
    def granted(self) -> bool:
        return self.entry is not None or self.slot or self.closed


class Pool(AsyncResource, Generic[T]):
    """A bounded pool of resources of type ``T``, made by ``create`` and destroyed by ``dispose``.

    Open it with ``async with Pool(...) as pool`` and check a resource out with
    ``async with pool.acquire() as resource``. Checkout reuses the most recently returned idle
    resource first (LIFO, so surplus ones age out), dropping any that outlived ``idle_timeout`` or
    ``max_lifetime`` and any that fail ``health_check``; otherwise it creates one if the pool is
    below ``max_size``, or queues (first come, first served) for up to ``acquire_timeout`` seconds.
    ``acquire_timeout`` bounds only the queueing: ``create`` is expected to bound itself.

    When the block exits with an error, ``is_broken(error)`` decides whether the resource is
    thrown away or returned; a cancellation is passed to it too, and by default every resource is
    kept. A returned resource goes straight to the longest-waiting task, if any; it is not
    health-checked again, since it was in use a moment ago.

    Disposal runs shielded from cancellation and bounded by :attr:`dispose_timeout`; an error it
    raises is logged on the ``hookbridge.pool`` logger and never replaces the caller's own.
    Expired idle resources are dropped at checkout or by :meth:`prune`: there is no background
    task. :meth:`aclose` disposes the idle resources and fails the queued tasks with
    :class:`~hookbridge.PoolClosed`; resources still checked out are disposed when returned.

    The pool belongs to one event loop and is not thread-safe.
    """

    #: Seconds one ``dispose`` call may take before the pool gives up on it and logs a warning.
    dispose_timeout: float = 10.0

    def __init__(
        self,
        create: Callable[[], Awaitable[T]],
        *,
        dispose: Callable[[T], Awaitable[None]],
        max_size: int = 10,
        health_check: Callable[[T], Awaitable[bool]] | None = None,
        idle_timeout: float | None = 300.0,
        max_lifetime: float | None = None,
        acquire_timeout: float | None = None,
        is_broken: Callable[[BaseException], bool] = _never_broken,
        name: str = "pool",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"must be a non-empty string, got {name!r}", field="name")
        for option, fn in (("create", create), ("dispose", dispose), ("is_broken", is_broken)):
            if not callable(fn):
                raise ConfigurationError(
                    f"pool {name!r}: must be callable, got {fn!r}", field=option
                )
        if health_check is not None and not callable(health_check):
            raise ConfigurationError(
                f"pool {name!r}: must be an async callable returning a bool, or None; "
                f"got {health_check!r}",
                field="health_check",
            )
        if not is_count(max_size):
            raise ConfigurationError(
                f"pool {name!r}: must be an integer >= 1, got {max_size!r}", field="max_size"
            )
        self._idle_timeout = _seconds(name, "idle_timeout", idle_timeout, allow_zero=False)
        self._max_lifetime = _seconds(name, "max_lifetime", max_lifetime, allow_zero=False)
        self._acquire_timeout = _seconds(name, "acquire_timeout", acquire_timeout, allow_zero=True)
        self._create = create
        self._dispose = dispose
        self._health_check = health_check
        self._is_broken = is_broken
        self._max_size = max_size
        self._name = name

        self._state: Literal["new", "open", "closed"] = "new"
        # Idle resources, most recently returned last: checkout pops from the end.
        self._idle: list[_Entry[T]] = []
        # Identity set: a resource can be given back only once.
        self._in_use: set[_Entry[T]] = set()
        self._creating = 0
        self._waiters: deque[_Waiter[T]] = deque()
        self._created = 0
        self._disposed = 0
        self._discarded = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def max_size(self) -> int:
        return self._max_size

    # -- the resource's life: open, close ------------------------------------------------------

    async def __aenter__(self) -> Pool[T]:
        if self._state == "closed":
            raise PoolClosed(
                f"pool {self._name!r} was closed and cannot be reopened: build a new Pool"
            )
        if self._state == "open":
            raise UsageError(
                f"pool {self._name!r} is already open: enter it with `async with` only once"
            )
        self._state = "open"
        return self

    async def aclose(self) -> None:
        """Close the pool: dispose the idle resources and fail every queued task.

        Resources still checked out are disposed when their users return them. Closing twice is
        harmless; a closed pool cannot be reopened.
        """
        if self._state == "closed":
            return
        self._state = "closed"
        idle, self._idle = self._idle, []
        self._disposed += len(idle)
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            waiter.closed = True
            waiter.event.set()
        await self._dispose_all(idle)

    # -- checkout --------------------------------------------------------------------------------

    def acquire(self) -> AbstractAsyncContextManager[T]:
        """Check a resource out for the duration of an ``async with`` block.

        Raises :class:`~hookbridge.PoolTimeout` when none became free within ``acquire_timeout``,
        :class:`~hookbridge.PoolClosed` when the pool is not open, and whatever ``create`` raises.
        """
        return _Lease(self)

    async def prune(self) -> int:
        """Dispose the idle resources past ``idle_timeout`` or ``max_lifetime``; return how many."""
        if self._state != "open":
            return 0
        expired = self._take_expired()
        await self._dispose_all(expired)
        return len(expired)

    def statistics(self) -> PoolStatistics:
        """Return a snapshot of the pool's books."""
        return PoolStatistics(
            name=self._name,
            max_size=self._max_size,
            size=self._size(),
            idle=len(self._idle),
            in_use=len(self._in_use),
            waiting=len(self._waiters),
            created=self._created,
            disposed=self._disposed,
            discarded=self._discarded,
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Pool {s.name!r} {self._state} size={s.size}/{s.max_size} idle={s.idle} "
            f"in_use={s.in_use} waiting={s.waiting} created={s.created} disposed={s.disposed} "
            f"discarded={s.discarded}>"
        )

    async def _checkout(self) -> _Entry[T]:
        while True:
            self._ensure_open()
            expired = self._take_expired()
            if expired:
                # The books changed while disposing: decide again from the start.
                await self._dispose_all(expired)
                continue
            if self._idle:
                entry = self._idle.pop()
                self._in_use.add(entry)
                if self._health_check is None or await self._passes_health_check(entry):
                    return entry
                continue
            if self._size() < self._max_size:
                self._creating += 1
                return await self._create_in_reserved_slot()
            waiter = await self._wait()
            if waiter.entry is not None:
                entry = waiter.entry
                if self._state == "open":
                    return entry
                await self._dispose_all(self._check_in(entry, broken=False))
                self._ensure_open()
            # A slot was granted and reserved for us (a closed pool is refused inside).
            return await self._create_in_reserved_slot()

    async def _wait(self) -> _Waiter[T]:
        waiter: _Waiter[T] = _Waiter()
        self._waiters.append(waiter)
        try:
            # move_on_after rather than fail_after: a grant that lands as the timeout fires is
            # used, not thrown back.
            with anyio.move_on_after(
                math.inf if self._acquire_timeout is None else self._acquire_timeout
            ):
                await waiter.event.wait()
        except BaseException:
            # Cancelled, possibly at the very moment a grant arrived: pass the grant on.
            if waiter.granted:
                await self._dispose_all(self._give_back(waiter))
            else:
                self._waiters.remove(waiter)
            raise
        if waiter.closed:
            raise self._closed_error()
        if not waiter.granted:
            self._waiters.remove(waiter)
            raise PoolTimeout(
                f"pool {self._name!r}: no resource became free within {self._acquire_timeout} s; "
                f"all {self._max_size} (max_size) are in use. Raise max_size or "
                "acquire_timeout, or hold each resource for less time."
            )
        return waiter

    async def _create_in_reserved_slot(self) -> _Entry[T]:
        if self._state != "open":
            self._creating -= 1
            self._grant_free_slots()
            raise self._closed_error()
        try:
            resource = await self._create()
        except BaseException:
            self._creating -= 1
            self._grant_free_slots()
            raise
        entry = _Entry(resource, anyio.current_time())
        self._creating -= 1
        self._created += 1
        self._in_use.add(entry)
        if self._state != "open":
            await self._dispose_all(self._check_in(entry, broken=False))
            raise self._closed_error()
        return entry

    async def _passes_health_check(self, entry: _Entry[T]) -> bool:
        assert self._health_check is not None
        try:
            healthy = await self._health_check(entry.resource)
        except Exception:
            logger.warning(
                "pool %r: health check raised; disposing the resource", self._name, exc_info=True
            )
            healthy = False
        except BaseException as exc:
            # Cancelled mid-check: the resource is in the same doubt as after a cancelled use.
            await self._dispose_all(self._check_in(entry, broken=self._judge(exc)))
            raise
        if healthy:
            if self._state == "open":
                return True
            await self._dispose_all(self._check_in(entry, broken=False))
            return False
        logger.debug("pool %r: a resource failed its health check; disposing it", self._name)
        await self._dispose_all(self._check_in(entry, broken=True))
        return False

    # -- the synchronous state machine: no await below this line until _dispose_all ----------

    def _size(self) -> int:
        return len(self._idle) + len(self._in_use) + self._creating

    def _ensure_open(self) -> None:
        if self._state == "new":
            raise PoolClosed(
                f"pool {self._name!r} is not open: open it with `async with pool:` before "
                "acquiring a resource"
            )
        if self._state == "closed":
            raise self._closed_error()

    def _closed_error(self) -> PoolClosed:
        return PoolClosed(
            f"pool {self._name!r} is closed: acquire resources only inside its `async with` block"
        )

    def _expired(self, entry: _Entry[T], now: float, *, idle: bool) -> bool:
        if self._max_lifetime is not None and now - entry.created_at >= self._max_lifetime:
            return True
        return (
            idle
            and self._idle_timeout is not None
            and now - entry.returned_at >= self._idle_timeout
        )

    def _take_expired(self) -> list[_Entry[T]]:
        now = anyio.current_time()
        expired = [entry for entry in self._idle if self._expired(entry, now, idle=True)]
        if expired:
            self._idle = [entry for entry in self._idle if not self._expired(entry, now, idle=True)]
            self._disposed += len(expired)
            self._grant_free_slots()
        return expired

    def _judge(self, exc: BaseException) -> bool:
        try:
            return bool(self._is_broken(exc))
        except Exception:
            logger.error(
                "pool %r: is_broken raised; discarding the resource to be safe",
                self._name,
                exc_info=True,
            )
            return True

    def _check_in(self, entry: _Entry[T], *, broken: bool) -> list[_Entry[T]]:
        """Take back a checked-out resource; return what must be disposed (it, or nothing)."""
        self._in_use.remove(entry)  # KeyError on a second return: a bug, never a double dispose
        now = anyio.current_time()
        if broken or self._state != "open" or self._expired(entry, now, idle=False):
            self._disposed += 1
            if broken:
                self._discarded += 1
            self._grant_free_slots()
            return [entry]
        entry.returned_at = now
        self._put_back(entry)
        return []

    def _put_back(self, entry: _Entry[T]) -> None:
        """Hand a healthy resource to the longest waiter, or put it on top of the idle stack."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.entry = entry
            self._in_use.add(entry)
            waiter.event.set()
        else:
            self._idle.append(entry)

    def _grant_free_slots(self) -> None:
        """Give each free slot to the longest waiter, reserving it so no newcomer can take it."""
        while self._waiters and self._state == "open" and self._size() < self._max_size:
            waiter = self._waiters.popleft()
            waiter.slot = True
            self._creating += 1
            waiter.event.set()

    def _give_back(self, waiter: _Waiter[T]) -> list[_Entry[T]]:
        """Undo a grant that reached a waiter too late to be used."""
        if waiter.entry is not None:
            entry, waiter.entry = waiter.entry, None
            return self._check_in(entry, broken=False)
        if waiter.slot:
            waiter.slot = False
            self._creating -= 1
            self._grant_free_slots()
        return []

    # -- I/O -------------------------------------------------------------------------------------

    async def _dispose_all(self, entries: Iterable[_Entry[T]]) -> None:
        entries = list(entries)
        if not entries:
            return
        # Shielded so a cancelled caller still destroys what it holds; bounded so a hung
        # dispose cannot hold the caller forever.
        with anyio.CancelScope(shield=True):
            if len(entries) == 1:
                await self._dispose_one(entries[0])
                return
            async with anyio.create_task_group() as tg:
                for entry in entries:
                    tg.start_soon(self._dispose_one, entry)

    async def _dispose_one(self, entry: _Entry[T]) -> None:
        with anyio.move_on_after(self.dispose_timeout) as scope:
            try:
                await self._dispose(entry.resource)
            except Exception:
                logger.warning(
                    "pool %r: disposing a resource failed; dropping it anyway",
                    self._name,
                    exc_info=True,
                )
        if scope.cancelled_caught:
            logger.warning(
                "pool %r: disposing a resource took more than %s s; dropping it anyway",
                self._name,
                self.dispose_timeout,
            )


class _Lease(AbstractAsyncContextManager[T]):
    """What ``Pool.acquire()`` returns: checks a resource out on enter, back in on exit."""

    __slots__ = ("_entry", "_pool", "_used")

    def __init__(self, pool: Pool[T]) -> None:
        self._pool = pool
        self._entry: _Entry[T] | None = None
        self._used = False

    async def __aenter__(self) -> T:
        if self._used:
            raise UsageError(
                "a pool lease can be entered only once: call pool.acquire() for each checkout"
            )
        self._used = True
        self._entry = await self._pool._checkout()
        return self._entry.resource

    async def __aexit__(self, _: object, exc: BaseException | None, __: object) -> None:
        entry, self._entry = self._entry, None
        if entry is None:
            return
        pool = self._pool
        broken = exc is not None and pool._judge(exc)
        await pool._dispose_all(pool._check_in(entry, broken=broken))


def _seconds(name: str, option: str, value: float | None, *, allow_zero: bool) -> float | None:
    if value is None:
        return None
    bound = ">= 0" if allow_zero else "> 0"
    if not is_number(value) or math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(
            f"pool {name!r}: must be a number of seconds {bound}, or None for no limit; "
            f"got {value!r}",
            field=option,
        )
    return float(value)
