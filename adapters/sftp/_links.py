"""Shared SSH connections for the SFTP adapter: many concurrent requests on each, pooled by Pool.

Why not one operation per checked-out connection (what ``SFTPClientPool`` does, and what a plain
:class:`~hookbridge.Pool` checkout gives): an SFTP channel multiplexes requests by id, so one SSH
connection carries dozens of requests at once, and the round trip, not the connection, is what
limits small-file throughput. Four connections used one request at a time leave them idle most
of the time.

How :class:`~hookbridge.Pool` is used: it owns the lifecycle of every connection (create,
dispose, health check on reuse, idle timeout, max lifetime, discard of broken ones, statistics);
this module shares the connections it hands out. A connection (a :class:`Link`) is checked out of
the pool when it gets its first operation and stays checked out, shared by up to
``capacity`` concurrent request slots, until its last operation ends; then it goes back to the
pool's idle stack (or is disposed, when it broke or outlived ``max_lifetime``). The pool's
exclusive checkout is therefore per link-in-use, not per operation.

Each operation asks for ``want`` request slots (1 for a plain request, up to ``max_requests`` for a
parallel block transfer) and gets at least one, on the least-loaded live link. While a link is
busy and fewer than ``max_connections`` exist, the next operation opens another one, so a burst
spreads over all connections. When every link is full the operation queues, first come first
served. Every decision is synchronous (no ``await`` between looking and booking), as in
:class:`~hookbridge.Pool`, so no lock is needed on one event loop, and a task cancelled anywhere
gives back exactly what it holds.

A transport failure marks its link broken: no new operation is put on it, the operations already
on it fail or finish, and the last one out hands it back to the pool as broken, which disposes of
it. A cancelled operation does not break its link: asyncssh drops the late answers of requests
whose waiter is gone.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import anyio

from hookbridge import Pool, PoolClosed, PoolStatistics, TransportError

__all__ = ["Grant", "Link", "LinkStatistics", "Links"]

logger = logging.getLogger("hookbridge.sftp")

#: After opening a spare connection failed, stay on the open ones this long before trying again.
SPREAD_BACKOFF = 30.0


class _Discard(Exception):
    """Handed to the pool lease on exit to say: this link is broken, dispose of it."""


def _is_broken(exc: BaseException) -> bool:
    return isinstance(exc, (_Discard, TransportError))


def _close_now(link: Link) -> None:
    """Start closing a link's SFTP channel and SSH connection; never raises."""
    try:
        link.sftp.exit()
    except Exception:  # the channel may already be gone with its connection
        logger.debug("SFTP channel of SSH connection #%d already closed", link.number)
    link.ssh.close()


class Link:
    """One SSH connection and its started SFTP client, shared by concurrent operations."""

    __slots__ = ("born", "broken", "lease", "load", "number", "sftp", "ssh")

    def __init__(self, ssh: Any, sftp: Any, number: int, born: float) -> None:
        self.ssh = ssh
        self.sftp = sftp
        self.number = number
        self.born = born
        self.load = 0  # request slots booked by running operations
        self.broken = False
        self.lease: AbstractAsyncContextManager[Link] | None = None

    @property
    def usable(self) -> bool:
        return not self.broken and not self.ssh.is_closed()

    def __repr__(self) -> str:
        state = "broken" if self.broken else "ok"
        return f"<Link #{self.number} load={self.load} {state}>"


class Grant:
    """What an operation holds: ``slots`` request slots on ``link``. Set ``broken`` on a fault.

    It keeps its :class:`Links`, so it can be given back even after the adapter let go of them.
    """

    __slots__ = ("broken", "link", "owner", "released", "slots")

    def __init__(self, owner: Links, link: Link, slots: int) -> None:
        self.owner = owner
        self.link = link
        self.slots = slots
        self.broken = False
        self.released = False

    @property
    def sftp(self) -> Any:
        return self.link.sftp

    async def release(self) -> None:
        await self.owner.release(self)

    def shrink(self, slots: int) -> None:
        self.owner.shrink(self, slots)


