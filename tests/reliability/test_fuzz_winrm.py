"""Fuzzing what the WinRM adapter reads from the server: only declared hookbridge errors.

The adapter's own strict Receive parser (``parse_receive``) on envelopes built from hostile
parts and on arbitrary bytes; the error boundary (``translate``) on faults and transport errors
with arbitrary fields; and the pywinrm parsing the adapter calls (Create's ShellId, Command's
CommandId, a fault's code, an error page's charset) end to end, with the emulator's answers to
Create, Command or Receive replaced by hypothesis' bytes: each command ends as a result or a
hookbridge error, never another exception.

Examples per test: the ``hookbridge-fuzz`` profile (tests/reliability/conftest.py).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_subjects import Subject
from subject_winrm import WINRM_LOGIN, WINRM_PASSWORD, winrm_only  # noqa: F401 -- a fixture
from winrm.exceptions import WinRMTransportError, WSManFaultError

from hookbridge import HookBridgeError, Retry
from hookbridge.adapters.winrm._receive import parse_receive
from hookbridge.adapters.winrm._translate import UnreadableAnswer, translate
from hookbridge.testing import WSManTestServer

FUZZ = settings.get_profile("hookbridge-fuzz")
RSP = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"

TEXT = st.text(max_size=40)
B64ISH = st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()) | TEXT
STREAM = st.tuples(
    st.sampled_from(["stdout", "stderr", "", "stdin", "STDOUT"]) | TEXT,
    B64ISH,
    st.booleans(),
)
STATE = st.sampled_from(
    [f"{RSP}/CommandState/Done", f"{RSP}/CommandState/Running", "", "Done", "x/CommandState/Done"]
)
EXIT = st.none() | st.integers(-(2**40), 2**40).map(str) | TEXT


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def _envelope(streams: list[tuple[str, str, bool]], state: str, code: str | None) -> str:
    ending = ' End="true"'
    parts = [
        f'<rsp:Stream Name="{_escape(name)}"{ending if end else ""}>{_escape(text)}</rsp:Stream>'
        for name, text, end in streams
    ]
    exit_code = "" if code is None else f"<rsp:ExitCode>{_escape(code)}</rsp:ExitCode>"
    parts.append(f'<rsp:CommandState State="{_escape(state)}">{exit_code}</rsp:CommandState>')
    return (
        f'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:rsp="{RSP}">'
        f"<s:Body><rsp:ReceiveResponse>{''.join(parts)}</rsp:ReceiveResponse></s:Body>"
        "</s:Envelope>"
    )


def _check_receive(answer: bytes | str) -> None:
    try:
        out, err, code, done = parse_receive(answer)
    except UnreadableAnswer:
        return  # the one declared way to refuse
    assert isinstance(out, bytes) and isinstance(err, bytes)
    assert -(2**31) <= code < 2**32
    assert done or code == -1


@FUZZ
@given(streams=st.lists(STREAM, max_size=5), state=STATE, code=EXIT)
def test_a_receive_envelope_parses_or_is_unreadable(
    streams: list[tuple[str, str, bool]], state: str, code: str | None
) -> None:
    _check_receive(_envelope(streams, state, code))


@FUZZ
@given(answer=st.binary(max_size=300) | TEXT.map(str.encode))
def test_any_bytes_as_a_receive_answer_parse_or_are_unreadable(answer: bytes) -> None:
    _check_receive(answer)


@FUZZ
@given(
    status=st.integers(400, 599),
    fault_code=st.none() | st.sampled_from(["s:Receiver", "s:Sender"]) | TEXT,
    wsman_code=st.none() | st.integers(-(2**40), 2**40),
    reason=st.none() | TEXT,
    body=TEXT,
)
def test_a_fault_or_error_status_becomes_a_hookbridge_error(
    status: int, fault_code: str | None, wsman_code: int | None, reason: str | None, body: str
) -> None:
    errors = [
        WSManFaultError(status, "http", body, reason or "", fault_code, None, wsman_code),
        WinRMTransportError("http", status, body),
    ]
    for error in errors:
        made = translate(error, "echo x", conn_id="c", endpoint="e", secrets=["pw"])
        assert isinstance(made, HookBridgeError)
        assert str(made)


# -- pywinrm's parsing, end to end over the emulator ---------------------------------------------

XMLISH = st.sampled_from(
    [
        b"",
        b"<",
        b"<s:Envelope/>",
        b'<a xmlns:x="y"><x:CommandId/></a>',
        b'<a><b Name="ShellId"/></a>',
        b'<a><b Name="ShellId">id</b><RelatesTo>uuid:zz</RelatesTo></a>',
        b"\xff\xfe",
        b'<!DOCTYPE a [<!ENTITY e "e">]><a>&e;</a>',
    ]
) | st.binary(max_size=200)


@pytest.fixture
async def fuzz_server(
    winrm_only: Subject,  # noqa: F811 -- the fixture imported above
) -> AsyncIterator[tuple[Subject, WSManTestServer, str]]:
    """A server the examples share, with no shell quota, and one connection to it.

    A Create whose answer cannot be read leaves its shell on the server: with no quota they
    never crowd out later examples. One connection for all: Airflow's secret masker keeps (and
    compiles a pattern of) every connection it sees, which would grow with thousands of them.
    """
    async with WSManTestServer(
        user=WINRM_LOGIN, password=WINRM_PASSWORD, max_shells_per_user=10**9
    ) as server:
        yield winrm_only, server, winrm_only.connect_to(server.host, server.port)


@settings(
    FUZZ,
    # The server fixture is shared by the examples on purpose (see fuzz_server).
    suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.function_scoped_fixture],
)
@given(
    action=st.sampled_from(["Create", "Command", "Receive"]),
    status=st.sampled_from([200, 400, 500, 503]),
    body=XMLISH,
)
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_any_answer_to_a_winrm_request_ends_in_a_result_or_a_hookbridge_error(
    fuzz_server: tuple[Subject, WSManTestServer, str], action: str, status: int, body: bytes
) -> None:
    subject, server, conn_id = fuzz_server
    server.tamper(action, lambda _status, _body: (status, body))
    try:
        async with subject.adapter(conn_id, retry=Retry.none()) as api:
            try:
                result = await api.run("echo", "fuzz", check=False)
            except HookBridgeError:
                return  # declared: what the test is about
            assert result.exit_code is not None
    finally:
        server.tamper(action, None)
