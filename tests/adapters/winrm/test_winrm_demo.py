"""The WinRM part of ``hookbridge demo`` streams its batch, cancels one command, leaves nothing."""

from __future__ import annotations

import pytest

from hookbridge._demos import RecordingUI
from hookbridge._demos.winrm import COMMANDS, run

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


async def test_demo_part_streams_and_cancels_one() -> None:
    ui = RecordingUI()
    result = await run(ui)
    assert result.part == "winrm" and result.failed == 0
    assert result.extra == {"terminated": 1, "shells_open": 0}
    assert "cancelled and terminated" in result.notes
    assert f"{5 * COMMANDS} lines" in result.notes
    assert ui.bars[0].done == ui.bars[0].total == COMMANDS