class _Waiter:
    __slots__ = ("closed", "create", "event", "grant", "want")

    def __init__(self, want: int) -> None:
        self.want = want
        self.event = anyio.Event()
        self.grant: Grant | None = None  # slots on an existing link
        self.create = False  # a reserved connection slot: the waiter opens a link itself
        self.closed = False

    @property
    def granted(self) -> bool:
        return self.grant is not None or self.create or self.closed


@dataclass(frozen=True)
class LinkStatistics:
    """A snapshot of the shared connections.

    :ivar active: connections checked out of the pool and carrying operations
    :ivar load: request slots booked on them, in total
    :ivar capacity: request slots one connection carries at most
    :ivar opening: connections being opened or taken from the pool right now
    :ivar waiting: operations queued because every connection is full
    :ivar peak_load: the most request slots booked at once, over all connections, so far
    :ivar pool: the underlying pool's books (idle connections live there)
    """

    active: int
    load: int
    capacity: int
    opening: int
    waiting: int
    peak_load: int
    pool: PoolStatistics


class Links:
    """Up to ``max_connections`` shared links, each carrying up to ``capacity`` request slots."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[tuple[Any, Any]]],
        *,
        max_connections: int,
        capacity: int,
        idle_timeout: float | None,
        max_lifetime: float | None,
        name: str,
        dispose_timeout: float | None = None,
    ) -> None:
        self._connect = connect
        self._capacity = capacity
        self._max_lifetime = max_lifetime
        self._max_connections = max_connections
        self._pool: Pool[Link] = Pool(
            self._create,
            dispose=self._dispose,
            max_size=max_connections,
            health_check=self._healthy,
            idle_timeout=idle_timeout,
            max_lifetime=max_lifetime,
            is_broken=_is_broken,
            name=name,
        )
        if dispose_timeout is not None:
            self._pool.dispose_timeout = dispose_timeout
        self._active: list[Link] = []
        self._opening = 0
        self._waiters: deque[_Waiter] = deque()
        self._numbers = 0
        self._closed = False
        self._no_spread_until = -float("inf")
        self._booked = 0  # request slots booked over all links
        self._peak = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        await self._pool.__aenter__()

    async def aclose(self) -> None:
        """Fail the queued operations, close every connection, in use or idle."""
        if self._closed:
            return
        self._closed = True
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            waiter.closed = True
            waiter.event.set()
        active = list(self._active)
        for link in active:
            # Operations still running on it fail with a transport error and give it back to
            # the (closed) pool, which disposes of it again: dispose is idempotent.
            link.broken = True
            _close_now(link)
        with anyio.CancelScope(shield=True):
            for link in active:
                with anyio.move_on_after(self._pool.dispose_timeout):
                    await link.ssh.wait_closed()
            await self._pool.aclose()

    async def _create(self) -> Link:
        ssh, sftp = await self._connect()
        self._numbers += 1
        link = Link(ssh, sftp, self._numbers, anyio.current_time())
        logger.debug("%s: opened SSH connection #%d", self._pool.name, link.number)
        return link

    async def _dispose(self, link: Link) -> None:
        logger.debug("%s: closing SSH connection #%d", self._pool.name, link.number)
        _close_now(link)
        await link.ssh.wait_closed()

    async def _healthy(self, link: Link) -> bool:
        return link.usable

    # -- checkout --------------------------------------------------------------------------------

    async def checkout(self, want: int = 1) -> Grant:
        """Book between 1 and ``want`` request slots on the least-loaded usable link."""
        if self._closed:
            raise self._closed_error()
        want = max(1, min(want, self._capacity))
        link = self._least_loaded()
        if link is not None and (link.load == 0 or not self._may_open()):
            return self._book(link, want)
        if self._may_open():
            return await self._open_link(want)
        return await self._wait(want)

    async def release(self, grant: Grant) -> None:
        """Give the slots back; the link's last operation out returns it to the pool.

        The pool's books are updated before the first ``await``, so a cancelled caller still
        gives everything back; disposing of a broken link is shielded inside the pool.
        """
        if grant.released:
            return
        grant.released = True
        link = grant.link
        link.load -= grant.slots
        self._booked -= grant.slots
        if grant.broken and not link.broken:
            link.broken = True
            logger.debug("%s: SSH connection #%d broke", self._pool.name, link.number)
        self._dispatch()
        if link.load == 0 and link in self._active:
            self._active.remove(link)
            lease, link.lease = link.lease, None
            if lease is not None:
                if link.broken or link.ssh.is_closed():
                    discard = _Discard("broken SSH connection")
                    await lease.__aexit__(type(discard), discard, None)
                else:
                    await lease.__aexit__(None, None, None)
            self._dispatch()  # a connection slot is free for a waiter

    def shrink(self, grant: Grant, slots: int) -> None:
        """Keep only ``slots`` (>= 1) of a grant: a transfer needed fewer than it asked for."""
        slots = max(1, slots)
        if slots < grant.slots:
            grant.link.load -= grant.slots - slots
            self._booked -= grant.slots - slots
            grant.slots = slots
            self._dispatch()

    def statistics(self) -> LinkStatistics:
        return LinkStatistics(
            active=len(self._active),
            load=sum(link.load for link in self._active),
            capacity=self._capacity,
            opening=self._opening,
            waiting=len(self._waiters),
            peak_load=self._peak,
            pool=self._pool.statistics(),
        )

    # -- the synchronous decisions -----------------------------------------------------------------

    def _closed_error(self) -> PoolClosed:
        return PoolClosed(f"{self._pool.name}: the adapter was closed; no SFTP request can start")

    def _least_loaded(self) -> Link | None:
        best: Link | None = None
        # A link past max_lifetime takes no new operation: it drains, goes back to the pool,
        # and the pool retires it.
        too_old = (
            -float("inf")
            if self._max_lifetime is None
            else anyio.current_time() - self._max_lifetime
        )
        for link in self._active:
            if link.born <= too_old:
                continue
            if (
                link.load < self._capacity
                and link.usable
                and (best is None or link.load < best.load)
            ):
                best = link
        return best

    def _may_open(self) -> bool:
        if len(self._active) + self._opening >= self._max_connections:
            return False
        # Opening a spare connection failed a moment ago: stay on the ones that work.
        return bool(self._active == [] or anyio.current_time() >= self._no_spread_until)

    def _book(self, link: Link, want: int) -> Grant:
        slots = min(want, self._capacity - link.load)
        link.load += slots
        self._booked += slots
        if self._booked > self._peak:
            self._peak = self._booked
        return Grant(self, link, slots)

    def _dispatch(self) -> None:
        """Serve the queue in order while a link has room or a connection may be opened."""
        while self._waiters and not self._closed:
            waiter = self._waiters[0]
            link = self._least_loaded()
            if link is not None:
                waiter.grant = self._book(link, waiter.want)
            elif self._may_open():
                waiter.create = True
                self._opening += 1
            else:
                return
            self._waiters.popleft()
            waiter.event.set()

    # -- the awaiting parts ----------------------------------------------------------------------

    async def _wait(self, want: int) -> Grant:
        waiter = _Waiter(want)
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.grant is not None:
                await self.release(waiter.grant)
            elif waiter.create:
                self._opening -= 1
                self._dispatch()
            else:
                self._waiters.remove(waiter)
            raise
        if waiter.closed:
            raise self._closed_error()
        if waiter.grant is not None:
            return waiter.grant
        return await self._open_link(want, reserved=True)

    async def _open_link(self, want: int, *, reserved: bool = False) -> Grant:
        if not reserved:
            self._opening += 1
        lease = self._pool.acquire()
        try:
            link = await lease.__aenter__()
        except BaseException as exc:
            self._opening -= 1
            self._dispatch()
            spare = self._least_loaded()
            if isinstance(exc, Exception) and spare is not None and not self._closed:
                # Only a spare connection failed (a server limit on sessions, say): carry on
                # with the ones already open.
                logger.warning(
                    "%s: could not open another SSH connection (%s: %s); using the %d open",
                    self._pool.name,
                    type(exc).__name__,
                    exc,
                    len(self._active),
                )
                self._no_spread_until = anyio.current_time() + SPREAD_BACKOFF
                return self._book(spare, want)
            raise
        self._opening -= 1
        link.lease = lease
        link.broken = False
        if self._closed:
            with anyio.CancelScope(shield=True):
                await lease.__aexit__(None, None, None)
            raise self._closed_error()
        self._active.append(link)
        grant = self._book(link, want)
        self._dispatch()
        return grant
