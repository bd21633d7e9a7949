"""Loopback WS-Management (WinRM) emulator that pywinrm and the provider's WinRMHook talk to.

A real aiohttp server on 127.0.0.1 (random port, optional TLS from a ``trustme`` CA) answering
``POST /wsman`` with the SOAP envelopes pywinrm 0.5 parses: Create (a cmd shell), Command,
Receive (a long poll that waits up to the request's ``w:OperationTimeout`` for output and answers
the real WSManFault 2150858793 when none came), Send (stdin), Signal (terminate, ctrl_c) and
Delete. Commands run a tiny language (see ``_wsman_shell``): lines over time, stderr, exit codes,
tens of MB of output generated in chunks, stdin, hanging until terminated, PowerShell
``-EncodedCommand``. A per-user shell quota (``max_shells_per_user``) is answered with the real
QuotaLimit fault (2150859173), a wrong password with HTTP 401.

Authentication is HTTP Basic only (pywinrm transports ``plaintext``, ``basic`` and ``ssl``). NTLM
is not emulated: pywinrm's NTLM over HTTP wraps every message in NTLM session encryption, so the
server would need a connection-bound NTLM handshake plus the encrypted multipart framing.

The server keeps a log of every command (``commands``) and counters (``statistics()``), so tests
can prove that shells were reused and that nothing is left open. ``python -m
hookbridge.testing._wsman_server --port 0`` serves from its own process and prints the endpoint
URL; ``GET /hookbridge/statistics`` then answers the counters as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import dataclasses
import functools
import hmac
import ssl
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import anyio
from aiohttp import hdrs, web

from ._app_server import AppServer
from ._http_endpoints import _basic_credentials
from ._wsman_shell import Command, CommandRecord, Shell
from ._wsman_soap import (
    ACTIONS,
    CTRL_C,
    INVALID_PARAMETER,
    OPERATION_ABORTED,
    QUOTA_MAX_SHELLS,
    RSP,
    SHELL_NOT_FOUND,
    SHELL_URI,
    TERMINATE,
    TIMED_OUT,
    Fault,
    Request,
    X,
    envelope,
    fault_envelope,
    parse_request,
)
from ._wsman_storm import WSManStorm

_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"

__all__ = ["WSManStatistics", "WSManTestServer"]


@dataclass(frozen=True, slots=True)
class WSManStatistics:
    """A snapshot of what the emulator holds and has done since start (or ``clear()``)."""

    requests: int  # HTTP requests, rejected ones included
    shells_open: int
    shells_created: int
    shells_deleted: int
    max_shells_open: int  # the most shells open at once
    commands_open: int  # started and not yet released by Signal terminate or Delete
    commands_running: int  # whose program has not ended
    commands_started: int
    commands_terminated: int  # ended by Signal terminate or Delete while they ran
    receive_timeouts: int  # Receives answered with the OperationTimeout fault
    quota_faults: int
    auth_failures: int
    max_buffered: int  # the most output bytes buffered for one command (its pipe)


class WSManTestServer(AppServer, WSManStorm):
    """The emulator: ``async with WSManTestServer() as server:``; ``server.endpoint`` is its URL.

    Faults on demand (a seeded storm, hostile answers) come from
    :class:`~hookbridge.testing._wsman_storm.WSManStorm`, ``open_connections`` from
    :class:`~hookbridge.testing._app_server.AppServer`. Only asyncio (aiohttp), on the running
    loop of whoever starts it. A stopped server does not restart. ``users`` maps more user names
    to passwords besides ``user``/``password``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "winrm-user",
        password: str = "winrm-test-secret",
        users: Mapping[str, str] | None = None,
        tls: bool = False,
        max_shells_per_user: int = 30,
        max_receive_bytes: int = 64 * 1024,
        buffer_limit: int = 256 * 1024,
        hostname: str = "WIN-HOOKBRIDGE",
        shutdown_timeout: float = 1.0,
    ) -> None:
        for name, value in (
            ("max_shells_per_user", max_shells_per_user),
            ("max_receive_bytes", max_receive_bytes),
            ("buffer_limit", buffer_limit),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        AppServer.__init__(self, host=host, port=port, shutdown_timeout=shutdown_timeout)
        self.user = user
        self.password = password
        self.users = {user: password, **(users or {})}
        self.tls = tls
        self.max_shells_per_user = max_shells_per_user
        self.max_receive_bytes = max_receive_bytes
        self.buffer_limit = buffer_limit
        self.hostname = hostname
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self.ca_path: Path | None = None
        """With ``tls``: the PEM file of the CA that signed the server's certificate."""
        self._shells: dict[str, Shell] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._errors: list[BaseException] = []
        self.commands: list[CommandRecord] = []
        """Every command started, oldest first, with its state, exit code and byte counts."""
        self.action_counts: Counter[str] = Counter()
        """Requests per action (``Create``, ``Command``, ``Receive``, ``Send``, ``Signal``,
        ``Delete``), counted once authenticated."""
        self._counters: Counter[str] = Counter()
        self._init_storm()

    # -- lifecycle -------------------------------------------------------------------------------

    async def _bind(self) -> None:
        await self._listen(
            "wsman",
            self._build_app(),
            port=self._requested_port,
            ssl_context=self._ssl_context(),
            handler_cancellation=True,  # a client that leaves ends its long poll
        )

    async def stop(self) -> None:
        """Terminate every command, close the listener and connections; raise emulator bugs."""
        with anyio.move_on_after(self._shutdown_timeout + 10, shield=True):
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks)
        await super().stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None
        if self._errors:
            raise RuntimeError(f"the WS-Management emulator failed: {self._errors[0]!r}")

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        import trustme

        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(self.host, "localhost").configure_cert(context)
        self._tempdir = tempfile.TemporaryDirectory(prefix="hookbridge-wsman-")
        self.ca_path = Path(self._tempdir.name) / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        return context

    # -- addresses and connections ---------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port("wsman")

    @property
    def endpoint(self) -> str:
        """``http(s)://HOST:PORT/wsman``, the URL pywinrm posts to."""
        return self._origin("https" if self.tls else "http", "wsman") + "/wsman"

    def airflow_connection(
        self,
        *,
        login: str | None = None,
        password: str | None = None,
        operation_timeout_sec: int = 2,
        read_timeout_sec: int = 5,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An Airflow winrm connection (the JSON form of ``AIRFLOW_CONN_<ID>``) for this server.

        Short timeouts so a long poll on a silent command ends quickly; ``extra`` is merged last.
        """
        conn_extra: dict[str, Any] = {
            "endpoint": self.endpoint,
            "transport": "ssl" if self.tls else "plaintext",
            "operation_timeout_sec": operation_timeout_sec,
            "read_timeout_sec": read_timeout_sec,
        }
        if self.tls:
            conn_extra["server_cert_validation"] = "validate"
            conn_extra["ca_trust_path"] = str(self.ca_path)
        conn_extra.update(extra or {})
        return {
            "conn_type": "winrm",
            "host": self.host,
            "login": self.user if login is None else login,
            "password": self.password if password is None else password,
            "extra": conn_extra,
        }

    # -- log and counters ------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        return self._counters["requests"]

    def statistics(self) -> WSManStatistics:
        commands = [c for shell in self._shells.values() for c in shell.commands.values()]
        return WSManStatistics(
            requests=self._counters["requests"],
            shells_open=len(self._shells),
            shells_created=self._counters["shells_created"],
            shells_deleted=self._counters["shells_deleted"],
            max_shells_open=self._counters["max_shells_open"],
            commands_open=len(commands),
            commands_running=sum(1 for task in self._tasks if not task.done()),
            commands_started=self._counters["commands_started"],
            commands_terminated=self._counters["commands_terminated"],
            receive_timeouts=self._counters["receive_timeouts"],
            quota_faults=self._counters["quota_faults"],
            auth_failures=self._counters["auth_failures"],
            max_buffered=self._counters["max_buffered"],
        )

    def open_shells(self) -> dict[str, list[str]]:
        """Open shell ids and, for each, the command ids it still holds."""
        return {sid: list(shell.commands) for sid, shell in self._shells.items()}

    def shell_commands_run(self) -> dict[str, int]:
        """How many commands each shell ever opened has run (shell reuse, per ShellId)."""
        runs: Counter[str] = Counter(record.shell_id for record in self.commands)
        return dict(runs)

    def clear(self) -> None:
        """Forget the command log and the counters (open shells and commands stay)."""
        self.commands.clear()
        self.action_counts.clear()
        self._counters.clear()
        self._counters["max_shells_open"] = len(self._shells)

    # -- HTTP ------------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/wsman", self._wsman)
        app.router.add_get("/hookbridge/statistics", self._statistics)
        return app

    async def _statistics(self, request: web.Request) -> web.StreamResponse:
        payload = dataclasses.asdict(self.statistics())
        payload["actions"] = dict(self.action_counts)
        return web.json_response(payload)

    async def _wsman(self, request: web.Request) -> web.StreamResponse:
        self._counters["requests"] += 1
        user = self._authenticate(request.headers.get(hdrs.AUTHORIZATION, ""))
        body = await request.read()
        if user is None:
            self._counters["auth_failures"] += 1
            return web.Response(
                status=401,
                headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="WSMAN"'},
            )
        try:
            parsed = parse_request(body)
        except Fault as fault:
            return self._fault_response(fault, "")
        name = ACTIONS.get(parsed.action)
        answer = functools.partial(self._answer, parsed, name, user)
        return await self._serve_action(request, parsed, name, answer)

    async def _answer(self, parsed: Request, name: str | None, user: str) -> web.Response:
        try:
            if name is None:
                raise Fault(
                    INVALID_PARAMETER,
                    "a:ActionNotSupported",
                    f"The action {parsed.action!r} is not supported by the service.",
                    sender=True,
                )
            self.action_counts[name] += 1
            handler = getattr(self, f"_on_{name.lower()}")
            action, payload = await handler(parsed, user)
        except Fault as fault:
            return self._fault_response(fault, parsed.message_id)
        body = envelope(action, parsed.message_id, payload)
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: _CONTENT_TYPE})

    def _authenticate(self, header: str) -> str | None:
        credentials = _basic_credentials(header)
        if credentials is None:
            return None
        user, password = credentials
        expected = self.users.get(user)
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            return None
        return user

    def _fault_response(self, fault: Fault, relates_to: str) -> web.Response:
        body = fault_envelope(fault, relates_to, self.hostname)
        return web.Response(status=500, body=body, headers={hdrs.CONTENT_TYPE: _CONTENT_TYPE})

    # -- actions ---------------------------------------------------------------------------------

    def _shell(self, request: Request, user: str) -> Shell:
        shell = self._shells.get(request.shell_id or "")
        if shell is None or shell.user != user:
            raise Fault(
                SHELL_NOT_FOUND,
                "w:InvalidSelectors",
                f"The request for the Windows Remote Shell with ShellId {request.shell_id} failed "
                "because the shell was not found on the server. Possible causes are: the specified "
                "ShellId is incorrect or the shell no longer exists on the server. Provide the "
                "correct ShellId or create a new shell and retry the operation.",
                sender=True,
            )
        return shell

    def _command(self, shell: Shell, command_id: str | None) -> Command:
        command = shell.commands.get(command_id or "")
        if command is None:
            raise Fault(
                INVALID_PARAMETER,
                "w:InvalidParameter",
                f"The Windows Remote Shell received a request to perform an operation on command "
                f"identifier {command_id} that does not exist in shell {shell.shell_id}.",
                sender=True,
            )
        return command

    async def _on_create(self, request: Request, user: str) -> tuple[str, str]:
        if sum(1 for s in self._shells.values() if s.user == user) >= self.max_shells_per_user:
            self._counters["quota_faults"] += 1
            raise Fault(
                QUOTA_MAX_SHELLS,
                "w:QuotaLimit",
                "The WS-Management service cannot process the request. This user is allowed a "
                f"maximum number of {self.max_shells_per_user} concurrent shells, which has been "
                "exceeded. Close existing shells or raise the quota for this user.",
            )
        body = request.body
        environment: dict[str, str] = {}
        working_directory = f"C:\\Users\\{user}"
        if body is not None:
            found = body.find(f"{{{RSP}}}WorkingDirectory")
            if found is not None and found.text:
                working_directory = found.text
            for variable in body.iterfind(f"{{{RSP}}}Environment/{{{RSP}}}Variable"):
                environment[variable.get("Name", "")] = variable.text or ""
        try:
            codepage = int(request.options.get("WINRS_CODEPAGE", "437"))
            codecs.lookup("utf-8" if codepage == 65001 else f"cp{codepage}")
        except (ValueError, LookupError):
            raise Fault(
                INVALID_PARAMETER, "w:InvalidParameter", "WINRS_CODEPAGE is not a known code page"
            ) from None
        shell_id = str(uuid.uuid4()).upper()
        self._shells[shell_id] = Shell(shell_id, user, working_directory, environment, codepage)
        self._counters["shells_created"] += 1
        self._counters["max_shells_open"] = max(
            self._counters["max_shells_open"], len(self._shells)
        )
        payload = (
            f"<x:ResourceCreated><a:Address>{escape(self.endpoint)}</a:Address>"
            f"<a:ReferenceParameters><w:ResourceURI>{SHELL_URI}</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            f"</a:ReferenceParameters></x:ResourceCreated>"
            f"<rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId><rsp:Owner>{escape(user)}</rsp:Owner>"
            f"<rsp:InputStreams>stdin</rsp:InputStreams>"
            f"<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"
        )
        return f"{X}/CreateResponse", payload

    async def _on_delete(self, request: Request, user: str) -> tuple[str, str]:
        shell = self._shell(request, user)
        for command in list(shell.commands.values()):
            await self._release(shell, command)
        del self._shells[shell.shell_id]
        self._counters["shells_deleted"] += 1
        return f"{X}/DeleteResponse", ""

    async def _on_command(self, request: Request, user: str) -> tuple[str, str]:
        shell = self._shell(request, user)
        line = request.body.find(f"{{{RSP}}}Command") if request.body is not None else None
        if line is None or not (line.text or "").strip():
            raise Fault(
                INVALID_PARAMETER, "w:InvalidParameter", "rsp:CommandLine has no rsp:Command"
            )
        arguments = [a.text or "" for a in request.body.iterfind(f"{{{RSP}}}Arguments")]  # type: ignore[union-attr]
        command_line = " ".join([(line.text or "").strip(), *arguments]).strip()
        command = Command(
            shell, command_line, hostname=self.hostname, buffer_limit=self.buffer_limit
        )
        shell.commands[command.command_id] = command
        shell.commands_run += 1
        self.commands.append(command.record)
        self._counters["commands_started"] += 1
        task = asyncio.get_running_loop().create_task(self._run(command))
        command.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        payload = (
            f"<rsp:CommandResponse><rsp:CommandId>{command.command_id}</rsp:CommandId>"
            f"</rsp:CommandResponse>"
        )
        return f"{RSP}/CommandResponse", payload

    async def _run(self, command: Command) -> None:
        # Owned by the server: cancelled by a terminate, a Delete or stop(), and awaited there.
        try:
            await command.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an emulator bug: reported by stop(), not swallowed
            self._errors.append(exc)
            command.mark_terminated()
        finally:
            self._counters["max_buffered"] = max(
                self._counters["max_buffered"], command.max_buffered
            )

    async def _on_receive(self, request: Request, user: str) -> tuple[str, str]:
        shell = self._shell(request, user)
        desired = request.body.find(f"{{{RSP}}}DesiredStream") if request.body is not None else None
        command = self._command(shell, desired.get("CommandId") if desired is not None else None)
        timeout = request.timeout if request.timeout is not None else 60.0
        received = await command.receive(timeout, self.max_receive_bytes)
        if received is None:
            self._counters["receive_timeouts"] += 1
            raise Fault(
                TIMED_OUT,
                "w:TimedOut",
                "The WS-Management service cannot complete the operation within the time "
                "specified in OperationTimeout.",
            )
        if command.record.terminated:
            raise Fault(
                OPERATION_ABORTED,
                "w:InternalError",
                "The I/O operation has been aborted because of either a thread exit or an "
                "application request.",
            )
        chunks, done = received
        cid = command.command_id
        parts = [
            f'<rsp:Stream Name="{stream}" CommandId="{cid}">'
            f"{base64.b64encode(data).decode('ascii')}</rsp:Stream>"
            for stream, data in chunks
        ]
        if done:
            parts.append(f'<rsp:Stream Name="stdout" CommandId="{cid}" End="true"></rsp:Stream>')
            parts.append(f'<rsp:Stream Name="stderr" CommandId="{cid}" End="true"></rsp:Stream>')
            parts.append(
                f'<rsp:CommandState CommandId="{cid}" State="{RSP}/CommandState/Done">'
                f"<rsp:ExitCode>{command.record.exit_code}</rsp:ExitCode></rsp:CommandState>"
            )
        else:
            parts.append(
                f'<rsp:CommandState CommandId="{cid}" State="{RSP}/CommandState/Running"/>'
            )
        return (
            f"{RSP}/ReceiveResponse",
            f"<rsp:ReceiveResponse>{''.join(parts)}</rsp:ReceiveResponse>",
        )

    async def _on_send(self, request: Request, user: str) -> tuple[str, str]:
        shell = self._shell(request, user)
        stream = request.body.find(f"{{{RSP}}}Stream") if request.body is not None else None
        if stream is None or stream.get("Name") != "stdin":
            raise Fault(INVALID_PARAMETER, "w:InvalidParameter", "rsp:Send has no stdin stream")
        command = self._command(shell, stream.get("CommandId"))
        try:
            data = base64.b64decode(stream.text or "", validate=True)
        except binascii.Error:
            raise Fault(
                INVALID_PARAMETER, "w:InvalidParameter", "the stdin stream is not base64"
            ) from None
        await command.send_stdin(data, stream.get("End", "false").lower() == "true")
        return f"{RSP}/SendResponse", "<rsp:SendResponse/>"

    async def _on_signal(self, request: Request, user: str) -> tuple[str, str]:
        shell = self._shell(request, user)
        body = request.body
        code = body.find(f"{{{RSP}}}Code") if body is not None else None
        command = self._command(shell, body.get("CommandId") if body is not None else None)
        kind = (code.text or "").strip() if code is not None else ""
        if kind == TERMINATE:
            await self._release(shell, command)
        elif kind == CTRL_C:
            await self._stop_program(command)
        else:
            raise Fault(INVALID_PARAMETER, "w:InvalidParameter", f"unknown signal {kind!r}")
        return f"{RSP}/SignalResponse", "<rsp:SignalResponse/>"

    async def _stop_program(self, command: Command) -> None:
        task = command.task
        if task is not None and not task.done():
            self._counters["commands_terminated"] += 1
            task.cancel()
            await asyncio.wait([task])
        command.mark_terminated()
        await command.wake()

    async def _release(self, shell: Shell, command: Command) -> None:
        await self._stop_program(command)
        shell.commands.pop(command.command_id, None)


if __name__ == "__main__":
    from ._wsman_serve import main

    sys.exit(main())
