"""Checkpoints: a retried task skips the items and pages that an earlier try completed.

Airflow 3.3 keeps a small key/value store per task instance across its tries
(``context["task_state_store"]``, synchronous ``get``/``set``/``delete``, values of at most
64 KiB by default). A :class:`Checkpoint` keeps in it what a fan-out has completed: a watermark
(every item below it is done), the few completions above it that arrived out of order, the
pagination cursor of the last page whose items are all done, the caller's small running
aggregate (``state``) and the sink's position. So the stored value stays small whatever the
number of items, and a retry resumes from the page the first try was on.

When is an item completed? When the consumer of the results asks for the next one after it: by
then the loop body has folded the result into ``state`` or written it to the sink, so a snapshot
taken at that moment is consistent (each outcome is in it exactly once, or not at all and the
item is done again). Snapshots are taken every ``every`` items or ``interval`` seconds, and when
the block ends; each is written on a worker thread, because the store's calls block.

The checkpoint ends itself when the work completes (the stream of results reached its end and
the block exits without an error): the key is deleted, so a task cleared by hand and run again in
the same DAG run does all the work again, as Airflow users expect.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import anyio
from anyio.abc import ObjectReceiveStream

from ._clock import running_loop
from ._errors import BatchError, ConfigurationError, FailedItem
from ._fanout import Outcome, amap
from ._pagination._paginate import _aclose
from ._sink import _storage_path

__all__ = ["Checkpoint", "CheckpointStore", "FileStore", "MemoryStore"]

_VERSION = 1
#: Airflow's task state store refuses values above 65,535 bytes by default; stay below it.
DEFAULT_MAX_BYTES = 60_000
_MISSING: Any = object()


@runtime_checkable
class CheckpointStore(Protocol):
    """Where checkpoints live: Airflow's ``context["task_state_store"]`` satisfies it as is.

    Synchronous on purpose (Airflow's accessor is): :class:`Checkpoint` calls it on a worker
    thread. Values are JSON-safe.
    """

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryStore:
    """A checkpoint store in a dict, for tests and plain scripts; values kept as JSON text."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self.writes = 0  #: ``set`` calls so far (tests assert that writes are batched)
        self.deletes = 0

    def get(self, key: str, default: Any = None) -> Any:
        text = self._values.get(key)
        return default if text is None else json.loads(text)

    def set(self, key: str, value: Any) -> None:
        if value is None:
            raise ValueError("a checkpoint value must not be None")
        self._values[key] = json.dumps(value)
        self.writes += 1

    def delete(self, key: str) -> None:
        self._values.pop(key, None)
        self.deletes += 1

    def size(self, key: str) -> int:
        """Bytes of the JSON stored under ``key`` (0 when absent)."""
        return len(self._values.get(key, ""))

    def __contains__(self, key: str) -> bool:
        return key in self._values


class FileStore:
    """A checkpoint store in a directory: one JSON file per key.

    ``directory`` is a local path (each value written beside its file and renamed over it, so a
    crash leaves the old value), or a ``scheme://`` URL or ``ObjectStoragePath`` (an object put
    is atomic): a triggerer that moves to another machine finds its checkpoints there.
    """

    def __init__(self, directory: Any) -> None:
        self.directory = _storage_path(directory, "directory")
        self._local = isinstance(self.directory, Path)
        self.writes = 0
        self.deletes = 0

    def _file(self, key: str) -> Any:
        if not key or "/" in key or "\\" in key or key.startswith("."):
            raise ConfigurationError(
                f"a FileStore key must be a plain file name (no '/', not starting with '.'), "
                f"got {key!r}",
                field="key",
            )
        return self.directory / f"{key}.json"

    def get(self, key: str, default: Any = None) -> Any:
        try:
            text = self._file(key).read_text(encoding="utf-8")
        except FileNotFoundError:
            return default
        return json.loads(text)

    def set(self, key: str, value: Any) -> None:
        target = self._file(key)
        text = json.dumps(value)
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._local:
            target.write_text(text, encoding="utf-8")
            self.writes += 1
            return
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.writes += 1

    def delete(self, key: str) -> None:
        target = self._file(key)
        with suppress(FileNotFoundError):
            target.unlink()
        self.deletes += 1


class _Sink(Protocol):
    """What a checkpoint needs from ``hookbridge.Sink``: commit its parts, restore a position."""

    async def commit(self) -> dict[str, Any]: ...

    async def restore(self, position: dict[str, Any]) -> None: ...


class _Done:
    """Completed item indexes: everything below ``watermark`` plus a few above it."""

    __slots__ = ("above", "watermark")

    def __init__(self, watermark: int = 0, above: Iterable[int] = ()) -> None:
        self.watermark = watermark
        self.above = set(above)

    def add(self, index: int) -> None:
        if index == self.watermark:
            watermark = index + 1
            above = self.above
            while watermark in above:
                above.remove(watermark)
                watermark += 1
            self.watermark = watermark
        elif index > self.watermark:
            self.above.add(index)

    def __contains__(self, index: int) -> bool:
        return index < self.watermark or index in self.above

    def ranges(self) -> list[list[int]]:
        """``above`` as sorted ``[first, last]`` runs: out-of-order completions come in runs."""
        runs: list[list[int]] = []
        for index in sorted(self.above):
            if runs and runs[-1][1] == index - 1:
                runs[-1][1] = index
            else:
                runs.append([index, index])
        return runs

    @classmethod
    def from_ranges(cls, watermark: int, runs: Iterable[Iterable[int]]) -> _Done:
        above: set[int] = set()
        for first, last in runs:
            above.update(range(first, last + 1))
        return cls(watermark, above)


def _check_number(value: Any, name: str, *, minimum: float, integer: bool) -> None:
    kinds = (int,) if integer else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise ConfigurationError(f"{name} must be {kind} >= {minimum}, got {value!r}", field=name)


class Checkpoint:
    """Progress of one fan-out, kept in a store so that a retry resumes where a try stopped.

    ::

        store = context["task_state_store"]  # Airflow 3.3; MemoryStore() or FileStore() outside
        async with hookbridge.open("api") as api, Checkpoint(store, "details") as cp:
            cp.state.setdefault("ok", 0)
            pages = lambda cursor: api.pages("/items", strategy=NextLink(), cursor=cursor)
            async with cp.amap(fetch, pages=pages, max_at_once=20) as results:
                async for value in results:
                    cp.state["ok"] += 1              # folded in before the next result is asked for
            return cp.state                          # every item counted once, across tries

    ``state`` is the caller's small JSON-safe running aggregate; it is saved with the progress, so
    after a retry it holds the earlier tries' contributions. Results too large for ``state`` go to
    a :class:`~hookbridge.Sink` passed as ``sink=``: it is committed (its open part closed) before
    each snapshot, and rewound to the snapshot's position on resume, so it too holds every outcome
    exactly once.

    ``every`` (items) and ``interval`` (seconds) say how often a snapshot is written: at most
    that many items or seconds of work are done again after a crash; a failure that raises
    through the block is saved at once. Writes happen on a worker thread. The stored value is
    refused (``ConfigurationError``) if it would exceed ``max_bytes``: keep ``state`` small.
    """

    def __init__(
        self,
        store: CheckpointStore,
        key: str = "hookbridge.checkpoint",
        *,
        every: int = 1000,
        interval: float = 30.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        sink: _Sink | None = None,
    ) -> None:
        for method in ("get", "set", "delete"):
            if not callable(getattr(store, method, None)):
                raise ConfigurationError(
                    f"store must have get/set/delete (Airflow's context['task_state_store'], "
                    f"hookbridge.MemoryStore() or hookbridge.FileStore(dir)); {store!r} has no "
                    f"{method}()",
                    field="store",
                )
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"key must be a non-empty str, got {key!r}", field="key")
        _check_number(every, "every", minimum=1, integer=True)
        _check_number(interval, "interval", minimum=0, integer=False)
        _check_number(max_bytes, "max_bytes", minimum=256, integer=True)
        self.store = store
        self.key = key
        self.every = every
        self.interval = float(interval)
        self.max_bytes = max_bytes
        self.sink = sink
        #: The caller's running aggregate (JSON-safe), restored from the earlier try.
        self.state: dict[str, Any] = {}
        #: Where the page stream resumes (a ``Page.cursor``), or None to start at the first page.
        self.cursor: dict[str, Any] | None = None
        #: True when an earlier try's progress was found.
        self.resumed = False
        #: Items skipped because an earlier try completed them (this try).
        self.skipped = 0
        #: Snapshots written (this try).
        self.saves = 0
        self._done = _Done()
        self._base = 0  # index of the first item after self.cursor
        self._end = False  # the last page's items are all done: no page is left to fetch
        # Pages seen and not yet wholly done: (index after the page's last item, its cursor).
        self._pages: deque[tuple[int, dict[str, Any] | None]] = deque()
        self._complete = False
        self._since_save = 0
        self._next_save = 0.0
        self._clock: Callable[[], float] = anyio.current_time
        self._entered = False
        self._used = False

    @property
    def completed(self) -> int:
        """Items completed so far, by this try and the earlier ones."""
        return self._done.watermark + len(self._done.above)

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Checkpoint:
        if self._entered:
            raise ConfigurationError("a Checkpoint is entered once; create a new one per task try")
        self._entered = True
        self._clock = running_loop()[0]
        self._next_save = self._clock() + self.interval
        saved = await anyio.to_thread.run_sync(self.store.get, self.key, None)
        if saved is not None:
            self._load(saved)
            self.resumed = True
            if self.sink is not None:
                await self.sink.restore(saved.get("sink") or {})
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Shielded: a cancelled try must still leave its progress behind for the retry.
        with anyio.CancelScope(shield=True):
            if self._complete and exc_type is None:
                if self.sink is not None:
                    await self.sink.commit()
                await anyio.to_thread.run_sync(self.store.delete, self.key)
            elif self._since_save or (exc_type is not None and self.completed):
                await self.save()

    def _load(self, saved: Any) -> None:
        try:
            if saved.get("v") != _VERSION:
                raise ValueError(f"version {saved.get('v')!r}")
            done = _Done.from_ranges(int(saved["done"]), saved.get("above", ()))
            state = saved.get("state", {})
            cursor = saved.get("cursor")
            base = int(saved.get("base", 0))
            end = bool(saved.get("end", False))
            if not isinstance(state, dict) or not (cursor is None or isinstance(cursor, dict)):
                raise ValueError("state must be an object and cursor an object or null")
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"the value under {self.key!r} is not a hookbridge checkpoint ({exc}); delete it "
                f"or use another key",
                field="key",
            ) from exc
        self._done, self.state, self.cursor, self._base = done, state, cursor, base
        self._end = end

    # -- snapshots -------------------------------------------------------------------------------

    def _snapshot(self, sink: dict[str, Any] | None) -> dict[str, Any]:
        watermark = self._done.watermark
        # The resume cursor moves to the last page whose every item is done.
        while self._pages and self._pages[0][0] <= watermark:
            self._base, self.cursor = self._pages.popleft()
            # A page without a cursor was the last one: resuming must not start over.
            self._end = self.cursor is None
        snapshot: dict[str, Any] = {
            "v": _VERSION,
            "done": watermark,
            "above": self._done.ranges(),
            "base": self._base,
            "cursor": self.cursor,
            "end": self._end,
            "state": self.state,
        }
        if sink is not None:
            snapshot["sink"] = sink
        return snapshot

    async def save(self) -> None:
        """Write a snapshot now (commits the sink first). Called for you; rarely needed."""
        position = await self.sink.commit() if self.sink is not None else None
        snapshot = self._snapshot(position)
        try:
            text = json.dumps(snapshot)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"checkpoint state must be JSON-safe: {exc}", field="state"
            ) from exc
        if len(text) > self.max_bytes:
            raise ConfigurationError(
                f"the checkpoint is {len(text)} bytes, over max_bytes={self.max_bytes} (Airflow's "
                f"task state store refuses values over 65,535 bytes): keep state small (counts, "
                f"not results; send results to a hookbridge.Sink) or lower max_at_once",
                field="state",
            )
        # The store gets its own copy: the caller goes on mutating self.state meanwhile.
        await anyio.to_thread.run_sync(self.store.set, self.key, json.loads(text))
        self.saves += 1
        self._since_save = 0
        self._next_save = self._clock() + self.interval

    async def _completed(self, index: int) -> None:
        self._done.add(index)
        self._since_save += 1
        if self._since_save >= self.every or self._clock() >= self._next_save:
            await self.save()

    # -- the fan-out -----------------------------------------------------------------------------

    def amap(
        self,
        fn: Callable[[Any], Awaitable[Any]],
        items: Iterable[Any] | AsyncIterable[Any] | None = None,
        *,
        pages: Callable[[dict[str, Any] | None], AsyncIterable[Any]] | None = None,
        **options: Any,
    ) -> AbstractAsyncContextManager[ObjectReceiveStream[Any]]:
        """``hookbridge.amap`` over the items not completed yet; same options and results.

        Give ``items`` (any iterable, numbered from 0 in order: it must yield the same items in
        the same order on every try) or ``pages``, a function that takes a cursor and returns a
        page stream starting there (``lambda cursor: api.pages(..., cursor=cursor)``): pages
        whose items were all completed are not fetched again. ``Outcome.index`` and the indexes
        in a ``BatchError`` count from the first item of the first try.
        """
        if (items is None) == (pages is None):
            raise ConfigurationError(
                "pass exactly one of items= (an iterable) or pages= (a function of a cursor "
                "returning a page stream)",
                field="items",
            )
        if pages is not None and not callable(pages):
            raise ConfigurationError(
                "pages must be a function taking a cursor, e.g. "
                "lambda cursor: api.pages('/items', strategy=..., cursor=cursor)",
                field="pages",
            )
        if self._used:
            raise ConfigurationError(
                "a Checkpoint follows one fan-out (its item numbers and cursor belong to it): "
                "use another Checkpoint, with another key, for another fan-out",
                field="amap",
            )
        if not self._entered:
            raise ConfigurationError(
                "enter the Checkpoint first: async with Checkpoint(store, key) as cp", field="amap"
            )
        return _run(self, fn, items, pages, options)

    def _to_do(self, index: int) -> bool:
        """Whether item ``index`` is still to do; one an earlier try completed counts as skipped."""
        if index in self._done:
            self.skipped += 1
            return False
        return True

    async def _numbered(
        self,
        items: Iterable[Any] | AsyncIterable[Any] | None,
        pages: Callable[[dict[str, Any] | None], AsyncIterable[Any]] | None,
    ) -> AsyncIterator[tuple[int, Any]]:
        if pages is not None:
            if self._end:
                return
            source: Any = pages(self.cursor)
            index = self._base
            try:
                async for page in source:
                    self._pages.append((index + len(page.items), page.cursor))
                    for item in page.items:
                        if self._to_do(index):
                            yield index, item
                        index += 1
            finally:
                # Closed here, by the task that iterates it, not left to the garbage collector.
                await _aclose(source)
            return
        if isinstance(items, AsyncIterable):
            index = 0
            try:
                async for item in items:
                    if self._to_do(index):
                        yield index, item
                    index += 1
            finally:
                await _aclose(items)
        else:
            assert items is not None
            for index, item in enumerate(items):
                if self._to_do(index):
                    yield index, item


