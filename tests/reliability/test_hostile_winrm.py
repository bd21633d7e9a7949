"""Hostile WS-Management answers: each gets a specific hookbridge error, never a crash or a hang.

The emulator acts on every request for real (a shell is made, a command runs) and a tamper
replaces its answer, as a broken proxy or a hostile server would: output that is not base64, an
answer that is not XML or lacks the element pywinrm looks for, a fault whose code is not a
number, an error page that is not UTF-8, an exit code out of range, an answer that never ends,
one that declares a gigabyte. A command whose output never ends is cut at ``max_output``. After
each, the adapter still works and the server holds nothing open of the failed command.
"""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from reliability_subjects import Subject
from subject_winrm import winrm_only  # noqa: F401 -- the fixture

from hookbridge import MalformedResponse, ResponseTooLarge, Retry

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
    pytest.mark.timeout(60),
]

HARD_DEADLINE = 15
CAP = 64 * 1024  # max_output
ENVELOPE_CAP = 256 * 1024  # max_envelope_size: above one Receive of the emulator (64 KiB base64)
_STREAM = re.compile(rb'(<rsp:Stream Name="stdout"[^>]*>)[^<]+(</rsp:Stream>)')


@pytest.fixture
async def winrm(
    winrm_only: Subject,  # noqa: F811 -- the fixture imported above
) -> AsyncIterator[tuple[Any, Any]]:
    """The WinRM adapter (no retries, small caps) on the emulator, and the emulator."""
    subject = winrm_only
    options = {"max_envelope_size": ENVELOPE_CAP, "max_output": CAP}
    async with subject.adapter(subject.conn_id, retry=Retry.none(), **options) as api:
        with anyio.fail_after(HARD_DEADLINE):
            yield api, subject.server
            # Still works once the server behaves, and nothing of the hostile run is left.
            for action in ("Create", "Command", "Receive"):
                subject.server.tamper(action, None)
            assert (await api.run("echo", "fine")).stdout.strip() == "fine"
            assert subject.server.statistics().commands_running == 0


def _replace_output(text: bytes) -> Callable[[int, bytes], tuple[int, bytes]]:
    return lambda status, body: (status, _STREAM.sub(rb"\g<1>" + text + rb"\g<2>", body))


def _replace(old: bytes, new: bytes) -> Callable[[int, bytes], tuple[int, bytes]]:
    return lambda status, body: (status, body.replace(old, new))


# A SOAP fault whose WSManFault code is not a number (pywinrm int()s it).
FAULT_CODE_ABC = (
    b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault>'
    b"<s:Code><s:Value>s:Receiver</s:Value></s:Code><s:Detail>"
    b'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="abc"/>'
    b"</s:Detail></s:Fault></s:Body></s:Envelope>"
)

HOSTILE: dict[str, tuple[str, Callable[[int, bytes], tuple[int, bytes]], str]] = {
    # action, tamper, what the error says
    "output-not-base64": ("Receive", _replace_output(b"!!not*base64!!"), "not base64"),
    "output-bad-padding": ("Receive", _replace_output(b"aGVsbG8"), "not base64"),
    "output-not-ascii": ("Receive", _replace_output("aGVsbG8=é".encode()), "not base64"),
    "receive-not-xml": ("Receive", lambda s, b: (s, b"<s:Envelope><unclosed"), "not XML"),
    "receive-html": ("Receive", lambda s, b: (s, b"<html><body>proxy</body></html>"), "no rsp"),
    "stream-unnamed": ("Receive", _replace(b'Name="stdout"', b'Name="stdother"'), "stream"),
    "exit-code-garbage": ("Receive", _replace(b"<rsp:ExitCode>0", b"<rsp:ExitCode>x0"), "exit"),
    # An exit code past the 32-bit range Windows has.
    "exit-code-huge": (
        "Receive",
        _replace(b"<rsp:ExitCode>0", b"<rsp:ExitCode>99999999999"),
        "out of range",
    ),
    "command-without-id": ("Command", _replace(b"CommandId>", b"Other>"), "StopIteration"),
    "command-not-xml": ("Command", lambda s, b: (s, b"\x00\x01garbage"), "ParseError"),
    "create-with-empty-shell-id": (
        "Create",
        lambda s, b: (s, re.sub(rb'(Name="ShellId">)[^<]+', rb"\g<1>", b)),
        "names no shell",
    ),
    "command-with-empty-id": (
        "Command",
        lambda s, b: (s, re.sub(rb"(<rsp:CommandId>)[^<]+", rb"\g<1>", b)),
        "names no command",
    ),
    "create-without-shell-id": ("Create", _replace(b'Name="ShellId"', b'Name="X"'), "Stop"),
    "fault-code-not-a-number": ("Receive", lambda s, b: (500, FAULT_CODE_ABC), "ValueError"),
    "error-page-not-utf8": ("Command", lambda s, b: (500, b"\xff\xfe\xfd not utf-8"), "Unicode"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_a_hostile_answer_is_a_malformed_response(winrm: tuple[Any, Any], case: str) -> None:
    api, server = winrm
    action, tamper, message = HOSTILE[case]
    server.tamper(action, tamper)
    with pytest.raises(MalformedResponse, match=message) as info:
        await api.run("echo", "hostile", idempotent=True)
    assert "WS-Management" in str(info.value)


async def test_an_answer_that_never_ends_is_cut_at_the_cap(winrm: tuple[Any, Any]) -> None:
    api, server = winrm
    sent = 0

    async def forever() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 1
            yield b"<rsp:Stream>" + b"A" * 8192 + b"</rsp:Stream>"

    server.tamper("Receive", lambda status, body: forever())
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge, match="max_envelope_size") as info:
            await api.run("echo", "endless")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.limit == ENVELOPE_CAP
    assert peak < 8 * 1024 * 1024, peak  # the cap and its buffers, not the stream
    # The server was stopped soon after the cap, not drained: what it wrote is what the kernel's
    # loopback socket buffers (a few MiB each way) took before the client hung up.
    assert sent * 8192 < 32 * 1024 * 1024, sent


async def test_an_answer_declaring_too_many_bytes_is_refused_unread(
    winrm: tuple[Any, Any],
) -> None:
    api, server = winrm
    server.tamper("Receive", lambda status, body: (status, body + b" " * (2 * ENVELOPE_CAP)))
    with pytest.raises(ResponseTooLarge, match=r"declared \d+ bytes, more than max_envelope"):
        await api.run("echo", "padded")


async def test_a_command_whose_output_never_ends_is_terminated_at_max_output(
    winrm: tuple[Any, Any],
) -> None:
    api, server = winrm
    server.clear()
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge, match="max_output") as info:
            await api.run("bytes", str(10**12))  # a terabyte, made as it is read
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.limit == CAP
    assert peak < 16 * 1024 * 1024, peak
    (record,) = server.commands
    assert record.terminated, record  # stopped on the server, not left running
    assert record.stdout_bytes < 64 * CAP
