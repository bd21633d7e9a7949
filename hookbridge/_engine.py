"""The call engine: admission through Limits, attempts under Retry, one error boundary, counts.

Every remote operation of every adapter goes through here: ``call`` for coroutines,
``call_sync`` for blocking functions (on worker threads), ``hold`` for long operations (a stream,
an open file) that are admitted once. ``Retry.run`` uses the same attempt loop, so a policy
behaves the same inside and outside an adapter. Only the public faces of ``Limits``
(``try_admit``, ``release``, ``async with limits()``, ``throttled``) and ``Retry``
(``next_delay``, ``deadline``) are used.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

from ._errors import DeadlineExceeded, HookBridgeError, Throttled
from ._limits import Limits
from ._retry import Retry, RetryEvent

__all__ = ["Boundary", "CallEngine", "run_attempts"]

T = TypeVar("T")

#: Turns a foreign exception of one attempt into the hookbridge error to raise (or returns it).
Boundary = Callable[[Exception, object], Exception]


def _cooldown_of(error: Exception, policy: Retry) -> float | None:
    """The shared cool-down a throttled answer asks for, when the policy will wait for it."""
    if not isinstance(error, Throttled) or error.retry_after is None:
        return None
    wait = error.retry_after
    if math.isnan(wait):
        return None
    wait = max(0.0, wait)
    return wait if wait <= policy.max_retry_after else None


def _deadline_exceeded(
    policy: Retry, attempts: int, last: BaseException | None, when: str
) -> DeadlineExceeded:
    cause = f" Last error: {type(last).__name__}: {last}" if last is not None else ""
    return DeadlineExceeded(
        f"gave up after {attempts} attempt(s): the retry deadline of {policy.deadline:g} s "
        f"passed ({when}). Raise Retry(deadline=...) or set it to None to allow more "
        f"time.{cause}"
    )


def _after_failure(
    policy: Retry,
    error: Exception,
    attempt: int,
    limits: Limits | None,
    deadline_at: float,
    on_retry: Callable[[RetryEvent], None] | None,
) -> float:
    """The wait before the attempt after ``attempt``, which raised ``error``; or raise it."""
    delay = policy.next_delay(error, attempt)
    if delay is None:
        raise error
    cooldown = _cooldown_of(error, policy)
    if cooldown is not None and limits is not None:
        limits.throttled(cooldown)
    if deadline_at != math.inf and anyio.current_time() + delay > deadline_at:
        raise _deadline_exceeded(
            policy, attempt, error, f"the next wait of {delay:.3g} s would pass it"
        ) from error
    if on_retry is not None:
        on_retry(RetryEvent(attempt=attempt, error=error, delay=delay))
    return delay


async def run_attempts(
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    policy: Retry,
    limits: Limits | None,
    on_retry: Callable[[RetryEvent], None] | None,
    boundary: Boundary | None = None,
    target: object = None,
    failed: Exception | None = None,
) -> T:
    """``await fn(*args)`` per ``policy``, each attempt inside ``limits()``.

    With ``failed``, the first attempt was made by the caller (the inline fast path of
    :meth:`CallEngine.call`) and failed so; it is decided on exactly like any other attempt.
    ``boundary`` translates each attempt's foreign error before the policy sees it.
    """
    # Without a deadline an attempt needs no cancel scope and no clock reads.
    timed = policy.deadline is not None
    deadline_at = math.inf if policy.deadline is None else anyio.current_time() + policy.deadline
    last: Exception | None = None
    attempt = 0
    if failed is not None:
        attempt = 1
        try:
            delay = _after_failure(policy, failed, attempt, limits, deadline_at, on_retry)
            last = failed
        finally:
            failed = None  # no reference cycle through this frame once it is raised
        if limits is not None and isinstance(last, Throttled):
            await limits.share_cooldown()
        await anyio.sleep(delay)
    while True:
        attempt += 1
        if timed and anyio.current_time() >= deadline_at:
            raise _deadline_exceeded(policy, attempt - 1, last, "before the next attempt") from last
        try:
            if not timed:
                if limits is None:
                    return await fn(*args)
                async with limits():
                    return await fn(*args)
            # The scope bounds the limiter's waits too: they count against the deadline.
            with anyio.CancelScope(deadline=deadline_at):
                if limits is None:
                    return await fn(*args)
                async with limits():
                    return await fn(*args)
        except Exception as exc:
            # Cancellation is a BaseException on both backends: it never reaches here.
            error = exc if boundary is None else boundary(exc, target)
            delay = _after_failure(policy, error, attempt, limits, deadline_at, on_retry)
            last = error
            if limits is not None and isinstance(error, Throttled):
                await limits.share_cooldown()
            await anyio.sleep(delay)
            continue
        # Only reached when the deadline's scope cancelled the attempt: a return leaves above.
        raise _deadline_exceeded(policy, attempt, last, "during an attempt") from last


class CallEngine:
    """The calling half of :class:`~hookbridge.adapter.Adapter`: call, call_sync, hold, counts.

    Subclasses provide ``limits``, ``retry``, ``_boundary`` and ``_require_open``; the engine
    keeps the statistics counters.
    """

    limits: Limits
    retry: Retry
    #: Threads ``call_sync`` may use at once when ``limits`` set no ``max_concurrency``.
    thread_capacity: int = 10

    def _init_engine(self) -> None:
        self._calls = self._succeeded = self._failed = self._retries = self._throttled = 0
        self._holding = 0
        self._threads: anyio.CapacityLimiter | None = None
        self._is_open = False

    # Provided by the adapter.
    def _boundary(self, exc: Exception, target: object) -> Exception:
        raise NotImplementedError

    def _require_open(self) -> None:
        raise NotImplementedError

    async def call(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        retry: Retry | None = None,
        target: object = None,
    ) -> T:
        """Run ``await fn(*args)`` through this adapter's policy.

        Each attempt takes a concurrency slot and a rate token from :attr:`limits`; a foreign
        error is translated by the adapter's ``_translate`` (``target`` says what was asked for,
        for the message); failures go through :attr:`retry` (or ``retry=``). Use it to reach the
        raw client and still be limited: ``await api.call(session.get, url)``.
        """
        if not self._is_open:
            self._require_open()
        policy = retry or self.retry
        limits = self.limits
        self._calls += 1
        try:
            if policy.deadline is None and limits.try_admit():
                # The common case inline: no deadline, and a slot and a token at once. This is
                # nearly every call's path, and a coroutine for the attempt loop and two for the
                # limiter cost more than the rest of call() together.
                failed: Exception | None = None
                try:
                    result = await fn(*args)
                except Exception as exc:
                    failed = self._boundary(exc, target)
                finally:
                    limits.release()
                if failed is not None:
                    try:
                        result = await run_attempts(
                            fn, args, policy, limits, self._count_retry, self._boundary, target,
                            failed,
                        )  # fmt: skip
                    finally:
                        failed = None  # no reference cycle through this frame
            else:
                result = await run_attempts(
                    fn, args, policy, limits, self._count_retry, self._boundary, target
                )
        except Exception:
            self._failed += 1
            raise
        self._succeeded += 1
        return result

    async def call_sync(
        self,
        fn: Callable[..., T],
        *args: Any,
        retry: Retry | None = None,
        target: object = None,
    ) -> T:
        """Run the blocking ``fn(*args)`` on a worker thread, through this adapter's policy.

        Like :meth:`call` (limits, retry, translation, statistics), and at most
        ``limits.max_concurrency`` (else :attr:`thread_capacity`) threads of this adapter run at
        once. The event loop keeps running meanwhile. A cancelled caller waits for its thread to
        return (a thread cannot be interrupted); keep blocking calls short or bounded by their
        own timeouts.
        """
        return await self.call(self._in_thread, fn, *args, retry=retry, target=target)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        threads = self._threads
        if threads is None:
            # Created on first use, inside the event loop that the adapter lives on.
            threads = self._threads = anyio.CapacityLimiter(
                self.limits.max_concurrency or self.thread_capacity
            )
        return await anyio.to_thread.run_sync(fn, *args, limiter=threads)

    @asynccontextmanager
    async def hold(self, *, target: object = None) -> AsyncIterator[None]:
        """Admit one long operation (a stream, an open file) for the time of the block.

        Takes a concurrency slot and a rate token once, counts one call, and translates foreign
        errors raised in the block. Not retried: a half-read stream cannot be replayed.
        """
        if not self._is_open:
            self._require_open()
        self._calls += 1
        async with self.limits():
            self._holding += 1
            try:
                yield
            except Exception as exc:
                self._failed += 1
                error = self._boundary(exc, target)
                if error is exc:
                    raise
                raise error from exc
            finally:
                self._holding -= 1
        self._succeeded += 1

    def _count_retry(self, event: RetryEvent) -> None:
        self._retries += 1
        if isinstance(event.error, Throttled):
            self._throttled += 1


def translate_with(
    translate: Callable[[Exception, object], HookBridgeError],
    foreign: tuple[type[BaseException], ...],
    exc: Exception,
    target: object,
) -> Exception:
    """Apply ``translate`` to a foreign error (one of ``foreign``), chained as ``raise from``."""
    if isinstance(exc, HookBridgeError) or not isinstance(exc, foreign):
        return exc
    error = translate(exc, target)
    if error is not exc:
        error.__cause__ = exc
        error.__suppress_context__ = True
    return error
