"""Sink on Airflow's ObjectStoragePath (file://): 1,000,000 items with bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hookbridge

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "contrib" / "bench" / "sink_memory.py"


def test_a_million_items_through_file_storage_with_bounded_memory(tmp_path: Path) -> None:
    # In a child process, so that its peak resident set is its own: 100k items, then 1M (after
    # a warm-up run), written to file:// through ObjectStoragePath and read back.
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    args = ["--items", "100000", "--items", "1000000", "--measure", "rss", "--json"]
    out = subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    small, large = (json.loads(line) for line in out.stdout.splitlines())
    assert small["reference"]["items"] == 100_000 and large["reference"]["items"] == 1_000_000
    assert large["reference"]["path"].startswith("file://")
    # The 1M run stores ~4.7 MB gzipped (~35 MB of JSON); the process peak hardly moves.
    assert large["peak_kib"] < 8 * 1024, (small, large)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_object_storage_path_round_trip(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath(f"file://{tmp_path}/results")
    async with hookbridge.Sink(path, compression="gzip", part_items=300, batch_items=64) as sink:
        await sink.write_many({"id": i} for i in range(1000))
    ref = json.loads(json.dumps(sink.reference()))
    assert ref["path"] == f"file://{tmp_path}/results" and ref["parts"] == 4
    async with hookbridge.read_sink(ref) as rows:
        assert [row["id"] async for row in rows] == list(range(1000))
    # The path object itself (it may carry a conn_id) instead of the reference's URL.
    assert len(list(hookbridge.read_sink(ref, path=path))) == 1000
    # A URL string works too (how a downstream task gets it from XCom).
    async with hookbridge.Sink(f"file://{tmp_path}/again") as sink:
        await sink.write({"ok": True})
    assert list(hookbridge.read_sink(sink.reference())) == [{"ok": True}]