class _Results(ObjectReceiveStream[Any]):
    """amap's results, with each one counted completed when the next one is asked for."""

    def __init__(self, checkpoint: Checkpoint, inner: ObjectReceiveStream[Any], collect: bool):
        self._cp = checkpoint
        self._inner = inner
        self._collect = collect
        self._pending: int | None = None  # index of the result handed out last

    async def receive(self) -> Any:
        if self._pending is not None:
            index, self._pending = self._pending, None
            await self._cp._completed(index)
        try:
            payload = await self._inner.receive()
        except anyio.EndOfStream:
            self._cp._complete = True
            raise
        except BatchError as exc:
            raise _renumbered(exc) from None
        if self._collect:
            index, item = payload.item
            self._pending = index
            return Outcome(index, item, payload.value, payload.error)
        index, value = payload
        self._pending = index
        return value

    async def aclose(self) -> None:
        await self._inner.aclose()


def _renumbered(exc: BatchError) -> BatchError:
    failures = [FailedItem(f.item[0], f.item[1], f.error) for f in exc.failures]
    return BatchError(failures, completed=exc.completed, not_run=exc.not_run)


@asynccontextmanager
async def _run(
    checkpoint: Checkpoint,
    fn: Callable[[Any], Awaitable[Any]],
    items: Iterable[Any] | AsyncIterable[Any] | None,
    pages: Callable[[dict[str, Any] | None], AsyncIterable[Any]] | None,
    options: dict[str, Any],
) -> AsyncIterator[ObjectReceiveStream[Any]]:
    collect = options.get("on_error", "raise") == "collect"

    if collect:

        async def call(job: tuple[int, Any]) -> Any:
            return await fn(job[1])

    else:

        async def call(job: tuple[int, Any]) -> Any:
            return job[0], await fn(job[1])

    checkpoint._used = True
    async with amap(call, checkpoint._numbered(items, pages), **options) as results:
        yield _Results(checkpoint, results, collect)
