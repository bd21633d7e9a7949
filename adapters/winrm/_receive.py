"""One Receive, read strictly: the command's output as the server sent it, or a refusal.

pywinrm's ``get_command_output_raw`` decodes output with a lenient ``base64.b64decode`` that
silently drops characters outside the alphabet, so a corrupt answer would become corrupt output
rather than an error. The adapter sends the same Receive request (pywinrm builds its header) and
reads the answer here: every stream must be base64 (validated), named stdout or stderr, and the
exit code of a finished command an integer in the 32-bit range Windows uses. Anything else
raises :class:`UnreadableAnswer`, which the error boundary makes a ``MalformedResponse``.
"""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET

import xmltodict  # type: ignore[import-untyped]
from winrm.exceptions import WinRMOperationTimeoutError
from winrm.protocol import Protocol

from ._translate import UnreadableAnswer

__all__ = ["parse_receive", "receive_output"]

_RSP = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
_CMD_URI = f"{_RSP}/cmd"
_RECEIVE = f"{_RSP}/Receive"
# Windows exit codes are DWORDs, shown signed by some tools: both ranges are real.
_EXIT_CODES = range(-(2**31), 2**32)


def receive_output(
    protocol: Protocol, shell_id: str, command_id: str
) -> tuple[bytes, bytes, int, bool]:
    """On a worker thread: one Receive; the operation-timeout fault means "no output yet"."""
    request = {
        "env:Envelope": protocol.build_wsman_header(
            resource_uri=_CMD_URI, action=_RECEIVE, shell_id=shell_id
        )
    }
    body = request["env:Envelope"].setdefault("env:Body", {})
    desired = {"@CommandId": command_id, "#text": "stdout stderr"}
    body["rsp:Receive"] = {"rsp:DesiredStream": desired}
    try:
        answer = protocol.send_message(xmltodict.unparse(request))
    except WinRMOperationTimeoutError:
        return b"", b"", -1, False
    return parse_receive(answer)


def parse_receive(answer: bytes | str) -> tuple[bytes, bytes, int, bool]:
    """``(stdout, stderr, exit code or -1, done)`` of a ReceiveResponse; UnreadableAnswer else."""
    try:
        root = ET.fromstring(answer)
    except ET.ParseError as exc:
        raise UnreadableAnswer(f"not XML: {exc}") from None
    response = root.find(f".//{{{_RSP}}}ReceiveResponse")
    if response is None:
        raise UnreadableAnswer("no rsp:ReceiveResponse in the answer")
    output: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    for stream in response.iterfind(f"{{{_RSP}}}Stream"):
        name = stream.get("Name")
        if name not in output:
            raise UnreadableAnswer(f"an output stream named {str(name)[:40]!r}")
        text = (stream.text or "").strip()
        if not text:
            continue
        try:
            output[name].append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise UnreadableAnswer(f"the {name} stream is not base64: {exc}") from None
    state = response.find(f"{{{_RSP}}}CommandState")
    done = state is not None and state.get("State", "").endswith("/CommandState/Done")
    code = -1
    if done:
        assert state is not None
        found = state.find(f"{{{_RSP}}}ExitCode")
        text = (found.text or "").strip() if found is not None else ""
        try:
            code = int(text, 10) if len(text) <= 12 else _EXIT_CODES.stop
        except ValueError:
            raise UnreadableAnswer(f"the exit code {text[:40]!r} is not a number") from None
        if code not in _EXIT_CODES:
            raise UnreadableAnswer(f"the exit code {text[:40]!r} is out of range")
    return b"".join(output["stdout"]), b"".join(output["stderr"]), code, done
