"""SOAP envelopes of the WS-Management emulator: request parsing, responses and faults."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

__all__ = [
    "ACTIONS",
    "CTRL_C",
    "INVALID_PARAMETER",
    "OPERATION_ABORTED",
    "QUOTA_MAX_SHELLS",
    "RSP",
    "SHELL_NOT_FOUND",
    "SHELL_URI",
    "TERMINATE",
    "TIMED_OUT",
    "X",
    "Fault",
    "Request",
    "envelope",
    "fault_envelope",
    "parse_request",
]

S = "http://www.w3.org/2003/05/soap-envelope"
A = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
W = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
RSP = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
F = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
X = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
ACTIONS = {
    f"{X}/Create": "Create",
    f"{X}/Delete": "Delete",
    f"{RSP}/Command": "Command",
    f"{RSP}/Receive": "Receive",
    f"{RSP}/Send": "Send",
    f"{RSP}/Signal": "Signal",
}
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
TERMINATE = f"{RSP}/signal/terminate"
CTRL_C = f"{RSP}/signal/ctrl_c"
_DURATION = re.compile(r"^PT(\d+(?:\.\d+)?)S$")


# Fault codes a Windows server answers (winerror.h); pywinrm only tells 2150858793 apart.
TIMED_OUT = 2150858793  # ERROR_WSMAN_OPERATION_TIMEDOUT: Receive had nothing to say
QUOTA_MAX_SHELLS = 2150859173  # ERROR_WSMAN_QUOTA_MAX_SHELLS: MaxShellsPerUser reached
SHELL_NOT_FOUND = 2150858843  # ERROR_WSMAN_UNEXPECTED_SELECTORS: no such ShellId
OPERATION_ABORTED = 995  # ERROR_OPERATION_ABORTED: a Receive overtaken by a terminate
INVALID_PARAMETER = 87  # ERROR_INVALID_PARAMETER: no such CommandId, malformed body


class Fault(Exception):
    """A WSManFault to answer (HTTP 500 with a SOAP Fault body)."""

    def __init__(self, code: int, subcode: str, reason: str, *, sender: bool = False) -> None:
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.sender = sender


@dataclass(slots=True)
class Request:
    action: str
    message_id: str
    timeout: float | None
    shell_id: str | None
    options: dict[str, str]
    body: ET.Element | None


def parse_request(body: bytes) -> Request:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise Fault(
            INVALID_PARAMETER,
            "w:SchemaValidationError",
            f"The SOAP XML in the message does not match the corresponding XML schema: {exc}",
            sender=True,
        ) from None
    header = root.find(f"{{{S}}}Header")
    found_body = root.find(f"{{{S}}}Body")

    def text(path: str) -> str | None:
        element = header.find(path) if header is not None else None
        return None if element is None else (element.text or "").strip()

    timeout = None
    duration = text(f"{{{W}}}OperationTimeout")
    if duration:
        match = _DURATION.match(duration)
        if match is not None:
            timeout = float(match.group(1))
    shell_id = None
    options: dict[str, str] = {}
    if header is not None:
        for selector in header.iterfind(f"{{{W}}}SelectorSet/{{{W}}}Selector"):
            if selector.get("Name") == "ShellId":
                shell_id = (selector.text or "").strip()
        for option in header.iterfind(f"{{{W}}}OptionSet/{{{W}}}Option"):
            options[option.get("Name", "")] = (option.text or "").strip()
    return Request(
        action=text(f"{{{A}}}Action") or "",
        message_id=text(f"{{{A}}}MessageID") or "",
        timeout=timeout,
        shell_id=shell_id,
        options=options,
        body=found_body[0] if found_body is not None and len(found_body) else None,
    )


def envelope(action: str, relates_to: str, payload: str) -> bytes:
    """A response envelope whose ``a:RelatesTo`` is the request's MessageID (pywinrm checks it)."""
    text = (
        f'<s:Envelope xml:lang="en-US" xmlns:s="{S}" xmlns:a="{A}" xmlns:x="{X}" '
        f'xmlns:w="{W}" xmlns:rsp="{RSP}"><s:Header><a:Action>{action}</a:Action>'
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        f"<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header>"
        f"<s:Body>{payload}</s:Body></s:Envelope>"
    )
    return text.encode("utf-8")


def fault_envelope(fault: Fault, relates_to: str, machine: str) -> bytes:
    """The SOAP Fault a Windows server sends (with HTTP 500), WSManFault code in its Detail."""
    side = "s:Sender" if fault.sender else "s:Receiver"
    payload = (
        f"<s:Fault><s:Code><s:Value>{side}</s:Value><s:Subcode><s:Value>{fault.subcode}"
        f'</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">'
        f"{escape(fault.reason)}</s:Text></s:Reason><s:Detail>"
        f'<f:WSManFault xmlns:f="{F}" Code="{fault.code}" Machine={quoteattr(machine)}>'
        f"<f:Message>{escape(fault.reason)}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )
    return envelope(FAULT_ACTION, relates_to, payload)
