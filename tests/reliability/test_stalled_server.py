"""Stalled servers: one that accepts and never answers, one that answers a byte a second.

Every item of a fan-out must end with a timeout error, each within the configured bounds (the
attempt timeout times the attempts, capped by the retry deadline), never a hang: each test also
runs under a hard deadline of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream, TaskGroup
from reliability_subjects import Subject, timed_reads

from hookbridge import DeadlineExceeded, HookBridgeError, Retry, TransportError

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
    pytest.mark.timeout(60),
]

ITEMS = 20
ATTEMPT_TIMEOUT = 0.4
DEADLINE = 1.0
RETRY = Retry(attempts=3, backoff=0.0, deadline=DEADLINE)
# Loop scheduling on a loaded machine: how late past its deadline an item may end.
SLACK = 1.5
HARD_DEADLINE = 20
# An HTTP status line, headers and body, sent one byte at a time.
DRIP = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{"id": 0}'


async def _silent(stream: SocketStream) -> None:
    async with stream:
        await stream.receive()
        await anyio.sleep_forever()


async def _drip(stream: SocketStream) -> None:
    async with stream:
        await stream.receive()
        for byte in DRIP:
            await stream.send(bytes([byte]))
            await anyio.sleep(1.0)
        await anyio.sleep_forever()


@asynccontextmanager
async def stalled_server(
    handler: Callable[[SocketStream], object],
) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server on 127.0.0.1 running ``handler`` per connection; yields (port, accepted)."""
    accepted: list[int] = []

    async def serve(stream: SocketStream) -> None:
        accepted.append(1)
        # The client hanging up is what a stalled server expects.
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            await handler(stream)  # type: ignore[misc]

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg: TaskGroup
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve, tg)
            try:
                yield port, accepted
            finally:
                tg.cancel_scope.cancel()


def _is_timeout(error: BaseException | None) -> bool:
    if isinstance(error, DeadlineExceeded):
        return True
    text = str(error).lower()
    return isinstance(error, TransportError) and ("timeout" in text or "stopped sending" in text)


@pytest.mark.parametrize("behaviour", [_silent, _drip], ids=["never-answers", "byte-a-second"])
async def test_every_item_times_out_within_the_deadline(
    subject: Subject, behaviour: Callable[[SocketStream], object]
) -> None:
    with anyio.fail_after(HARD_DEADLINE):
        async with stalled_server(behaviour) as (port, accepted):
            conn_id = subject.connect_to("127.0.0.1", port)
            options = subject.attempt_timeout(ATTEMPT_TIMEOUT)
            if subject.connects_at_open:
                # The open is what meets the stalled server: it must time out the same way.
                # (The subject's own tests stall its real server under open adapters.)
                started = anyio.current_time()
                with pytest.raises(HookBridgeError) as info:
                    async with subject.adapter(conn_id, retry=RETRY, **options):
                        pass
                took = anyio.current_time() - started
                assert accepted, "the client never reached the stalled server"
                assert _is_timeout(info.value), repr(info.value)
                assert ATTEMPT_TIMEOUT * 0.9 <= took <= DEADLINE + SLACK, took
                return

            async with subject.adapter(conn_id, retry=RETRY, **options) as api:
                outcomes, elapsed = await timed_reads(subject, api, ITEMS)
    assert accepted, "the client never reached the stalled server"
    assert sorted(o.index for o in outcomes) == list(range(ITEMS))
    wrong = [repr(o.error)[:200] for o in outcomes if not _is_timeout(o.error)]
    assert not wrong, wrong
    assert all(isinstance(o.error, HookBridgeError) for o in outcomes)
    # Each waited at least one attempt's timeout, and no item outlived the retry deadline.
    assert min(elapsed.values()) >= ATTEMPT_TIMEOUT * 0.9
    assert max(elapsed.values()) <= DEADLINE + SLACK, max(elapsed.values())
    print(
        f"\n[{subject.name}] stalled ({behaviour.__name__}): attempted={ITEMS} timed_out="
        f"{ITEMS} max_elapsed={max(elapsed.values()):.2f}s deadline={DEADLINE}s"
    )


@pytest.mark.parametrize("behaviour", [_silent, _drip], ids=["never-answers", "byte-a-second"])
async def test_an_http_stream_from_a_stalled_server_times_out(
    subject: Subject, behaviour: Callable[[SocketStream], object]
) -> None:
    if subject.name != "http":
        pytest.skip("HTTP streams only")
    with anyio.fail_after(HARD_DEADLINE):
        async with stalled_server(behaviour) as (port, _):
            conn_id = subject.connect_to("127.0.0.1", port)
            # Streams have no total timeout by default: sock_read (here the attempt timeout)
            # is what ends a server that stops, or drips slower than that.
            async with subject.adapter(
                conn_id, retry=Retry(attempts=2, backoff=0.0), timeout=ATTEMPT_TIMEOUT
            ) as api:
                started = anyio.current_time()
                with pytest.raises(TransportError) as info:
                    async with api.stream("GET", "/items/0") as body:
                        await body.read()
                took = anyio.current_time() - started
    assert _is_timeout(info.value), info.value
    assert took <= 2 * ATTEMPT_TIMEOUT + SLACK
