"""The running event loop's clock, read without asking sniffio which library runs each time.

``anyio.current_time()`` looks the backend up on every call (about 1 µs); code that reads the
clock once per call or per item (the limiter's grants, the fan-out's progress) resolves the
backend's clock once with :func:`running_loop` and keeps it while it runs in that loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import anyio

__all__ = ["on_asyncio", "running_loop"]


def _plain_clock(token: object) -> Callable[[], float] | None:
    """``time.monotonic`` itself for an asyncio loop whose ``time()`` is the stock one.

    That is what such a loop's ``time()`` returns, without the two Python calls around it. A loop
    with its own clock (uvloop, a test's virtual time that patches ``time``) keeps it.
    """
    if (
        isinstance(token, asyncio.BaseEventLoop)
        and type(token).time is asyncio.BaseEventLoop.time
        and "time" not in vars(token)
    ):
        return time.monotonic
    return None


try:  # anyio 4 keeps this private; it saves the sniffio dispatch
    from anyio._core._eventloop import get_async_backend as _get_async_backend

    def running_loop() -> tuple[Callable[[], float], object]:
        """The running backend's clock, and an object that identifies the running loop."""
        backend = _get_async_backend()
        token = backend.current_token()
        return _plain_clock(token) or backend.current_time, token

except ImportError:  # pragma: no cover - a future anyio may move it; stay correct, just slower
    import anyio.lowlevel

    def running_loop() -> tuple[Callable[[], float], object]:
        """The running backend's clock, and an object that identifies the running loop."""
        return anyio.current_time, anyio.lowlevel.current_token().native_token


def on_asyncio() -> bool:
    """Whether the running event loop is asyncio's (False under trio, or with no loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
