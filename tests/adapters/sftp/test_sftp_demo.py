"""The SFTP part of ``hookbridge demo`` runs end to end and reports a verified download."""

from __future__ import annotations

import pytest

from hookbridge._demo import ProgressHandle
from hookbridge.adapters.sftp._demo import run

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


class _Bar:
    def __init__(self, total: int | None) -> None:
        self.total = total
        self.done = 0

    def advance(self, n: int = 1) -> None:
        self.done += n

    def update(self, *, total: int | None = None, description: str | None = None) -> None:
        if total is not None:
            self.total = total


class _UI:
    def __init__(self) -> None:
        self.bars: list[_Bar] = []
        self.lines: list[str] = []

    def progress(self, description: str, total: int | None = None) -> ProgressHandle:
        self.bars.append(_Bar(total))
        return self.bars[-1]

    def log(self, message: str) -> None:
        self.lines.append(message)


async def test_demo_part_downloads_and_verifies() -> None:
    ui = _UI()
    result = await run(ui)
    assert result.part == "sftp"
    assert result.failed == 0
    assert "checksums ok" in result.notes
    assert result.retries >= 1  # the server dropped a connection mid-transfer
    assert ui.bars[0].done == ui.bars[0].total == result.operations
