"""The retry policy: attempts, jittered back-off, Retry-After, and one deadline over everything."""

from __future__ import annotations

import email.utils
import importlib
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any, TypeVar

from ._checks import is_number
from ._errors import (
    ConfigurationError,
    RemoteStatusError,
    Throttled,
    TransportError,
)
from ._limits import Limits

__all__ = ["Retry", "RetryEvent", "default_retry_on", "parse_retry_after"]

T = TypeVar("T")

_DELTA_SECONDS = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
# Shared by every policy that was not given its own: jitter needs no reproducibility in use.
_DEFAULT_RNG = random.Random()


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    ``"120"`` gives 120.0; an HTTP-date gives the seconds from ``now`` (wall-clock epoch seconds,
    ``time.time()`` when not given) until then; a negative delay or a past date gives 0.0;
    anything unreadable gives None. A delay too large for a float gives ``inf``, which no policy
    waits for.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.match(text):
        return max(0.0, float(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT; "-0000" and asctime dates parse without a zone.
        when = when.replace(tzinfo=timezone.utc)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def default_retry_on(error: BaseException) -> bool:
    """Retry what may work next time: transport faults, throttling, 5xx except 501."""
    if isinstance(error, (TransportError, Throttled)):
        return True
    if isinstance(error, RemoteStatusError):
        # 501 Not Implemented will not start working on the next attempt.
        return error.status >= 500 and error.status != 501
    return False


@dataclass(frozen=True)
class RetryEvent:
    """One failed attempt that will be retried: passed to ``on_retry`` before the wait."""

    #: The attempt that failed, 1 for the first.
    attempt: int
    error: Exception
    #: Seconds until the next attempt starts.
    delay: float


def _callable_path(fn: Callable[[BaseException], bool]) -> str | None:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    return f"{module}:{qualname}"


@dataclass(frozen=True)
class Retry:
    """How a failed call is retried: frozen configuration, safe to share between adapters.

    ``attempts`` counts the first one (1 means no retry). Before attempt n+1 it waits a random
    time in ``[0, min(max_backoff, backoff * 2**(n-1))]`` ("full jitter"), or the server's
    ``Retry-After`` if longer; a ``Retry-After`` above ``max_retry_after`` is not waited for: the
    error is raised at once. ``deadline`` bounds the whole run, attempts and waits included.
    Only errors for which ``retry_on`` is true are retried; cancellation never is.
    """

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 120.0
    deadline: float | None = None
    retry_on: Callable[[BaseException], bool] = default_retry_on
    #: Source of the jitter; pass ``random.Random(seed)`` for reproducible delays in tests.
    rng: random.Random | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool):
            raise ConfigurationError(
                f"attempts must be a whole number >= 1, got {self.attempts!r}.", field="attempts"
            )
        if self.attempts < 1:
            raise ConfigurationError(
                f"attempts counts the first call too, so it must be >= 1 (1 = no retry), got "
                f"{self.attempts}.",
                field="attempts",
            )
        for name in ("backoff", "max_backoff", "max_retry_after"):
            value = getattr(self, name)
            if not _is_seconds(value) or value < 0:
                raise ConfigurationError(
                    f"{name} must be a finite number of seconds >= 0, got {value!r}.", field=name
                )
            object.__setattr__(self, name, float(value))
        if self.deadline is not None:
            if not _is_seconds(self.deadline) or self.deadline <= 0:
                raise ConfigurationError(
                    f"deadline must be a finite number of seconds > 0, or None for no deadline, "
                    f"got {self.deadline!r}.",
                    field="deadline",
                )
            object.__setattr__(self, "deadline", float(self.deadline))
        if not callable(self.retry_on):
            raise ConfigurationError(
                f"retry_on must be a callable taking the error and returning a bool, got "
                f"{self.retry_on!r}.",
                field="retry_on",
            )
        if self.rng is not None and not isinstance(self.rng, random.Random):
            raise ConfigurationError(f"rng must be a random.Random, got {self.rng!r}.", field="rng")

    @classmethod
    def none(cls) -> Retry:
        """A policy that makes one attempt and never retries."""
        return cls(attempts=1)

    # -- spec ------------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        """JSON-safe configuration; :meth:`from_spec` rebuilds an equal policy.

        A custom ``retry_on`` is stored as ``"module:qualname"``, so it must be a module-level
        function; ``rng`` is not kept.
        """
        spec: dict[str, Any] = {
            "attempts": self.attempts,
            "backoff": self.backoff,
            "max_backoff": self.max_backoff,
            "max_retry_after": self.max_retry_after,
            "deadline": self.deadline,
        }
        if self.retry_on is not default_retry_on:
            path = _callable_path(self.retry_on)
            if path is None:
                raise ConfigurationError(
                    f"retry_on={self.retry_on!r} cannot be written to a spec: only a module-level "
                    "function can be found again on the other side. Define it at module level.",
                    field="retry_on",
                )
            spec["retry_on"] = path
        return spec

    @classmethod
    def from_spec(cls, spec: Any) -> Retry:
        """Rebuild a policy from :meth:`to_spec` output."""
        allowed = ("attempts", "backoff", "max_backoff", "max_retry_after", "deadline", "retry_on")
        if not isinstance(spec, dict) or set(spec) - set(allowed):
            raise ConfigurationError(
                f"not a retry spec: expected a dict with keys among {', '.join(allowed)}, as "
                f"returned by Retry.to_spec(); got {spec!r}.",
                field="retry",
            )
        options = dict(spec)
        if "retry_on" in options:
            options["retry_on"] = _import_callable(options["retry_on"])
        return cls(**options)

    # -- running ---------------------------------------------------------------------------

    def delay_for(self, attempt: int) -> float:
        """A random back-off before the attempt after ``attempt`` (full jitter)."""
        # Past 2**64 the cap has long been reached; stop there rather than overflow a float.
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** min(attempt - 1, 64))
        return (self.rng or _DEFAULT_RNG).uniform(0.0, ceiling)

    async def run(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        limits: Limits | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
    ) -> T:
        """``await fn(*args)``, retried per this policy; each attempt inside ``limits()``.

        The last error is re-raised unchanged when it is not retryable or attempts run out;
        :class:`DeadlineExceeded` (chained from the last error) when the deadline passes during an
        attempt or would pass during a wait. A :class:`Throttled` error's ``retry_after`` starts
        the shared cool-down of ``limits``.
        """
        from ._engine import run_attempts  # the engine builds on this module

        return await run_attempts(fn, args, self, limits, on_retry)

    def next_delay(self, error: Exception, attempt: int) -> float | None:
        """Seconds to wait before retrying after attempt ``attempt`` failed with ``error``.

        None means "do not retry": the error is not retryable, the attempts are used up, or the
        server's Retry-After is longer than ``max_retry_after`` (a note on the error says so).
        The wait is the jittered back-off, or the Retry-After if longer.
        """
        if not self.retry_on(error) or attempt >= self.attempts:
            return None
        delay = self.delay_for(attempt)
        retry_after = error.retry_after if isinstance(error, Throttled) else None
        if retry_after is not None and not retry_after >= 0:
            retry_after = None if math.isnan(retry_after) else 0.0
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                _add_note(
                    error,
                    f"hookbridge: not retried: Retry-After {retry_after:g} s is more than "
                    f"max_retry_after={self.max_retry_after:g} s; raise "
                    "Retry(max_retry_after=...) to wait that long, or wait and call again.",
                )
                return None
            delay = max(delay, retry_after)
        return delay


def _is_seconds(value: object) -> bool:
    return is_number(value) and math.isfinite(value)


def _add_note(error: BaseException, note: str) -> None:
    add_note = getattr(error, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(note)


def _import_callable(path: Any) -> Callable[[BaseException], bool]:
    if not isinstance(path, str) or ":" not in path:
        raise ConfigurationError(
            f"retry_on must be 'module:qualname' in a spec, got {path!r}.", field="retry_on"
        )
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"retry_on {path!r} cannot be imported ({exc}); install the module that defines it.",
            field="retry_on",
        ) from exc
    if not callable(target):
        raise ConfigurationError(f"retry_on {path!r} is not callable.", field="retry_on")
    return target  # type: ignore[no-any-return]
