"""The receiving end of ``amap``: hands results out (in input order when asked) and ends the run.

Split from ``_fanout.py``, which holds the producer and the workers; both share one ``_Run``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ObjectReceiveStream

from ._groups import owned_task_group

if TYPE_CHECKING:
    from ._fanout import _Run

__all__ = ["open_results"]

_MISSING: Any = object()


class _Results(ObjectReceiveStream[Any]):
    """The receiving end ``amap`` yields: hands results out in order and frees window room."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._ordered = run.ordered
        self._receiving = False  # ordered: a task is waiting in _wait
        self._closed = False

    def _take(self) -> Any:
        """A result ready to deliver, or _MISSING (then _wait decides: wait, fail or end)."""
        if self._receiving:
            # Two tasks restoring one order would each wait for a result the other took.
            raise anyio.BusyResourceError("receiving from")
        return self._pop()

    def _pop(self) -> Any:
        run = self._run
        if run.failures or self._closed:
            return _MISSING
        if self._ordered:
            payload = run.finished.pop(run.next_index, _MISSING)
            if payload is _MISSING:
                return _MISSING
            run.next_index += 1
        else:
            if not run.finished_order:
                return _MISSING
            payload = run.finished_order.popleft()
        run.delivered_one()
        return payload

    async def receive(self) -> Any:
        payload = self._take()
        if payload is not _MISSING:
            return payload
        return await self._wait()

    async def __anext__(self) -> Any:
        # Without ObjectReceiveStream's __anext__, which awaits receive(): one coroutine less
        # per result when it is ready, as it usually is.
        payload = self._take()
        if payload is not _MISSING:
            return payload
        try:
            return await self._wait()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def _wait(self) -> Any:
        run = self._run
        if self._closed:
            raise anyio.ClosedResourceError
        self._receiving = self._ordered
        try:
            while True:
                if run.failures:
                    await self._fail()
                payload = self._pop()
                if payload is not _MISSING:
                    return payload
                if run.ended:
                    break
                await self._news()
        finally:
            self._receiving = False
        # Raised outside any except block, so the error does not chain to another.
        raise self._end()

    def _end(self) -> BaseException:
        run = self._run
        if run.failures:
            return run.batch_error()
        error, run.source_error = run.source_error, None
        return error if error is not None else anyio.EndOfStream()

    async def _fail(self) -> None:
        # Wait until every worker has ended, so that the error names every failure and the
        # counts are final; results that arrive meanwhile are not delivered.
        run = self._run
        while not run.ended:
            await self._news()
        raise run.batch_error()

    async def _news(self) -> None:
        # Until a worker delivers a result or ends; a receiver cancelled meanwhile leaves the list.
        receiver = anyio.Event()
        self._run.receivers.append(receiver)
        try:
            await receiver.wait()
        finally:
            if not receiver.is_set():
                self._run.receivers.remove(receiver)

    async def aclose(self) -> None:
        # Nobody wants the rest: stop the work rather than let it finish for nothing.
        self._closed = True
        self._run.finished.clear()
        self._run.finished_order.clear()
        self._run.stop()


@asynccontextmanager
async def open_results(run: _Run, items: object) -> AsyncIterator[ObjectReceiveStream[Any]]:
    run.start()
    try:
        async with owned_task_group() as tg:
            tg.start_soon(run.work, items)
            try:
                yield _Results(run)
            finally:
                # The consumer left: whatever is still running is not wanted.
                run.stop()
    finally:
        run.summary()
