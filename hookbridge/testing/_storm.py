"""A seeded storm of faults that any test server can serve, and what it did, counted per item.

Protocol-neutral: a server asks :meth:`Storm.fate` what to do with one request for one item and
acts it out in its own protocol (HTTP: a dropped connection, a 500/503, a 429 with Retry-After;
other servers: their equivalents), counting into the same fields.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["STORM_FATES", "Storm", "StormHost"]

#: What ``/storm/{id}`` may do with one request (see :class:`Storm`).
STORM_FATES = ("ok", "drop-before", "drop-during", "drop-after", "500", "503", "429")


@dataclass
class Storm:
    """Random faults of ``/storm/{id}``, and what the server did, counted per item.

    The fate of a request depends only on the seed, the method, the item and how many times that
    item was asked for with that method (``random.Random(f"{seed}:{method}:{item}:{attempt}")``):
    a run is reproducible whatever the order in which concurrent requests arrive.
    """

    seed: int = 0
    #: Connections closed before, while or after the response is written.
    drop: float = 0.0
    #: Answers 500 or 503 (no Retry-After).
    error: float = 0.0
    #: Answers 429 with ``Retry-After: retry_after``.
    throttle: float = 0.0
    retry_after: str = "0"
    #: Requests per (method, item).
    attempts: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: Complete answers per (method, item): 200s written in full (a drop after one included).
    answered: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: Writes (any method but GET/HEAD) applied per item: before the answer is written.
    applied: Counter[int] = field(default_factory=Counter)
    #: How often each fate of :data:`STORM_FATES` was chosen.
    fates: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if not 0 <= self.drop + self.error + self.throttle <= 1:
            raise ValueError("drop + error + throttle must be a probability (0..1)")

    def next_fate(self, method: str, item: int) -> tuple[str, int]:
        """Count one more request for ``(method, item)`` and pick its fate: (fate, attempt)."""
        self.attempts[method, item] += 1
        attempt = self.attempts[method, item]
        fate = self.fate(method, item, attempt)
        self.fates[fate] += 1
        return fate, attempt

    def fate(self, method: str, item: int, attempt: int) -> str:
        rng = random.Random(f"{self.seed}:{method}:{item}:{attempt}")
        roll = rng.random()
        if roll < self.drop:
            return rng.choice(("drop-before", "drop-during", "drop-after"))
        roll -= self.drop
        if roll < self.error:
            return rng.choice(("500", "503"))
        if roll - self.error < self.throttle:
            return "429"
        return "ok"


class StormHost:
    """A test server that can serve a :class:`Storm`; :attr:`storm_counts` is the one in force.

    Which requests a storm strikes, and how each fate is acted out in the protocol, is each
    server's own (see its module docstring).
    """

    #: The storm in force and its live counts (None: no storm).
    storm_counts: Storm | None = None

    def storm(
        self,
        seed: int,
        *,
        drop: float = 0.10,
        error: float = 0.10,
        throttle: float = 0.05,
        retry_after: str | float = "0",
    ) -> Storm:
        """From now on, the server's storm requests fail at random (seeded); returns the counts."""
        self.storm_counts = Storm(seed, drop, error, throttle, str(retry_after))
        self._storm_started()
        return self.storm_counts

    def _storm_started(self) -> None:
        """Forget what the previous storm left in the server's own state (nothing by default)."""
