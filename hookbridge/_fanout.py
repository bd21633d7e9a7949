"""Fan-out: run an async function over many items with bounded concurrency, streaming the results.

Written here rather than taken from aiometer: its ``amap`` takes a Sequence (a generator or a
pagination stream must be materialized first), starts a task per item (about twenty times the
cost per item of this module on a no-op call), and sizes its result stream to ``len(args)``, so
results pile up without bound behind a consumer that falls behind. hookbridge needs lazy, async
inputs, memory independent of the input's size, input-ordered output, and an account of every
failed item.

How it works: a producer task pulls items, each only within the *window* (at most
``2 * max_at_once`` items pulled and not yet delivered), and queues them for at most
``max_at_once`` worker tasks (started on demand); the workers put results where the receiving end
finds them, which hands them out (restoring input order when ``ordered``). So at most
``2 * max_at_once`` items are ever between being pulled from the input and being delivered: that
bounds the reordering memory behind a slow item, and when the consumer stops reading, nothing more
is pulled. The hand-offs are plain deques and dicts with one wake-up event per waiting task,
rather than anyio memory streams and semaphores: every item passes through them, and without
those the fan-out's own cost fell from about 1.4 to 0.9 µs per item
(``contrib/bench/amap_memory.py``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from inspect import isasyncgen
from typing import Any, Generic, Literal, Protocol, TypeVar, cast, overload

import anyio
from anyio.abc import ObjectReceiveStream, TaskGroup

from ._checks import is_count, is_number
from ._clock import running_loop
from ._errors import BatchError, ConfigurationError, FailedItem
from ._fanout_results import open_results

__all__ = ["Outcome", "Progress", "amap"]

T = TypeVar("T")
R = TypeVar("R")

#: Items that may be between "pulled from the input" and "delivered", per unit of max_at_once:
#: max_at_once running plus as many finished ones waiting behind a slow item (or for the consumer).
_WINDOW_FACTOR = 2
# Closing an async generator runs under a shield; one that hangs in its cleanup is abandoned.
_CLOSE_TIMEOUT = 5.0
_DEFAULT_LOGGER = "hookbridge.progress"

_Job = tuple[int, Any]


class _Limiter(Protocol):
    """What ``amap`` needs from ``hookbridge.Limits``: ``async with limits(): ...``."""

    def __call__(self) -> AbstractAsyncContextManager[None]: ...


# No slots: on Python 3.10 a frozen slotted generic dataclass fails when built as Outcome[A, B]().
@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    """What ``on_error="collect"`` yields for one input item: its value or its error."""

    index: int
    item: T
    value: R | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """True when the call returned (``value`` is its result), False when it raised."""
        return self.error is None

    def unwrap(self) -> R:
        """Return the value, or raise the error the call raised."""
        if self.error is not None:
            raise self.error
        return cast(R, self.value)


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of a running fan-out, passed to the ``progress`` callback after each item."""

    done: int  # calls that returned
    failed: int  # calls that raised
    in_flight: int  # items a worker holds right now (waiting for limits or running)
    started: int  # items a worker took, ever
    elapsed: float  # seconds since the fan-out started
    rate: float  # finished (done + failed) items per second, since the start


@overload
def amap(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_at_once: int,
    limits: _Limiter | None = None,
    ordered: bool = True,
    on_error: Literal["raise"] = "raise",
    progress: Callable[[Progress], object] | None = None,
    progress_interval: float = 10.0,
    logger: logging.Logger | None = None,
) -> AbstractAsyncContextManager[ObjectReceiveStream[R]]: ...


@overload
def amap(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_at_once: int,
    limits: _Limiter | None = None,
    ordered: bool = True,
    on_error: Literal["collect"],
    progress: Callable[[Progress], object] | None = None,
    progress_interval: float = 10.0,
    logger: logging.Logger | None = None,
) -> AbstractAsyncContextManager[ObjectReceiveStream[Outcome[T, R]]]: ...


@overload
def amap(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_at_once: int,
    limits: _Limiter | None = None,
    ordered: bool = True,
    on_error: Literal["raise", "collect"],
    progress: Callable[[Progress], object] | None = None,
    progress_interval: float = 10.0,
    logger: logging.Logger | None = None,
) -> AbstractAsyncContextManager[ObjectReceiveStream[R | Outcome[T, R]]]: ...


def amap(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_at_once: int,
    limits: _Limiter | None = None,
    ordered: bool = True,
    on_error: Literal["raise", "collect"] = "raise",
    progress: Callable[[Progress], object] | None = None,
    progress_interval: float = 10.0,
    logger: logging.Logger | None = None,
) -> AbstractAsyncContextManager[ObjectReceiveStream[Any]]:
    """Run ``fn(item)`` for every item, at most ``max_at_once`` at a time; stream the results.

    ::

        async with amap(fetch, ids, max_at_once=100) as results:
            async for value in results:
                ...

    ``items`` (an iterable or an async iterable) is read lazily, in a task the context manager
    owns: at most ``2 * max_at_once`` items are pulled ahead of the consumer, so memory does not
    depend on the input's size, and a consumer that stops reading stops the input too. An async
    generator given as ``items`` is closed by that task when the fan-out ends.

    ``ordered=True`` yields results in input order (a slow item holds back the ones after it, at
    most ``2 * max_at_once - 1`` of them); ``ordered=False`` yields them as they finish.

    ``on_error="raise"`` yields values. The first call that raises cancels the remaining work,
    and the next receive raises ``BatchError`` naming every item that failed (its ``not_run``
    counts the items pulled but not finished, or for a sized input all unfinished items); a
    consumer that leaves the block before that receive gets no error. ``on_error="collect"``
    yields an ``Outcome`` for every input item, whether its call returned or raised ``Exception``;
    cancellation and other ``BaseException`` always propagate. An error raised by ``items``
    itself ends the input: the items pulled before it are finished and delivered, then the next
    receive raises it unchanged.

    Leaving the ``async with`` block early cancels the remaining work. Each call runs inside
    ``async with limits():`` when ``limits`` is given. ``progress`` (a plain callable) receives a
    ``Progress`` after every finished call; ``logger`` (default ``hookbridge.progress``) gets an
    INFO line at most every ``progress_interval`` seconds, checked when a call finishes, and a
    summary when the fan-out ends (only when INFO is enabled when it starts).
    """
    if not is_count(max_at_once):
        raise ConfigurationError(
            f"max_at_once must be an integer >= 1 (how many calls may run at once), "
            f"got {max_at_once!r}",
            field="max_at_once",
        )
    if on_error not in ("raise", "collect"):
        raise ConfigurationError(
            f"on_error must be 'raise' (stop at the first failure) or 'collect' (an Outcome "
            f"for every item), got {on_error!r}",
            field="on_error",
        )
    if not callable(fn):
        raise ConfigurationError(
            f"fn must be an async callable taking one item, got {fn!r}", field="fn"
        )
    if not isinstance(items, (Iterable, AsyncIterable)):
        raise ConfigurationError(
            f"items must be an iterable or an async iterable, got {type(items).__name__}",
            field="items",
        )
    if limits is not None and not callable(limits):
        raise ConfigurationError(
            f"limits must be a hookbridge.Limits (used as `async with limits():`), got {limits!r}",
            field="limits",
        )
    if progress is not None and not callable(progress):
        raise ConfigurationError(
            f"progress must be a callable taking a Progress, got {progress!r}", field="progress"
        )
    if not is_number(progress_interval) or not progress_interval > 0:
        raise ConfigurationError(
            f"progress_interval must be a number of seconds > 0, got {progress_interval!r}",
            field="progress_interval",
        )
    run = _Run(
        fn,
        max_at_once=max_at_once,
        limits=limits,
        ordered=bool(ordered),
        collect=on_error == "collect",
        progress=progress,
        interval=float(progress_interval),
        logger=logger if logger is not None else logging.getLogger(_DEFAULT_LOGGER),
        total=_size(items),
    )
    return open_results(run, items)


def _size(items: object) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


