"""The SFTP part of ``hookbridge demo`` runs end to end and reports a verified download."""

from __future__ import annotations

import pytest

from hookbridge._demos import RecordingUI
from hookbridge._demos.sftp import run

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


async def test_demo_part_downloads_and_verifies() -> None:
    ui = RecordingUI()
    result = await run(ui)
    assert result.part == "sftp"
    assert result.failed == 0
    assert "checksums ok" in result.notes
    assert result.retries >= 1  # the server dropped a connection mid-transfer
    assert ui.bars[0].done == ui.bars[0].total == result.operations
