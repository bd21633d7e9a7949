"""The WS-Management emulator served from elsewhere: its own thread (trio tests), its own process.

``serve_in_thread`` runs a :class:`~hookbridge.testing._wsman_server.WSManTestServer` on an
asyncio loop in a thread, for tests whose own loop is trio; ``python -m
hookbridge.testing._wsman_server`` (``main``) serves it from its own process until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ._serve import argument_parser, serve_until_signalled
from ._wsman_server import WSManTestServer

__all__ = ["main", "serve_forever", "serve_in_thread"]


@contextlib.contextmanager
def serve_in_thread(**options: Any) -> Iterator[WSManTestServer]:
    """Run a ``WSManTestServer(**options)`` on its own asyncio loop in a thread, for trio tests.

    The yielded server's log and counters are read from the caller's thread; they are plain
    Python objects updated by the server's loop, fine to read between operations.
    """
    started = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        state["loop"] = asyncio.get_running_loop()
        state["stop"] = stop = asyncio.Event()
        async with WSManTestServer(**options) as server:
            state["server"] = server
            started.set()
            await stop.wait()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported to the caller's thread below
            state["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, name="wsman-emulator", daemon=True)
    thread.start()
    started.wait()
    try:
        if "server" not in state:
            raise RuntimeError("the WS-Management emulator did not start") from state.get("error")
        yield state["server"]
    finally:
        if "stop" in state:
            state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join()
        if "error" in state:
            raise RuntimeError("the WS-Management emulator failed") from state["error"]


async def serve_forever(
    *, ready: Callable[[WSManTestServer], None] | None = None, **options: Any
) -> None:
    """Serve until SIGTERM or SIGINT (or cancellation); ``ready(server)`` is called once bound."""
    await serve_until_signalled(WSManTestServer(**options), ready)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the endpoint URL (and with --tls the CA file), then serve."""
    parser = argument_parser(
        "_wsman_server", "Serve the hookbridge WS-Management emulator until SIGTERM/SIGINT."
    )
    parser.add_argument("--user", default="winrm-user")
    parser.add_argument("--password", default="winrm-test-secret")
    parser.add_argument("--tls", action="store_true", help="serve https (prints the CA file too)")
    parser.add_argument("--max-shells-per-user", type=int, default=30)
    parser.add_argument("--max-receive-bytes", type=int, default=64 * 1024)
    args = parser.parse_args(argv)

    def ready(server: WSManTestServer) -> None:
        print(server.endpoint, flush=True)
        if server.ca_path is not None:
            print(server.ca_path, flush=True)

    asyncio.run(serve_forever(ready=ready, **vars(args)))  # the options are the server's
    return 0
