"""When a shared limit's grants were issued by the script and when their callers got them.

The rate bound of ``Limits(shared=...)`` holds over the instants the Redis script issues grants
(its clock is Redis ``TIME``); when a caller runs after its grant is up to its event loop, which a
loaded machine delays. The accuracy test and ``contrib/bench/redis_limits.py`` measure both, with
:class:`GrantLog`: a ``SharedLimits`` that notes, for every grant, the script's clock and the
caller's ``time.monotonic()`` (the clock every process of a Linux host shares).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from typing import Any

from .._shared_limits import SharedLimits
from .._shared_script import Reply

__all__ = ["GrantLog", "max_in_window"]


class GrantLog(SharedLimits):
    """``Limits(rate, burst, shared=...)`` that logs every grant it gets from Redis.

    ``issued_us``: the script's clock (Redis ``TIME``, µs) when it issued each grant, exact;
    ``issued``: the same instant on this host's ``time.monotonic()`` (Redis runs on this host:
    its ``TIME`` is this host's ``time.time()``); ``seen``: ``time.monotonic()`` when the caller
    got it. Grants from the local fallback are not logged.
    """

    __slots__ = ("issued", "issued_us", "seen")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.issued_us: list[float] = []
        self.issued: list[float] = []
        self.seen: list[float] = []

    def _issued(self, grant: Reply) -> None:
        # Both clocks read together, per grant: the wall clock may be slewed during a run.
        seen, wall = time.monotonic(), time.time()
        clock = float(grant.clock)
        self.issued_us.append(clock)
        self.issued.append(clock / 1e6 - (wall - seen))
        self.seen.append(seen)


def max_in_window(stamps: Iterable[float], window: float) -> int:
    """The most stamps in any half-open window ``[t, t + window)`` (one starts on a stamp)."""
    ordered = sorted(stamps)
    return max(
        (bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )
