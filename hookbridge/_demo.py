"""The demo framework: each adapter contributes a part through the ``hookbridge.demos`` group.

``hookbridge demo`` runs every part on embedded loopback servers and prints one summary table.
The core never imports an adapter: parts are found through entry points, like adapters.
"""

from __future__ import annotations

import importlib
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

__all__ = [
    "DEMO_ENTRY_POINT_GROUP",
    "DemoPart",
    "DemoResult",
    "DemoUI",
    "ProgressHandle",
    "demo_parts",
    "run_part",
]

DEMO_ENTRY_POINT_GROUP = "hookbridge.demos"


@dataclass
class DemoResult:
    """One line of the demo's summary table."""

    part: str
    operations: int
    seconds: float = 0.0
    retries: int = 0
    throttles: int = 0
    failed: int = 0
    bytes: int = 0
    peak_memory: int = 0
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.operations / self.seconds if self.seconds > 0 else 0.0


class ProgressHandle(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def update(self, *, total: int | None = None, description: str | None = None) -> None: ...


class DemoUI(Protocol):
    """What a demo part may use to show progress."""

    def progress(self, description: str, total: int | None = None) -> ProgressHandle: ...

    def log(self, message: str) -> None: ...


DemoPart = Callable[[DemoUI], Awaitable[DemoResult]]


def demo_parts() -> list[tuple[str, DemoPart | str]]:
    """Registered demo parts, in entry-point name order; an unloadable part gives its error."""
    parts: list[tuple[str, DemoPart | str]] = []
    for ep in sorted(entry_points(group=DEMO_ENTRY_POINT_GROUP), key=lambda e: e.name):
        module_name, _, attr = ep.value.partition(":")
        try:
            parts.append((ep.name, getattr(importlib.import_module(module_name), attr)))
        except Exception as exc:  # a missing extra skips that part, not the demo
            parts.append((ep.name, f"{type(exc).__name__}: {exc}"))
    return parts


@contextmanager
def _measure() -> Iterator[dict[str, float]]:
    box: dict[str, float] = {}
    started = time.perf_counter()
    tracemalloc.start()
    try:
        yield box
    finally:
        box["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        box["seconds"] = time.perf_counter() - started


async def run_part(part: DemoPart, ui: DemoUI) -> DemoResult:
    """Run one part, filling in its wall time and Python heap peak when it did not."""
    with _measure() as box:
        result = await part(ui)
    if not result.seconds:
        result.seconds = box["seconds"]
    result.peak_memory = int(box["peak"])
    return result
