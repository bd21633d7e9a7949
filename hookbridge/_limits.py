"""Rate and concurrency limits with a shared cool-down: what every adapter call passes through.

Written here rather than taken from a library: aiolimiter and pyrate-limiter run on asyncio only
(the core must also run on trio), and aiolimiter's leaky bucket starts empty, so a fresh limiter
lets a whole period's worth of calls through at once (1,000 requests in the first instant of a
"1000/s" limit). This one is a GCRA (generic cell rate algorithm): one number, the theoretical
arrival time (TAT) of the next token, no background task, and never more than ``burst`` at once.
"""

from __future__ import annotations

import math
import weakref
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ._checks import is_count, is_number
from ._clock import running_loop as _running_loop
from ._errors import ConfigurationError
from ._rate import RATE_FORMS, Rate

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._shared_limits import SharedLimit

__all__ = ["Limits", "LimitsStatistics", "Rate"]

_NEVER = -math.inf


@dataclass(frozen=True)
class LimitsStatistics:
    """A snapshot of one :class:`Limits`; tests and the demo read it."""

    #: Tokens handed out so far (one per ``acquire()`` unless it asked for more).
    granted: int
    #: Tasks waiting right now: for a rate slot, for the cool-down, or for a concurrency slot.
    waiting: int
    #: Tasks holding a concurrency slot (``slot()`` or ``async with limits()``) right now.
    in_flight: int
    #: Calls to :meth:`Limits.throttled` so far.
    throttles: int
    #: Seconds until the shared cool-down ends (0.0 when none, or when read outside a loop).
    cooldown_remaining: float
    #: Where grants come from: "local" (this process), "shared" (Redis), "fail_closed" (Redis is
    #: unreachable: callers wait for it) or "fallback_local" (Redis is unreachable: a local share).
    mode: str = "local"


class _Waiter:
    """One reservation that has to wait for its slot."""

    __slots__ = ("at", "cancelled", "end", "event", "tokens")

    def __init__(self, at: float, end: float, tokens: int) -> None:
        # ``at`` (the slot) and ``end`` (the TAT after it) are minus ``Limits._shift`` at
        # reservation: adding the current shift gives them after every cool-down since.
        self.at = at
        self.end = end
        self.tokens = tokens
        self.cancelled = False
        self.event: anyio.Event | None = None


class _SlotWaiter:
    """One task waiting for a concurrency slot."""

    __slots__ = ("cancelled", "event", "granted")

    def __init__(self, event: anyio.Event) -> None:
        self.event = event
        self.granted = False
        self.cancelled = False


def _no_clock() -> float:
    # Placeholder until the first call inside an event loop resolves the backend's clock.
    raise RuntimeError("clock not resolved yet")


def _no_loop() -> object:
    return None


def _reference(token: object) -> Callable[[], object]:
    # Weak, so that a Limits kept between runs does not keep a closed event loop alive.
    try:
        return weakref.ref(token)
    except TypeError:  # pragma: no cover - every backend's token takes weak references today
        return lambda: token


