"""The Graph part of ``hookbridge demo`` runs end to end: stream, batch, delta."""

from __future__ import annotations

import pytest

from hookbridge._demos import RecordingUI
from hookbridge._demos.msgraph import run

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


async def test_demo_part_streams_batches_and_resumes_a_delta() -> None:
    ui = RecordingUI()
    result = await run(ui)
    assert result.part == "msgraph"
    assert result.failed == 0, ui.lines
    assert result.throttles >= 2  # one 429 in the stream, throttled sub-requests in the batch
    # 5 calls of 20, then u-000042 (throttled twice) alone, twice.
    assert "100 reads in 7 $batch calls" in result.notes and "3 changes" in result.notes
    assert [bar.done for bar in ui.bars] == [bar.total for bar in ui.bars]
