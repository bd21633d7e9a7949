"""The demo framework: each adapter contributes a part through the ``hookbridge.demos`` group.

``hookbridge demo`` runs every part on embedded loopback servers and prints one summary table.
The core never imports an adapter: parts are found through entry points, like adapters.
"""

from __future__ import annotations

import importlib
import json
import os
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._adapter import AdapterStatistics

__all__ = [
    "DEMO_ENTRY_POINT_GROUP",
    "RecordingUI",
    "DemoPart",
    "DemoResult",
    "DemoUI",
    "ProgressHandle",
    "demo_parts",
    "run_part",
]

DEMO_ENTRY_POINT_GROUP = "hookbridge.demos"


@contextmanager
def airflow_connection(conn_id: str, connection: Mapping[str, Any]) -> Iterator[None]:
    """``conn_id`` as an Airflow connection (``AIRFLOW_CONN_*``) for the block, then as before."""
    env_var = f"AIRFLOW_CONN_{conn_id.upper()}"
    previous = os.environ.get(env_var)
    os.environ[env_var] = json.dumps(connection)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(env_var, None)
        else:
            os.environ[env_var] = previous


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

    @classmethod
    def of_calls(
        cls,
        part: str,
        stats: AdapterStatistics,
        *,
        seconds: float,
        failed: int,
        received: int,
        notes: str,
    ) -> DemoResult:
        """A part whose operations are its adapter's calls (``failed``: the part's own count)."""
        return cls(
            part=part,
            operations=stats.calls,
            seconds=seconds,
            retries=stats.retries,
            throttles=stats.throttled,
            failed=failed + stats.failed,
            bytes=received,
            notes=notes,
        )

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


class _RecordedBar:
    def __init__(self, total: int | None) -> None:
        self.total = total
        self.done = 0

    def advance(self, n: int = 1) -> None:
        self.done += n

    def update(self, *, total: int | None = None, description: str | None = None) -> None:
        if total is not None:
            self.total = total


class RecordingUI:
    """A :class:`DemoUI` that keeps its progress bars and log lines, for tests of demo parts."""

    def __init__(self) -> None:
        self.bars: list[_RecordedBar] = []
        self.lines: list[str] = []

    def progress(self, description: str, total: int | None = None) -> ProgressHandle:
        self.bars.append(_RecordedBar(total))
        return self.bars[-1]

    def log(self, message: str) -> None:
        self.lines.append(message)
