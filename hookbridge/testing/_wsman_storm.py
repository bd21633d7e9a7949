"""The WS-Management emulator's fault storm and hostile answers.

A mixin of :class:`~hookbridge.testing._wsman_server.WSManTestServer`: the server hands every
authenticated request to :meth:`WSManStorm._serve_action` with a callable that produces the real
answer, so a fault can strike before the server acts, or after it acted and while (or after) it
answers.

The storm reaches the requests that carry an item of the reliability suite: the Command of
``echo storm read N`` or ``echo storm write N``, and the Receives of that command (``Storm``
methods ``Command:read``, ``Receive:read``, ``Command:write``, ``Receive:write``). Create,
Signal and Delete pass untouched: they belong to no item, and a Delete lost to a storm would
leave a shell open that a real server only reclaims after its IdleTimeout (hours), which is no
property of the adapter. A write is applied when the server starts its command: the emulator logs
every command it starts (``server.commands``) and the storm counts it in ``Storm.applied``.

The storm's fates, as a Windows server acts them out:

- ``drop-before``: the connection closes before the server acts (nothing runs, nothing is read);
- ``drop-during``: the server acts (a command starts, a Receive drains its output), then the
  connection closes half-way through the answer;
- ``drop-after``: the whole answer, then the connection closes;
- ``500``: HTTP 500 with a SOAP fault the server blames on itself (``s:Receiver``, WSManFault
  1726, "The remote procedure call failed."), before acting;
- ``503``, and ``429`` too: WinRM has no 429 and no Retry-After. When it is overloaded, HTTP.sys
  answers 503 with its HTML page before WinRM sees the request, so both are served as that 503
  (and counted as ``503``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import hdrs, web

from ._app_server import answer_then_drop, drop_connection
from ._storm import StormHost
from ._wsman_soap import RSP, Fault, Request

__all__ = ["RPC_CALL_FAILED", "STORM_COMMAND", "Tamper", "WSManStorm"]

#: ``echo storm read N`` / ``echo storm write N``: the commands the storm strikes.
STORM_COMMAND = re.compile(r"^echo storm (read|write) (\d+)$")
RPC_CALL_FAILED = 1726  # RPC_S_CALL_FAILED: "The remote procedure call failed."
#: What HTTP.sys answers when an application's request queue is full.
HTTPSYS_503 = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">\r\n'
    "<HTML><HEAD><TITLE>Service Unavailable</TITLE>\r\n"
    '<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>\r\n'
    "<BODY><h2>Service Unavailable</h2>\r\n<hr><p>HTTP Error 503. The service is unavailable.</p>"
    "\r\n</BODY></HTML>\r\n"
)
_COMMAND_ID = re.compile(rb"<rsp:CommandId>([^<]+)</rsp:CommandId>")

#: Replaces the answer to one action: ``(status, body) -> (status, body)``, or an async
#: iterator of body chunks, served chunked (as long as it lasts, or until the client leaves).
Tamper = Callable[[int, bytes], "tuple[int, bytes] | AsyncIterator[bytes]"]


class WSManStorm(StormHost):
    """Storm and hostile answers of the emulator (see the module docstring)."""

    hostname: str
    _fault_response: Callable[[Fault, str], web.Response]

    def _init_storm(self) -> None:
        self._storm_commands: dict[str, tuple[str, int]] = {}
        self._tampers: dict[str, Tamper] = {}

    # -- what tests call --------------------------------------------------------------------

    def _storm_started(self) -> None:
        self._storm_commands.clear()

    def tamper(self, action: str, answer: Tamper | None) -> None:
        """Serve ``answer(status, body)`` instead of the real answer to ``action`` (None: stop).

        The server still acts on the request (a shell is made, a command runs), as a server
        whose answers a proxy corrupts.
        """
        if answer is None:
            self._tampers.pop(action, None)
        else:
            self._tampers[action] = answer

    # -- what the server calls --------------------------------------------------------------

    async def _serve_action(
        self,
        request: web.Request,
        parsed: Request,
        action: str | None,
        answer: Callable[[], Awaitable[web.Response]],
    ) -> web.StreamResponse:
        storm = self.storm_counts
        key = None if storm is None or action is None else self._storm_key(parsed, action)
        if storm is None or key is None:
            return await self._tampered(request, action, await answer())
        storm.attempts[key] += 1
        method, item = key
        fate = storm.fate(method, item, storm.attempts[key])
        fate = "503" if fate == "429" else fate
        storm.fates[fate] += 1
        if fate == "drop-before":
            return await drop_connection(request)
        if fate == "500":
            fault = Fault(RPC_CALL_FAILED, "w:InternalError", "The remote procedure call failed.")
            return self._fault_response(fault, parsed.message_id)
        if fate == "503":
            return web.Response(status=503, text=HTTPSYS_503, content_type="text/html")
        response = await answer()
        if response.status == 200 and action == "Command":
            found = _COMMAND_ID.search(bytes(response.body or b""))  # type: ignore[arg-type]
            if found is not None:
                kind = method.partition(":")[2]
                self._storm_commands[found.group(1).decode()] = (f"Receive:{kind}", item)
                if kind == "write":
                    storm.applied[item] += 1
        if fate == "ok":
            storm.answered[key] += 1
            return response
        return await answer_then_drop(request, storm, key, response, fate)

    def _storm_key(self, parsed: Request, action: str) -> tuple[str, int] | None:
        body = parsed.body
        if body is None:
            return None
        if action == "Command":
            line = body.find(f"{{{RSP}}}Command")
            arguments = [a.text or "" for a in body.iterfind(f"{{{RSP}}}Arguments")]
            text = " ".join([(line.text or "") if line is not None else "", *arguments]).strip()
            match = STORM_COMMAND.match(text)
            return None if match is None else (f"Command:{match.group(1)}", int(match.group(2)))
        if action == "Receive":
            desired = body.find(f"{{{RSP}}}DesiredStream")
            command_id = desired.get("CommandId", "") if desired is not None else ""
            return self._storm_commands.get(command_id)
        return None

    async def _tampered(
        self, request: web.Request, action: str | None, response: web.Response
    ) -> web.StreamResponse:
        tamper = self._tampers.get(action or "")
        if tamper is None:
            return response
        made = tamper(response.status, bytes(response.body or b""))  # type: ignore[arg-type]
        if isinstance(made, tuple):
            status, body = made
            return web.Response(
                status=status, body=body, headers={hdrs.CONTENT_TYPE: response.content_type}
            )
        endless = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "application/soap+xml"})
        endless.enable_chunked_encoding()
        try:
            await endless.prepare(request)
            async for chunk in made:
                await endless.write(chunk)
            await endless.write_eof()
        except ConnectionError:
            pass  # the client gave up on it: what a cap is for
        return endless
