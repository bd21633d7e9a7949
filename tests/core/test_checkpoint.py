"""Checkpoint: a retry skips what the first try completed (asyncio, trio; memory and file store)."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import hookbridge
from hookbridge import BatchError, Checkpoint, ConfigurationError, FileStore, MemoryStore, Page

pytestmark = pytest.mark.anyio

N = 1000
PAGE = 37  # not a divisor of N, so the last page is short and watermarks fall inside pages


class Pages:
    """A paginated source with a fetch log: page k holds items k*PAGE .. k*PAGE + PAGE - 1."""

    def __init__(self, total: int = N, size: int = PAGE) -> None:
        self.total = total
        self.size = size
        self.fetched: list[int] = []

    async def stream(self, cursor: dict[str, Any] | None) -> AsyncIterator[Page[int]]:
        number = 0 if cursor is None else int(cursor["page"])
        while number * self.size < self.total:
            self.fetched.append(number)
            await anyio.lowlevel.checkpoint()
            start = number * self.size
            items = list(range(start, min(start + self.size, self.total)))
            more = start + self.size < self.total
            yield Page(
                number + 1, items, 200, f"mem://{number}", {"page": number + 1} if more else None
            )
            number += 1


class Calls:
    """The fan-out's function: records every call; fails on ``fail_at`` while ``failing``."""

    def __init__(self, fail_at: int | None = None, jitter: bool = False) -> None:
        self.calls: list[int] = []
        self.fail_at = fail_at
        self.jitter = jitter
        self.rng = random.Random(7)

    async def __call__(self, item: int) -> int:
        self.calls.append(item)
        if self.jitter:
            for _ in range(self.rng.randrange(4)):
                await anyio.lowlevel.checkpoint()
        else:
            await anyio.lowlevel.checkpoint()
        if item == self.fail_at:
            raise RuntimeError(f"item {item} failed")
        return item * 2


async def drive(
    store: Any,
    key: str,
    fn: Calls,
    *,
    every: int = 1000,
    interval: float = 30.0,
    max_bytes: int = 60_000,
    sink: Any = None,
    fold: Any = None,
    stop_at: int | None = None,
    **amap_options: Any,
) -> Checkpoint:
    """One try: a fan-out through a Checkpoint; ``fold(cp, value)`` per result."""
    checkpoint = Checkpoint(
        store, key, every=every, interval=interval, max_bytes=max_bytes, sink=sink
    )
    async with checkpoint as cp, cp.amap(fn, **amap_options) as results:
        async for value in results:
            if fold is not None:
                await fold(cp, value)
            if stop_at is not None and value == stop_at:
                break
    return checkpoint


async def add(cp: Checkpoint, value: int) -> None:
    cp.state["sum"] = cp.state.get("sum", 0) + value
    cp.state["n"] = cp.state.get("n", 0) + 1


async def test_retry_after_a_failure_skips_completed_items_and_counts_each_once() -> None:
    store = MemoryStore()
    first = Calls(fail_at=600)
    with pytest.raises(BatchError) as info:
        await drive(store, "k", first, every=50, fold=add, items=range(N), max_at_once=8)
    assert [f.index for f in info.value.failures] == [600]
    saved = store.get("k")
    # amap's "raise" drops results that finished but were not handed out when item 600 failed
    # (at most 2 * max_at_once): those are not completed, and the retry does them again.
    done = saved["done"]
    assert 600 - 16 <= done <= 600 and not saved["above"]
    assert saved["state"]["sum"] == sum(2 * i for i in range(done))

    second = Calls()
    cp = await drive(store, "k", second, every=50, fold=add, items=range(N), max_at_once=8)
    assert cp.resumed
    assert cp.state["sum"] == sum(2 * i for i in range(N))  # every item counted exactly once
    assert cp.state["n"] == N
    assert not set(second.calls) & set(range(done))  # no completed item called again
    assert sorted(second.calls) == list(range(done, N))
    assert cp.skipped == done
    assert "k" not in store  # the work completed: the checkpoint ended itself


