"""The running event loop's clock, read without asking sniffio which library runs each time.

``anyio.current_time()`` looks the backend up on every call (about 1 µs); code that reads the
clock once per call or per item (the limiter's grants, the fan-out's progress) resolves the
backend's clock once with :func:`running_loop` and keeps it while it runs in that loop.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

__all__ = ["running_loop"]

try:  # anyio 4 keeps this private; it saves the sniffio dispatch
    from anyio._core._eventloop import get_async_backend as _get_async_backend

    def running_loop() -> tuple[Callable[[], float], object]:
        """The running backend's clock, and an object that identifies the running loop."""
        backend = _get_async_backend()
        return backend.current_time, backend.current_token()

except ImportError:  # pragma: no cover - a future anyio may move it; stay correct, just slower
    import anyio.lowlevel

    def running_loop() -> tuple[Callable[[], float], object]:
        """The running backend's clock, and an object that identifies the running loop."""
        return anyio.current_time, anyio.lowlevel.current_token().native_token
