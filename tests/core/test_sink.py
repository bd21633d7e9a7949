"""Sink and read_sink on local paths, on asyncio and trio: parts, gzip, rewinding, bad input."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from datetime import date
from pathlib import Path

import anyio
import pytest

import hookbridge
from hookbridge import ConfigurationError, Sink, read_sink

pytestmark = pytest.mark.anyio


def rows(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"id": i, "name": f"item-{i}", "text": "line\nbreak é"} for i in range(start, n)]


@pytest.mark.parametrize("compression", [None, "gzip"])
async def test_round_trip_in_parts_async_and_sync(tmp_path: Path, compression: str | None) -> None:
    async with Sink(
        tmp_path / "out", compression=compression, batch_items=7, part_items=50
    ) as sink:  # type: ignore[arg-type]
        for row in rows(120):
            await sink.write(row)
        await sink.write_many(rows(250, 120))
    ref = sink.reference()
    assert ref["items"] == 250 and ref["parts"] >= 5
    assert len(json.dumps(ref)) < 300  # small enough for XCom whatever the item count
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    suffix = ".jsonl.gz" if compression else ".jsonl"
    assert files == [f"part-{i:05d}{suffix}" for i in range(ref["parts"])]
    assert ref["bytes"] == sum((tmp_path / "out" / f).stat().st_size for f in files)
    async with read_sink(json.loads(json.dumps(ref))) as reader:
        assert [row async for row in reader] == rows(250)
    assert list(read_sink(ref)) == rows(250)
    if compression:  # standard gzip files: zcat and pandas read them
        with gzip.open(tmp_path / "out" / files[0], "rt", encoding="utf-8") as file:
            assert json.loads(file.readline()) == rows(1)[0]


async def test_a_sink_opening_over_old_parts_replaces_them(tmp_path: Path) -> None:
    async with Sink(tmp_path, part_items=10, batch_items=10) as sink:
        await sink.write_many(rows(100))
    async with Sink(tmp_path, part_items=10, batch_items=10) as sink:
        await sink.write_many(rows(15))
    assert list(read_sink(sink.reference())) == rows(15)
    assert len([part async for part in anyio.Path(tmp_path).glob("part-*")]) == 2


async def test_commit_and_restore_rewind_to_a_position(tmp_path: Path) -> None:
    async with Sink(tmp_path, compression="gzip", batch_items=4) as sink:
        await sink.write_many(rows(10))
        position = await sink.commit()
        await sink.write_many(rows(25, 10))  # written after the position: a retry redoes them
    async with Sink(tmp_path, compression="gzip", batch_items=4) as sink:
        await sink.restore(json.loads(json.dumps(position)))
        await sink.write_many(rows(30, 10))
    assert list(read_sink(sink.reference())) == rows(30)
    async with Sink(tmp_path) as again:
        await again.write(1)
        with pytest.raises(ConfigurationError, match="right after opening"):
            await again.restore(position)


async def test_default_encodes_other_types_and_unencodable_values_fail(tmp_path: Path) -> None:
    async with Sink(tmp_path, default=str) as sink:
        await sink.write({"day": date(2024, 1, 2)})
    assert list(read_sink(sink.reference())) == [{"day": "2024-01-02"}]
    with pytest.raises(TypeError, match="not JSON serializable"):
        async with Sink(tmp_path / "b") as sink:
            await sink.write({"day": date(2024, 1, 2)})


async def test_bad_arguments_and_misuse_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="compression"):
        Sink(tmp_path, compression="zip")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="batch_items"):
        Sink(tmp_path, batch_items=0)
    with pytest.raises(ConfigurationError, match="path"):
        Sink(12)
    sink = Sink(tmp_path)
    with pytest.raises(ConfigurationError, match="not open"):
        await sink.write(1)
    async with sink:
        pass
    with pytest.raises(ConfigurationError, match="not open"):
        await sink.write(1)
    with pytest.raises(ConfigurationError, match="opened once"):
        await sink.__aenter__()
    with pytest.raises(ConfigurationError, match="not a hookbridge sink reference"):
        read_sink({"path": str(tmp_path)})


async def test_a_cut_part_is_reported(tmp_path: Path) -> None:
    async with Sink(tmp_path) as sink:
        await sink.write_many(rows(3))
    part = tmp_path / "part-00000.jsonl"
    part.write_bytes(part.read_bytes()[:-5])
    with pytest.raises(ConfigurationError, match="ends inside a line"):
        list(read_sink(sink.reference()))


async def test_cancelled_writer_still_closes_its_part(tmp_path: Path) -> None:
    with anyio.move_on_after(0.05):
        async with Sink(tmp_path, batch_items=100) as sink:
            for i in range(10**9):
                await sink.write({"id": i})
                if i % 100 == 0:
                    await anyio.sleep(0.001)
    ref = sink.reference()
    assert ref["items"] > 0
    assert [row["id"] for row in read_sink(ref)] == list(range(ref["items"]))


async def test_a_batch_flushed_under_a_pending_cancellation_is_stored(tmp_path: Path) -> None:
    # The batch leaves the buffer before the worker thread starts; anyio checkpoints before
    # starting it, so an unshielded flush under a cancelled scope lost the whole batch while
    # `items` still counted it (seen in CI: 2,900 of 3,000 items readable).
    async with Sink(tmp_path, batch_items=10) as sink:
        with anyio.CancelScope() as scope:
            scope.cancel()
            for i in range(25):
                await sink.write({"id": i})
    assert sink.reference()["items"] == 25
    assert [row["id"] for row in read_sink(sink.reference())] == list(range(25))


async def test_memory_does_not_grow_with_the_item_count(tmp_path: Path) -> None:
    peaks = []
    for count in (4_000, 16_000):
        tracemalloc.start()
        async with Sink(tmp_path / str(count), compression="gzip", batch_items=1000) as sink:
            await sink.write_many({"id": i, "name": f"item-{i}"} for i in range(count))
        async with read_sink(sink.reference()) as reader:
            seen = 0
            async for _ in reader:
                seen += 1
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert seen == count
    # 16,000 items are about 0.5 MB of JSON; the peak stays near the 4,000-item run's.
    assert peaks[1] < peaks[0] + 256 * 1024, peaks
    assert peaks[1] < 4 * 1024 * 1024, peaks


def test_exported() -> None:
    assert hookbridge.Sink is Sink and hookbridge.read_sink is read_sink