async def test_a_page_stream_resumes_from_the_page_of_the_watermark() -> None:
    store = MemoryStore()
    pages = Pages()
    with pytest.raises(BatchError):
        await drive(
            store, "p", Calls(fail_at=610), every=25, fold=add, pages=pages.stream, max_at_once=5
        )
    done = store.get("p")["done"]
    assert 610 - 10 <= done <= 610
    first_fetched = list(pages.fetched)

    pages.fetched.clear()
    second = Calls()
    seen: list[int] = []

    async def record(cp: Checkpoint, value: int) -> None:
        seen.append(value // 2)
        await add(cp, value)

    cp = await drive(store, "p", second, every=25, fold=record, pages=pages.stream, max_at_once=5)
    assert cp.state["n"] == N
    # The retry starts at the page holding the first item not done, not at page 0.
    assert pages.fetched == list(range(done // PAGE, -(-N // PAGE)))
    assert done // PAGE > 0 and set(first_fetched) >= set(range(done // PAGE))
    assert seen == list(range(done, N))
    assert min(second.calls) == done
    assert "p" not in store


async def test_the_last_page_done_before_the_end_is_not_fetched_again() -> None:
    store = MemoryStore()
    snapshots: list[Any] = []
    original = store.set

    def recording_set(key: str, value: Any) -> None:
        original(key, value)
        snapshots.append(json.loads(json.dumps(value)))

    store.set = recording_set  # type: ignore[method-assign]
    pages = Pages(total=100, size=10)
    await drive(store, "end", Calls(), every=1, fold=add, pages=pages.stream, max_at_once=4)
    # A crash between the save of the last item and the end of the block leaves this behind:
    last = snapshots[-1]
    assert last["done"] == 100 and last["end"] and last["cursor"] is None
    crashed = MemoryStore()
    crashed.set("end", last)
    pages.fetched.clear()
    calls = Calls()
    cp = await drive(crashed, "end", calls, fold=add, pages=pages.stream, max_at_once=4)
    assert pages.fetched == [] and calls.calls == [] and "n" in cp.state
    assert cp.state["n"] == 100  # restored, nothing added
    assert "end" not in crashed


async def test_a_successful_run_ends_the_checkpoint_so_a_rerun_does_everything() -> None:
    store = MemoryStore()
    for _ in range(2):
        calls = Calls()
        cp = await drive(
            store, "again", calls, every=100, fold=add, items=range(300), max_at_once=10
        )
        assert not cp.resumed and cp.state["n"] == 300
        assert sorted(calls.calls) == list(range(300))
        assert "again" not in store and store.deletes >= 1


async def test_leaving_early_saves_progress_and_the_rest_runs_next_time() -> None:
    store = MemoryStore()
    await drive(store, "early", Calls(), stop_at=2 * 40, items=range(100), max_at_once=4)
    # Item 40 was handed out but the loop left before asking for the next: not completed.
    assert store.get("early")["done"] == 40 and store.writes == 1
    seen: list[int] = []

    async def record(cp: Checkpoint, value: int) -> None:
        seen.append(value // 2)

    await drive(store, "early", Calls(), fold=record, items=range(100), max_at_once=4)
    assert seen == list(range(40, 100))


async def test_writes_are_batched_by_count() -> None:
    store = MemoryStore()
    with pytest.raises(BatchError):
        await drive(
            store, "b", Calls(fail_at=999), every=100, interval=1e9, items=range(N), max_at_once=8
        )
    # Up to 999 completed items: one write per 100, plus one final write for the rest.
    done = store.get("b")["done"]
    assert 999 - 16 <= done <= 999
    assert store.writes == done // 100 + (1 if done % 100 else 0)


class Slow(Calls):
    async def __call__(self, item: int) -> int:
        await anyio.sleep(1.0)
        return item


async def test_writes_are_batched_by_time(mock_clock: None) -> None:
    store = MemoryStore()
    await drive(
        store, "t", Slow(), every=10**6, interval=10.0, stop_at=35, items=range(50), max_at_once=1
    )
    # One save per 10 s of one-second items (at items 10, 20, 30) and one at the end.
    assert store.writes == 4
    assert store.get("t")["done"] == 35


async def test_out_of_order_completions_keep_the_state_small() -> None:
    store = MemoryStore()
    sizes: list[int] = []
    runs: list[int] = []
    original = store.set

    def recording_set(key: str, value: Any) -> None:
        original(key, value)
        sizes.append(store.size(key))
        runs.append(len(value["above"]))

    store.set = recording_set  # type: ignore[method-assign]
    fn = Calls(fail_at=19_000, jitter=True)
    options: dict[str, Any] = {"items": range(20_000), "max_at_once": 64, "ordered": False}
    with pytest.raises(BatchError):
        await drive(store, "o", fn, every=7, **options)
    saved = store.get("o")
    assert max(runs) > 0, "unordered results should leave completions above the watermark"
    assert max(sizes) < 2_000  # bounded by the fan-out's window, not by the 20,000 items
    # The retry does exactly the items that are not in the saved progress.
    done = set(range(saved["done"])) | {
        i for first, last in saved["above"] for i in range(first, last + 1)
    }
    calls = Calls()
    await drive(store, "o", calls, **options)
    assert sorted(calls.calls) == sorted(set(range(20_000)) - done)


async def test_collect_mode_numbers_outcomes_from_the_first_try() -> None:
    outcomes: list[Any] = []

    async def record(cp: Checkpoint, outcome: Any) -> None:
        outcomes.append(outcome)

    options: dict[str, Any] = {"max_at_once": 2, "on_error": "collect"}
    await drive(MemoryStore(), "c", Calls(fail_at=3), fold=record, items=range(10), **options)
    assert [o.index for o in outcomes] == list(range(10))
    assert [o.item for o in outcomes] == list(range(10))
    assert [o.ok for o in outcomes].count(False) == 1
    assert isinstance(outcomes[3].error, RuntimeError)


async def test_a_sink_holds_every_outcome_exactly_once_across_tries(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "state")
    out = tmp_path / "out"

    async def write(cp: Checkpoint, value: int) -> None:
        assert cp.sink is not None
        await cp.sink.write({"v": value})  # type: ignore[attr-defined]

    with pytest.raises(BatchError):
        async with hookbridge.Sink(out, compression="gzip", batch_items=16) as sink:
            await drive(
                store,
                "s",
                Calls(fail_at=700),
                every=40,
                sink=sink,
                fold=write,
                items=range(N),
                max_at_once=6,
            )
    async with hookbridge.Sink(out, compression="gzip", batch_items=16) as sink:
        cp = await drive(
            store, "s", Calls(), every=40, sink=sink, fold=write, items=range(N), max_at_once=6
        )
        assert cp.resumed
    reference = sink.reference()
    assert reference["items"] == N
    values = [row["v"] for row in hookbridge.read_sink(json.loads(json.dumps(reference)))]
    assert values == [2 * i for i in range(N)]
    assert not (tmp_path / "state" / "s.json").exists()


async def test_file_store_round_trip_and_damaged_values(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.set("x", {"a": 1})
    assert store.get("x") == {"a": 1} and store.get("y", 5) == 5
    store.delete("x")
    store.delete("x")
    assert store.get("x") is None
    with pytest.raises(ConfigurationError, match="plain file name"):
        store.set("../escape", {})
    store.set("bad", {"v": 99})
    with pytest.raises(ConfigurationError, match="not a hookbridge checkpoint"):
        async with Checkpoint(store, "bad"):
            pass


async def test_bad_arguments_are_named() -> None:
    with pytest.raises(ConfigurationError, match="store"):
        Checkpoint(object(), "k")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="every"):
        Checkpoint(MemoryStore(), "k", every=0)
    with pytest.raises(ConfigurationError, match="interval"):
        Checkpoint(MemoryStore(), "k", interval=-1)
    async with Checkpoint(MemoryStore(), "k") as cp:
        with pytest.raises(ConfigurationError, match="exactly one"):
            cp.amap(Calls(), max_at_once=1)
        with pytest.raises(ConfigurationError, match="pages must be a function"):
            cp.amap(Calls(), pages=[1, 2], max_at_once=1)  # type: ignore[arg-type]
        async with cp.amap(Calls(), items=range(3), max_at_once=1) as results:
            assert len([value async for value in results]) == 3
        with pytest.raises(ConfigurationError, match="one fan-out"):
            cp.amap(Calls(), items=range(3), max_at_once=1)


async def test_state_that_is_too_big_or_not_json_is_refused_clearly() -> None:
    async def big(cp: Checkpoint, value: int) -> None:
        cp.state[str(value)] = "x" * 100

    async def not_json(cp: Checkpoint, value: int) -> None:
        cp.state["o"] = object()

    with pytest.raises(ConfigurationError, match="over max_bytes"):
        await drive(
            MemoryStore(),
            "big",
            Calls(),
            every=5,
            max_bytes=1000,
            fold=big,
            items=range(20),
            max_at_once=1,
        )
    with pytest.raises(ConfigurationError, match="JSON-safe"):
        await drive(
            MemoryStore(), "obj", Calls(), every=1, fold=not_json, items=range(3), max_at_once=1
        )