class _Run:
    """The state of one fan-out, shared by the producer, the workers and the result stream."""

    # Set by work(), inside the event loop.
    tg: TaskGroup

    def __init__(
        self,
        fn: Callable[[Any], Awaitable[Any]],
        *,
        max_at_once: int,
        limits: _Limiter | None,
        ordered: bool,
        collect: bool,
        progress: Callable[[Progress], object] | None,
        interval: float,
        logger: logging.Logger,
        total: int | None,
    ) -> None:
        self.fn = fn
        self.max_at_once = max_at_once
        self.limits = limits
        self.ordered = ordered
        self.collect = collect
        self.progress = progress
        self.interval = interval
        self.logger = logger
        self.total = total
        self.window = _WINDOW_FACTOR * max_at_once
        # A producer stopped by a full window resumes once this much room is free, so that it
        # is not woken for every delivered result when the input outruns the calls.
        self.refill = max(1, max_at_once // 4)
        self.pulled = 0
        self.delivered = 0
        self.started = 0
        self.in_flight = 0
        self.done = 0
        self.failed = 0
        self.workers = 0
        # Set when the work must end (a failure in raise mode, the consumer gone): workers and
        # the producer check it between items, since an item that never waits has no checkpoint.
        self.stopped = False
        self.ended = False  # every worker and the producer have ended: no result comes any more
        self.failures: list[FailedItem] = []
        self.jobs: deque[_Job] = deque()
        self.sleepers: list[anyio.Event] = []  # idle workers, each waiting on its own event
        self.waking = 0  # workers woken or started that have not looked at the queue yet
        self.exhausted = False  # the producer has queued its last job
        self.producer: anyio.Event | None = None  # set when the window has room again
        # Finished results not delivered yet: by index when ordered (the receiver takes
        # next_index), in finishing order otherwise.
        self.finished: dict[int, Any] = {}
        self.finished_order: deque[Any] = deque()
        self.next_index = 0
        # Consumers waiting for a result, each on its own event: a cancelled wait loses nothing.
        self.receivers: list[anyio.Event] = []
        self.source_error: Exception | None = None
        # Everything below is set by start(), inside the event loop.
        self.log = False
        self.watch = False
        self.t0 = 0.0
        self.next_log = 0.0
        self.clock: Callable[[], float] = anyio.current_time
        self.work_scope: anyio.CancelScope | None = None

    def start(self) -> None:
        # Read after every item when progress is watched: the backend's own clock, not
        # anyio.current_time(), which looks the backend up on every call.
        self.clock = running_loop()[0]
        self.t0 = self.clock()
        self.next_log = self.t0 + self.interval
        self.log = self.logger.isEnabledFor(logging.INFO)
        self.watch = self.log or self.progress is not None

    # -- the work ------------------------------------------------------------------------------
    #
    # The job queue is a plain deque rather than a memory object stream: a stream hands each item
    # to a different waiting worker, so every job would cost a worker a sleep and a wake-up. Here
    # an idle worker is woken (or started) only when a job is queued and no other worker is
    # already on its way; a worker keeps taking queued jobs until the queue is empty, and wakes
    # up to two more when it leaves jobs behind. Items that finish without waiting then run back
    # to back in one worker, while slow items spread over up to max_at_once workers within a few
    # loop turns.

    async def work(self, items: object) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                self.work_scope = tg.cancel_scope
                tg.start_soon(self._produce, items)
        finally:
            self.ended = True
            self.wake_receivers()

    def wake_receivers(self) -> None:
        for receiver in self.receivers:
            receiver.set()
        self.receivers.clear()

    def stop(self) -> None:
        self.stopped = True
        if self.work_scope is not None:
            self.work_scope.cancel()

    def delivered_one(self) -> None:
        self.delivered += 1
        producer = self.producer
        if producer is not None and self.window - (self.pulled - self.delivered) >= self.refill:
            self.producer = None
            producer.set()

    async def _window_room(self) -> None:
        """Wait until the consumer has taken enough results for the window to have room."""
        event = self.producer = anyio.Event()
        try:
            await event.wait()
        finally:
            self.producer = None

    def _wake(self) -> None:
        if self.sleepers:
            self.sleepers.pop().set()
        elif self.workers < self.max_at_once:
            self.workers += 1
            self.tg.start_soon(self._worker)
        else:
            return  # every worker is busy; the first to finish takes the job
        self.waking += 1

    def _enqueue(self, item: Any) -> None:
        """Queue the item pulled last for the workers, waking or starting one if none is coming."""
        index = self.pulled
        self.jobs.append((index, item))
        self.pulled = index + 1
        if not self.waking:
            self._wake()

    async def _produce(self, items: object) -> None:
        # The loops for async and plain iterables differ only in how an item is read; each
        # keeps the window check inline, since it runs once per item.
        window = self.window
        try:
            if isinstance(items, AsyncIterable):
                source = aiter(items)
                try:
                    while True:
                        if self.pulled - self.delivered >= window:
                            await self._window_room()
                            continue
                        if self.stopped:
                            return
                        try:
                            item = await anext(source)
                        except StopAsyncIteration:
                            return
                        except Exception as exc:
                            self.source_error = exc
                            return
                        self._enqueue(item)
                finally:
                    # The generator must be closed by the task that iterated it, and now: left to
                    # the garbage collector, its cleanup would run outside any task.
                    if isasyncgen(source):
                        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                            await source.aclose()
            else:
                iterator = iter(cast(Iterable[Any], items))
                while True:
                    if self.pulled - self.delivered >= window:
                        await self._window_room()
                        continue
                    if self.stopped:
                        return
                    try:
                        item = next(iterator)
                    except StopIteration:
                        return
                    except Exception as exc:
                        self.source_error = exc
                        return
                    self._enqueue(item)
        finally:
            self.exhausted = True
            # Idle workers wake up to see that no more jobs come, and end.
            for sleeper in self.sleepers:
                sleeper.set()
            self.waking += len(self.sleepers)
            self.sleepers.clear()

    async def _worker(self) -> None:
        fn = self.fn
        limits = self.limits
        collect = self.collect
        ordered = self.ordered
        jobs = self.jobs
        finished = self.finished
        payload: Any
        self.waking -= 1
        woken = True  # this worker has just started, or just been woken
        while not self.stopped:
            if jobs:
                index, item = jobs.popleft()
                if woken:
                    # Fan the wake-ups out: a worker's first job after it was woken wakes two
                    # more while jobs outnumber the workers on their way (1, 2, 4, ... per loop
                    # turn), so that after a stall (a full window, a slow head item) the idle
                    # workers are busy again within about log2(max_at_once) turns, not one turn
                    # per worker.
                    woken = False
                    if len(jobs) > self.waking:
                        self._wake()
                        if len(jobs) > self.waking:
                            self._wake()
                elif jobs and not self.waking:
                    # Back to back (an item that finished without waiting): one more at most.
                    self._wake()
            elif self.exhausted:
                return
            else:
                sleeper = anyio.Event()
                self.sleepers.append(sleeper)
                try:
                    await sleeper.wait()
                finally:
                    if sleeper.is_set():
                        self.waking -= 1
                    else:
                        self.sleepers.remove(sleeper)
                woken = True
                continue
            self.started += 1
            self.in_flight += 1
            try:
                if limits is None:
                    value = await fn(item)
                else:
                    async with limits():
                        value = await fn(item)
            except Exception as exc:
                self.in_flight -= 1
                self.failed += 1
                if not collect:
                    self.failures.append(FailedItem(index, item, exc))
                    self.stop()
                    if self.watch:
                        self._finished()
                    self.wake_receivers()
                    return
                payload = Outcome(index, item, None, exc)
            except BaseException:
                self.in_flight -= 1
                raise
            else:
                self.in_flight -= 1
                self.done += 1
                payload = Outcome(index, item, value, None) if collect else value
            if self.watch:
                self._finished()
            if ordered:
                finished[index] = payload
                # Only the result the consumer waits for is worth waking it.
                if self.receivers and index == self.next_index:
                    self.wake_receivers()
            else:
                self.finished_order.append(payload)
                if self.receivers:
                    self.wake_receivers()

    # -- progress ------------------------------------------------------------------------------

    def _finished(self) -> None:
        now = self.clock()
        if self.progress is not None:
            elapsed = now - self.t0
            finished = self.done + self.failed
            self.progress(
                Progress(
                    done=self.done,
                    failed=self.failed,
                    in_flight=self.in_flight,
                    started=self.started,
                    elapsed=elapsed,
                    rate=finished / elapsed if elapsed > 0 else 0.0,
                )
            )
        if self.log and now >= self.next_log:
            self.next_log = now + self.interval
            self.logger.info(
                "amap: %d done, %d failed, %d in flight, %.1f/s",
                self.done,
                self.failed,
                self.in_flight,
                self._rate(now),
            )

    def _rate(self, now: float) -> float:
        elapsed = now - self.t0
        return (self.done + self.failed) / elapsed if elapsed > 0 else 0.0

    def summary(self) -> None:
        if not self.log:
            return
        now = self.clock()
        self.logger.info(
            "amap finished: %d done, %d failed, %d not run or cancelled, %.1f/s over %.1f s",
            self.done,
            self.failed,
            self.not_run(),
            self._rate(now),
            now - self.t0,
        )

    def not_run(self) -> int:
        total = self.total if self.total is not None else self.pulled
        return max(0, total - self.done - self.failed)

    def batch_error(self) -> BatchError:
        failures = sorted(self.failures, key=lambda failure: failure.index)
        return BatchError(failures, completed=self.done, not_run=self.not_run())
