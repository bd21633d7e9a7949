"""Serving a test server from its own process (``python -m``) until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

__all__ = ["argument_parser", "serve_until_signalled"]

_S = TypeVar("_S")


def argument_parser(module: str, description: str) -> argparse.ArgumentParser:
    """The command line of ``python -m hookbridge.testing.<module>``: ``--host``, ``--port``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m hookbridge.testing.{module}", description=description
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    return parser


async def serve_until_signalled(
    server: AbstractAsyncContextManager[_S], ready: Callable[[_S], None] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT (or cancellation); ``ready(server)`` is called once bound.

    The signal handlers are installed before the server starts, so a signal sent as soon as
    ``ready`` has announced the server still stops it cleanly; they are removed after.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        async with server as serving:
            if ready is not None:
                ready(serving)
            await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