class Limits:
    """A rate limit, a concurrency limit and a shared cool-down for one remote API.

    ``rate`` (``"100/s"`` or a :class:`Rate`) with ``burst`` (default 1) is enforced with GCRA:
    in any window of ``t`` seconds at most ``burst + rate * t`` tokens are granted, from the very
    first call on. Grants are reservations made in call order, so callers are served first come,
    first served, whatever they ask for. ``max_concurrency`` bounds the tasks inside
    ``async with limits():``. :meth:`throttled` (the server said "slow down") makes every caller
    wait out a shared cool-down. ``Limits()`` limits nothing and costs next to nothing.

    Nothing here is bound to an event loop: one object may serve successive event loops (even of
    different backends), one loop at a time.

    ``shared=SharedLimit(key=..., redis_url=...)`` (or a dict of its fields) shares the rate and
    the cool-down with every process using that key, through Redis (``hookbridge._shared_limits``).
    """

    __slots__ = (
        "_admission",
        "_burst",
        "_clock",
        "_cooldown_until",
        "_granted",
        "_in_flight",
        "_interval",
        "_loop",
        "_max_concurrency",
        "_name",
        "_queue",
        "_rate",
        "_settled",
        "_shift",
        "_slot_cm",
        "_slot_queue",
        "_slot_waiting",
        "_span",
        "_tat",
        "_tau",
        "_throttles",
        "_waiting",
    )

    def __new__(cls, *args: Any, shared: Any = None, **kwargs: Any) -> Limits:
        # shared=... (a rate shared by every process through Redis) makes a SharedLimits, which
        # has this class's API: callers, the adapter and amap need not know which they hold.
        if shared is not None:
            from ._shared_limits import SharedLimits

            if cls is Limits:
                return object.__new__(SharedLimits)
            if not issubclass(cls, SharedLimits):
                raise ConfigurationError(
                    f"shared= needs Limits itself (which then shares through Redis), not the "
                    f"subclass {cls.__name__}.",
                    field="shared",
                )
        return object.__new__(cls)

    def __init__(
        self,
        *,
        rate: str | Rate | None = None,
        burst: int | None = None,
        max_concurrency: int | None = None,
        name: str | None = None,
        shared: SharedLimit | Mapping[str, Any] | None = None,
    ) -> None:
        # ``shared`` is read by SharedLimits.__init__ (see __new__).
        if rate is None or isinstance(rate, Rate):
            self._rate = rate
        elif isinstance(rate, str):
            self._rate = Rate.parse(rate)
        else:
            raise ConfigurationError(
                f"rate must be text such as '100/s' or a Rate, got {rate!r} "
                f"({type(rate).__name__}); {RATE_FORMS}.",
                field="rate",
            )
        if burst is not None:
            if not is_count(burst):
                raise ConfigurationError(
                    f"burst must be a whole number >= 1 (tokens granted at once), got {burst!r}.",
                    field="burst",
                )
            if self._rate is None:
                raise ConfigurationError(
                    f"burst={burst} has no effect without a rate; add rate='100/s' (for example) "
                    "or drop burst.",
                    field="burst",
                )
        if max_concurrency is not None and not is_count(max_concurrency):
            raise ConfigurationError(
                f"max_concurrency must be a whole number >= 1 or None (no limit), got "
                f"{max_concurrency!r}.",
                field="max_concurrency",
            )
        if name is not None and not isinstance(name, str):
            raise ConfigurationError(f"name must be text, got {name!r}.", field="name")
        self._burst = burst if burst is not None else 1
        self._max_concurrency = max_concurrency
        self._name = name
        # The GCRA constants: T (interval), burst * T (span) and the tolerance (burst - 1) * T.
        self._interval: float | None = self._rate.interval if self._rate is not None else None
        self._span = (self._interval or 0.0) * self._burst
        self._tau = self._span - (self._interval or 0.0)
        self._tat = _NEVER
        # The TAT when the queue last went from empty to not: everything before it was granted.
        # If every queued reservation is cancelled, the TAT returns there.
        self._settled = _NEVER
        self._shift = 0.0
        self._cooldown_until = _NEVER
        self._queue: deque[_Waiter] = deque()
        self._slot_queue: deque[_SlotWaiter] = deque()
        self._granted = self._waiting = self._slot_waiting = self._in_flight = 0
        self._throttles = 0
        self._clock: Callable[[], float] = _no_clock
        self._loop: Callable[[], object] = _no_loop
        self._slot_cm = _Slot(self)
        self._admission = _Admission(self)

    @classmethod
    def unlimited(cls, *, name: str | None = None) -> Limits:
        """Limits that never make a caller wait, except for a cool-down after :meth:`throttled`."""
        return cls(name=name)

    # -- configuration ---------------------------------------------------------------------

    @property
    def rate(self) -> Rate | None:
        """The rate, or None when calls are not rate limited."""
        return self._rate

    @property
    def burst(self) -> int:
        """Tokens that may be granted at once (1 when there is no rate)."""
        return self._burst

    @property
    def max_concurrency(self) -> int | None:
        """The most callers inside ``slot()`` at once, or None."""
        return self._max_concurrency

    @property
    def name(self) -> str | None:
        """A label for messages and statistics."""
        return self._name

    def __repr__(self) -> str:
        parts = []
        if self._rate is not None:
            parts += [f"rate={str(self._rate)!r}", f"burst={self._burst}"]
        if self._max_concurrency is not None:
            parts.append(f"max_concurrency={self._max_concurrency}")
        if self._name is not None:
            parts.append(f"name={self._name!r}")
        return f"Limits({', '.join(parts)})"

    def to_spec(self) -> dict[str, Any]:
        """The JSON-safe configuration (no state); :meth:`from_spec` rebuilds an equal one."""
        spec: dict[str, Any] = {}
        if self._rate is not None:
            spec["rate"] = str(self._rate)
            spec["burst"] = self._burst
        if self._max_concurrency is not None:
            spec["max_concurrency"] = self._max_concurrency
        if self._name is not None:
            spec["name"] = self._name
        return spec

    @classmethod
    def from_spec(cls, spec: Any) -> Limits:
        """Rebuild limits from :meth:`to_spec` output (for example a trigger's serialized spec)."""
        allowed = ("rate", "burst", "max_concurrency", "name", "shared")
        if not isinstance(spec, dict) or set(spec) - set(allowed):
            raise ConfigurationError(
                f"not a limits spec: expected a dict with keys among {', '.join(allowed)}, "
                f"as returned by Limits.to_spec(); got {spec!r}.",
                field="limits",
            )
        return cls(**spec)

    # -- rate ------------------------------------------------------------------------------

    async def acquire(self, tokens: int = 1) -> None:
        """Wait for the cool-down, if any, then for ``tokens`` tokens at the configured rate.

        Callers are served in call order. When no one is waiting and the rate allows it, this
        returns at once without yielding to the event loop. Cancelling a waiting caller gives its
        reservation back when no later caller reserved after it.
        """
        if tokens != 1:
            self._check_tokens(tokens)
        interval = self._interval
        if interval is None:
            if self._cooldown_until == _NEVER:
                self._granted += tokens
                return
            await self._wait_cooldown(tokens)
            return
        try:
            now = self._clock()
        except RuntimeError:
            now = self._sync_loop()
        tat = self._tat
        # GCRA: n tokens conform now if now >= TAT - (burst - n) * T. Waiters go first (FIFO).
        if (
            not self._queue
            and now >= self._cooldown_until
            and now >= tat - (self._tau if tokens == 1 else self._span - tokens * interval)
        ):
            self._tat = (tat if tat > now else now) + tokens * interval
            self._granted += tokens
            return
        await self._reserve_and_wait(tokens, interval)

    def _grant_now(self) -> bool:
        """acquire(1) when it would not wait, without a coroutine; False: call acquire()."""
        interval = self._interval
        if interval is None:
            if self._cooldown_until == _NEVER:
                self._granted += 1
                return True
            return False
        if self._queue:
            return False
        try:
            now = self._clock()
        except RuntimeError:
            return False
        tat = self._tat
        if now >= self._cooldown_until and now >= tat - self._tau:
            self._tat = (tat if tat > now else now) + interval
            self._granted += 1
            return True
        return False

    def _check_tokens(self, tokens: int) -> None:
        if not is_count(tokens):
            raise ConfigurationError(
                f"tokens must be a whole number >= 1, got {tokens!r}.", field="tokens"
            )
        if self._interval is not None and tokens > self._burst:
            raise ConfigurationError(
                f"tokens={tokens} is more than {self!r} can ever grant at once (burst="
                f"{self._burst}); raise burst to at least {tokens} or ask for fewer tokens.",
                field="tokens",
            )

    async def _reserve_and_wait(self, tokens: int, interval: float) -> None:
        now = self._sync_loop()  # the fast path's clock may be another loop's: check
        queue = self._queue
        cooldown = self._cooldown_until
        start = now if now > cooldown else cooldown
        tat = self._tat
        end = (tat if tat > start else start) + tokens * interval
        at = end - self._span
        if at < start:
            at = start
        if at <= now and not queue:  # state from another loop was just dropped
            self._tat = end
            self._granted += tokens
            return
        # The reservation is made here, before the first await: later callers queue behind it.
        if not queue:
            self._settled = tat
        self._tat = end
        waiter = _Waiter(at - self._shift, end - self._shift, tokens)
        queue.append(waiter)
        self._waiting += 1
        slept_until = None
        try:
            while True:
                target = waiter.at + self._shift
                if self._cooldown_until > target:
                    target = self._cooldown_until
                # Once a sleep until this very target has ended, the slot has come: event loops
                # fire timers up to their clock resolution early (asyncio does), and looking at
                # the clock again would sleep in vain. A cool-down moves the target: sleep again.
                if target != slept_until and self._now() < target:
                    await anyio.sleep_until(target)
                    slept_until = target
                elif self._head() is waiter:
                    break
                else:
                    # Our slot has come but an earlier caller's (same or earlier time) has not
                    # been served yet: it hands over when it is (see _wake_head).
                    waiter.event = anyio.Event()
                    await waiter.event.wait()
        except BaseException:
            waiter.cancelled = True
            self._waiting -= 1
            self._give_back()
            self._wake_head()
            raise
        queue.popleft()
        self._settled = waiter.end + self._shift
        self._waiting -= 1
        self._granted += tokens
        self._wake_head()

    def _head(self) -> _Waiter | None:
        queue = self._queue
        while queue and queue[0].cancelled:
            queue.popleft()
        return queue[0] if queue else None

    def _wake_head(self) -> None:
        head = self._head()
        if head is not None and head.event is not None:
            head.event.set()

    def _give_back(self) -> None:
        # Only the newest reservations can be returned: rolling the TAT back past a live one
        # would let a newcomer be scheduled on top of it. Cancelled ones in the middle stay as
        # gaps (the rate is kept; a little throughput is lost) until no live one is left.
        queue = self._queue
        interval = self._interval or 0.0
        while queue and queue[-1].cancelled:
            self._tat -= queue.pop().tokens * interval
        if self._head() is None and self._settled < self._tat:
            self._tat = self._settled

    async def _wait_cooldown(self, tokens: int) -> None:
        self._sync_loop()
        self._waiting += 1
        slept_until = None
        try:
            while True:
                now = self._now()
                until = self._cooldown_until
                if until == slept_until or now >= until:  # see _reserve_and_wait
                    break
                await anyio.sleep_until(until)
                slept_until = until
        finally:
            self._waiting -= 1
        # Let the fast path skip the clock again.
        self._cooldown_until = _NEVER
        self._granted += tokens

    # -- clock -----------------------------------------------------------------------------

    def _now(self) -> float:
        try:
            return self._clock()
        except RuntimeError:
            return self._sync_loop()

    def _sync_loop(self) -> float:
        """Resolve the running loop's clock; drop state kept from another loop. Returns now.

        anyio.current_time() asks sniffio which library runs on every call (~1 µs); the
        backend's own clock, cached here, reads the running loop directly, and raises
        RuntimeError as soon as another backend runs. Each loop has its own clock (virtual ones
        in tests start anywhere), so a TAT or a cool-down read on another loop means nothing
        here: every path that may wait comes through here first and forgets them. Waiters
        still queued then belong to a loop that is gone: they can never be served.
        """
        clock, token = _running_loop()
        self._clock = clock
        if self._loop() is not token:
            if self._loop is not _no_loop:
                self._tat = self._settled = self._cooldown_until = _NEVER
                self._shift = 0.0
                self._queue.clear()
            self._loop = _reference(token)
        return clock()

    # -- cool-down -------------------------------------------------------------------------

    def throttled(self, retry_after: float) -> None:
        """The remote side said "slow down for ``retry_after`` seconds": everyone waits.

        Every caller of :meth:`acquire`, including those already waiting, waits until the
        cool-down ends. Then grants resume at the configured rate, no more than ``burst`` at
        once: reservations queued before or during the cool-down move back together, keeping
        their spacing.
        """
        if not is_number(retry_after) or not 0 <= retry_after < math.inf:
            raise ConfigurationError(
                f"retry_after must be a finite number of seconds >= 0, got {retry_after!r}.",
                field="retry_after",
            )
        now = self._sync_loop()
        self._throttles += 1
        until = now + retry_after
        if until <= self._cooldown_until:
            return
        self._cooldown_until = until
        head = self._head()
        if head is not None:
            # Move the whole queue (and the TAT) so that its head lands on the end of the
            # cool-down: the spacing between reservations, hence the rate, is kept.
            first = head.at + self._shift
            if first < until:
                self._shift += until - first
                self._tat += until - first

    async def share_cooldown(self) -> None:
        """Tell the other processes of this limit about a cool-down (a no-op for a local one).

        The call engine awaits it after every throttled answer; a limit shared through Redis
        writes the cool-down there at once instead of with its next grant.
        """

    # -- concurrency -----------------------------------------------------------------------

    def slot(self) -> AbstractAsyncContextManager[None]:
        """A concurrency slot: ``async with limits.slot(): ...`` (FIFO; no-op without a cap)."""
        return self._slot_cm

    def __call__(self) -> AbstractAsyncContextManager[None]:
        """A concurrency slot, then a rate token: ``async with limits(): await call()``."""
        return self._admission

    def try_admit(self) -> bool:
        """Take a slot and a token when neither needs a wait; False (nothing taken) otherwise.

        The synchronous half of ``async with limits():`` for callers on a hot path (the adapter
        SDK's call engine), who then leave with :meth:`release`. Callers that get False wait
        with ``async with limits():`` instead.
        """
        cap = self._max_concurrency
        if cap is not None and (self._in_flight >= cap or self._slot_queue):
            return False
        self._in_flight += 1
        if self._grant_now():
            return True
        self._in_flight -= 1  # nobody queued for a slot (checked above): nothing to hand over
        return False

    async def _enter_slot(self) -> None:
        cap = self._max_concurrency
        if cap is None or (self._in_flight < cap and not self._slot_queue):
            self._in_flight += 1
            return
        # Our own FIFO hand-over rather than an anyio.Semaphore: anyio's primitives belong to the
        # backend that created them, and this object may outlive one event loop.
        waiter = _SlotWaiter(anyio.Event())
        self._slot_queue.append(waiter)
        self._slot_waiting += 1
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self.release()  # handed over just as we were cancelled: pass it on
            else:
                waiter.cancelled = True
            raise
        finally:
            self._slot_waiting -= 1

    def release(self) -> None:
        """Leave the slot taken by :meth:`try_admit` (or ``async with limits():``)."""
        queue = self._slot_queue
        while queue:
            waiter = queue.popleft()
            if not waiter.cancelled:
                # Hand the slot over directly (in_flight stays) so no newcomer can take it.
                waiter.granted = True
                waiter.event.set()
                return
        self._in_flight -= 1

    # -- statistics ------------------------------------------------------------------------

    def statistics(self) -> LimitsStatistics:
        """What this limit has done so far and who is waiting on it now."""
        remaining = 0.0
        if self._cooldown_until != _NEVER:
            try:
                now = self._sync_loop()
            except RuntimeError:  # no event loop: nothing is waiting either
                now = math.inf
            remaining = max(0.0, self._cooldown_until - now)
        return LimitsStatistics(
            granted=self._granted,
            waiting=self._waiting + self._slot_waiting,
            in_flight=self._in_flight,
            throttles=self._throttles,
            cooldown_remaining=remaining,
        )


class _Slot(AbstractAsyncContextManager[None]):
    __slots__ = ("_limits",)

    def __init__(self, limits: Limits) -> None:
        self._limits = limits

    async def __aenter__(self) -> None:
        await self._limits._enter_slot()

    async def __aexit__(self, *exc_info: object) -> None:
        self._limits.release()


class _Admission(AbstractAsyncContextManager[None]):
    # A plain object rather than @asynccontextmanager: it is entered on every call and is
    # several times cheaper; it keeps no per-use state, so one instance serves every caller.
    __slots__ = ("_limits",)

    def __init__(self, limits: Limits) -> None:
        self._limits = limits

    async def __aenter__(self) -> None:
        limits = self._limits
        # The uncontended case inline, without creating a coroutine for the slot or the token.
        if limits.try_admit():
            return
        await limits._enter_slot()
        if limits._grant_now():
            return
        try:
            await limits.acquire()
        except BaseException:
            limits.release()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._limits.release()
