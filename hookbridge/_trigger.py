"""A mixin for Airflow triggers that page through an API on one shared hookbridge adapter.

Every trigger of a triggerer runs in one event loop. A trigger built on :class:`PagingTrigger`
opens its adapter with ``open_spec(spec, shared=True)``, so all the triggers on one connection and
options lease one adapter (one connection pool, one rate limit) instead of a client session each.
It serializes the adapter's ``spec()`` (the conn_id and options, never credentials: those are
looked up again from the Airflow connection) and its position: the pagination cursor, the number
of pages and items done and a small ``state`` the subclass folds the pages into.

Resuming: Airflow re-creates a trigger from the keyword arguments it was deferred with, so the
cursor that ``serialize()`` returns later helps only code that re-serializes the trigger (tests,
an operator that re-defers). To survive a triggerer restart, give ``checkpoint`` a directory
(a local path for one triggerer machine, an object store URL such as ``s3://bucket/triggers``
otherwise): the position is written there after every ``checkpoint_every`` pages, on a worker
thread, and read back when the trigger starts again; it is deleted when the trigger completes.

The event is small: the state and counts, plus a :class:`~hookbridge.Sink` reference when
``sink`` names a directory that the items go to (a trigger event travels through the metadata
database, where a whole response does not belong).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import anyio

from ._adapter import Adapter
from ._checkpoint import FileStore
from ._errors import ConfigurationError
from ._pagination import Page
from ._registry import open_spec
from ._sink import Sink

__all__ = ["PagingTrigger"]

_VERSION = 1


class PagingTrigger:
    """Mixin for a trigger that pages through an API with a shared adapter (see the module doc).

    ::

        class CountTrigger(hookbridge.PagingTrigger, BaseTrigger):
            def __init__(self, endpoint: str, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.endpoint = endpoint

            def trigger_kwargs(self) -> dict[str, Any]:
                return {"endpoint": self.endpoint}

            def pages(self, api, cursor):
                return api.pages(self.endpoint, strategy=hookbridge.NextLink(), cursor=cursor)

        # in the operator: self.defer(trigger=CountTrigger("/items", spec=api_spec), ...)

    Subclasses implement :meth:`pages` and usually :meth:`on_page` (the default counts items
    in ``state["items"]``) and :meth:`trigger_kwargs` (their own constructor arguments).
    ``spec`` comes from ``Adapter.spec()``; ``sink`` (a directory or URL) sends every item to a
    :class:`~hookbridge.Sink`; ``checkpoint`` (a directory or URL) makes the trigger resume
    after a triggerer restart. The event payload is ``{"state", "pages", "items", "sink"}``.
    """

    def __init__(
        self,
        *,
        spec: dict[str, Any],
        cursor: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        pages_done: int = 0,
        items_done: int = 0,
        sink: str | None = None,
        sink_position: dict[str, Any] | None = None,
        checkpoint: str | None = None,
        checkpoint_key: str | None = None,
        checkpoint_every: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(spec, dict) or "conn_id" not in spec or "adapter" not in spec:
            raise ConfigurationError(
                "spec must be an adapter's spec() (a dict with 'adapter', 'conn_id', 'options'); "
                "pass api.spec() or HttpAdapter(conn_id, ...).spec(), never a connection",
                field="spec",
            )
        if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise ConfigurationError(
                f"checkpoint_every must be an integer >= 1 (pages), got {checkpoint_every!r}",
                field="checkpoint_every",
            )
        self.spec = spec
        self.cursor = cursor
        self.state: dict[str, Any] = dict(state or {})
        self.pages_done = pages_done
        self.items_done = items_done
        self.sink = sink
        self.sink_position = sink_position
        self.checkpoint = checkpoint
        self.checkpoint_key = checkpoint_key
        self.checkpoint_every = checkpoint_every
        #: The open sink while ``run()`` works (``on_page`` may write to it); None otherwise.
        self.open_sink: Sink | None = None
        # The last consistent position, which serialize() returns: with a sink, only a
        # committed sink position goes with a cursor (items after it are not stored yet).
        self._position = self._current()

    # -- what subclasses provide -----------------------------------------------------------------

    def pages(self, api: Any, cursor: dict[str, Any] | None) -> AsyncIterable[Page[Any]]:
        """The page stream, resuming after ``cursor`` (pass it to ``api.pages(cursor=...)``)."""
        raise NotImplementedError(f"{type(self).__name__} must define pages(api, cursor)")

    async def on_page(self, page: Page[Any]) -> None:
        """Fold one page into ``self.state`` (keep it small); default: count its items.

        With ``sink`` set, the page's items have already been written to ``self.open_sink``.
        """
        self.state["items"] = self.state.get("items", 0) + len(page.items)

    def trigger_kwargs(self) -> dict[str, Any]:
        """The subclass's own constructor arguments (JSON-safe) for ``serialize()``."""
        return {}

    def event_payload(self, sink_reference: dict[str, Any] | None) -> dict[str, Any]:
        """What the final event carries: small, whatever the amount of data."""
        return {
            "state": self.state,
            "pages": self.pages_done,
            "items": self.items_done,
            "sink": sink_reference,
        }

    # -- Airflow's trigger interface -------------------------------------------------------------

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and the keyword arguments, with the current position (no secret)."""
        kwargs = {
            **self.trigger_kwargs(),
            "spec": self.spec,
            **json.loads(json.dumps(self._position)),
            "sink": self.sink,
            "checkpoint": self.checkpoint,
            "checkpoint_key": self.checkpoint_key,
            "checkpoint_every": self.checkpoint_every,
        }
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    async def run(self) -> AsyncIterator[Any]:
        """Page through on the shared adapter, then yield one small ``TriggerEvent``."""
        from airflow.triggers.base import TriggerEvent

        payload = await self.work()
        yield TriggerEvent(payload)  # type: ignore[no-untyped-call]

    async def work(self) -> dict[str, Any]:
        """Everything ``run()`` does before its event: returns the event's payload."""
        store = FileStore(self.checkpoint) if self.checkpoint else None
        key = self._checkpoint_key()
        if store is not None:
            saved = await anyio.to_thread.run_sync(store.get, key, None)
            if saved is not None:
                self._restore(saved)
        reference = None
        async with AsyncExitStack() as stack:
            api: Adapter = await stack.enter_async_context(open_spec(self.spec, shared=True))
            if self.sink is not None:
                sink = await stack.enter_async_context(Sink(self.sink))
                if self.sink_position is not None:
                    await sink.restore(self.sink_position)
                self.open_sink = sink
            since_save = 0
            try:
                async for page in self.pages(api, self.cursor):
                    if self.open_sink is not None:
                        await self.open_sink.write_many(page.items)
                    await self.on_page(page)
                    self.pages_done += 1
                    self.items_done += len(page.items)
                    self.cursor = page.cursor
                    if self.open_sink is None:
                        self._position = self._current()
                    since_save += 1
                    if store is not None and since_save >= self.checkpoint_every:
                        await self._save(store, key)
                        since_save = 0
                if self.open_sink is not None:
                    self.sink_position = await self.open_sink.commit()
                    reference = self.open_sink.reference()
                    self._position = self._current()
            finally:
                self.open_sink = None
        if store is not None:
            await anyio.to_thread.run_sync(store.delete, key)
        return self.event_payload(reference)

    # -- the checkpoint --------------------------------------------------------------------------

    def _checkpoint_key(self) -> str:
        if self.checkpoint_key:
            return self.checkpoint_key
        # One key per task instance when the triggerer tells us which; else per set of kwargs.
        ti = getattr(self, "task_instance", None)
        identity: list[Any] = [type(self).__qualname__, self.spec, self.trigger_kwargs()]
        if ti is not None:
            identity += [
                str(getattr(ti, name, "")) for name in ("dag_id", "run_id", "task_id", "map_index")
            ]
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return f"trigger-{digest[:32]}"

    def _current(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "state": self.state,
            "pages_done": self.pages_done,
            "items_done": self.items_done,
            "sink_position": self.sink_position,
        }

    async def _save(self, store: FileStore, key: str) -> None:
        if self.open_sink is not None:
            self.sink_position = await self.open_sink.commit()
        self._position = json.loads(json.dumps(self._current()))
        await anyio.to_thread.run_sync(store.set, key, {"v": _VERSION, **self._position})

    def _restore(self, saved: Any) -> None:
        if not isinstance(saved, dict) or saved.get("v") != _VERSION:
            raise ConfigurationError(
                f"the trigger checkpoint in {self.checkpoint!r} is not one this version wrote; "
                "delete it to start over",
                field="checkpoint",
            )
        self.cursor = saved.get("cursor")
        self.state = dict(saved.get("state") or {})
        self.pages_done = int(saved.get("pages_done", 0))
        self.items_done = int(saved.get("items_done", 0))
        self.sink_position = saved.get("sink_position")
        self._position = self._current()
