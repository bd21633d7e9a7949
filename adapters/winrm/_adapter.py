"""The WinRM adapter: remote commands over a pool of open shells, pywinrm kept off the event loop.

The endpoint, transport, timeouts and certificate settings come from the Airflow connection
through the provider's ``WinRMHook.create_protocol``; every pywinrm call (blocking, on
``requests``) runs on a worker thread through the SDK's ``call_sync``. A :class:`hookbridge.Pool`
holds at most ``max_shells`` shells (keep it within the server's MaxShellsPerUser): commands run
one after another in a shell instead of a Create and a Delete each, and a command that ended and
was read to its end is not signalled either, so an instant command costs two requests (Command,
Receive) where ``WinRMHook.run`` spends five. A shell is replaced after ``commands_per_shell``
commands (which releases the finished commands the server keeps) or when it needs another working
directory or environment. pywinrm only needs threads, so the adapter runs on asyncio and on trio.

A command is not safe to send twice, so Command and Receive are never retried as requests:
``run`` retries the whole command under the adapter's policy, after any retryable failure when the
caller says the command is ``idempotent``, otherwise only after a failure before the server could
have started it (no connection, HTTP 503). Answers are bounded: ``max_envelope_size`` caps one
HTTP answer (read through a requests response hook before it is buffered), ``max_output`` what
``run`` collects. A Create whose answer is lost leaves a shell the adapter cannot name (it
stays until the server's IdleTimeout); retrying the Create does not add to that.
"""

from __future__ import annotations

import base64
import codecs
import dataclasses
import functools
from collections import Counter
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import anyio
from airflow.providers.microsoft.winrm.hooks.winrm import WinRMHook
from winrm.protocol import Protocol

from hookbridge import (
    ConfigurationError,
    HookBridgeError,
    Pool,
    PoolStatistics,
    ResponseTooLarge,
    Retry,
    TransportError,
    UsageError,
)
from hookbridge.adapter import (
    Adapter,
    AdapterOptions,
    Option,
    checked_argument,
    positive_int,
    positive_seconds,
)

from ._command import Command, CommandStream, ShellSettings, ShellSlot
from ._results import CommandFailed, CommandResult, CommandTimeout
from ._translate import FOREIGN_ERRORS, UnreadableAnswer, read_answer, translate
from ._transport import cap_answers, close_transport

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["WinRMAdapter", "WinRMPoolStatistics"]

_POWERSHELL = "powershell -NoProfile -NonInteractive -EncodedCommand "


def _encoding(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be the name of a Python codec, got {value!r}.")
    try:
        return codecs.lookup(value).name
    except LookupError:
        raise ValueError(f"must be the name of a Python codec, got {value!r}.") from None


def _open_shell(slot: ShellSlot, settings: ShellSettings) -> None:
    """On a worker thread: Create, the id kept in the slot at once.

    Kept by the thread, not by the awaiting task: a caller cancelled while Create is in flight
    never sees the answer, and the shell would be left open on the server. With no settings
    recorded, the slot's next user deletes it (or the pool does when it disposes the slot).
    """
    shell_id = read_answer(
        slot.protocol.open_shell,
        working_directory=settings.working_directory,
        env_vars=dict(settings.env) or None,
        codepage=settings.codepage,
    )
    if not isinstance(shell_id, str) or not shell_id.strip():
        # pywinrm takes the element's text, None for an empty one: there is no shell to name.
        raise UnreadableAnswer(f"the Create answer names no shell (ShellId {shell_id!r})")
    slot.shell_id = shell_id


@dataclass(frozen=True)
class WinRMPoolStatistics:
    """The shell pool's books and what went through it."""

    pool: PoolStatistics
    shells_opened: int
    shells_closed: int
    commands: int
    #: Commands ended by Signal terminate (cancelled, timed out, or left before their end).
    terminated: int


class WinRMOptions(AdapterOptions, total=False):
    """The keyword arguments of :class:`~hookbridge.adapters.winrm.WinRMAdapter` (see its doc)."""

    max_shells: int | None
    commands_per_shell: int | None
    shell_idle_timeout: float | None
    encoding: str | None
    codepage: int | None
    cleanup_timeout: float | None
    stream_buffer: int | None
    request_timeout: float | None
    max_envelope_size: int | None
    max_output: int | None


class CommandOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`WinRMAdapter.stream`, which ``run`` takes too."""

    powershell: bool
    working_directory: str | None
    env: Mapping[str, str] | None
    #: The remote command's: it is terminated when the time is up.
    timeout: float | None
    stdin: bytes | str | None


def _broken(exc: BaseException) -> bool:
    # A transport failure leaves the HTTP session and the shell in doubt: drop the slot. A
    # remote answer (a fault, a failed command) or a cancellation leaves it usable; a shell
    # whose terminate failed is marked dead and replaced on its next checkout instead.
    return isinstance(exc, TransportError)


class WinRMAdapter(Adapter):
    """Run commands on a Windows host over WinRM: ``run``, ``stream``, ``map``, ``check``.

    ``async with WinRMAdapter("winrm_default") as winrm: result = await winrm.run("hostname")``.
    Options (arguments, or the connection extra's ``hookbridge`` key): ``max_shells`` and
    ``commands_per_shell``, ``shell_idle_timeout`` (under ``pool``), ``encoding`` and
    ``codepage`` of the output, ``cleanup_timeout`` (how long a terminate or Delete may take
    when a command is cancelled), ``stream_buffer`` (chunks held for a slow reader).
    """

    name = "winrm"
    conn_types = ("winrm",)
    declared_options = (
        Option(
            "max_shells",
            positive_int,
            default=5,
            section="pool",
            doc="shells open at once; keep it within the server's MaxShellsPerUser",
        ),
        Option(
            "commands_per_shell",
            positive_int,
            default=100,
            section="pool",
            doc="commands a shell runs before it is replaced",
        ),
        Option(
            "shell_idle_timeout",
            positive_seconds,
            default=120.0,
            section="pool",
            doc="seconds an unused shell stays open",
        ),
        Option("encoding", _encoding, default="utf-8", doc="codec of stdout and stderr"),
        Option("codepage", positive_int, default=65001, doc="the shells' console code page"),
        Option(
            "cleanup_timeout",
            positive_seconds,
            default=10.0,
            doc="seconds a terminate or a Delete may take under cancellation",
        ),
        Option("stream_buffer", positive_int, default=16, doc="chunks buffered for a reader"),
        Option(
            "request_timeout",
            positive_seconds,
            default=None,
            doc="seconds one request may wait for its answer (default: the connection's "
            "read_timeout_sec); keep it above operation_timeout_sec, the Receive long poll",
        ),
        Option(
            "max_envelope_size",
            positive_int,
            default=16 * 1024 * 1024,
            doc="bytes one WS-Management answer may have; a larger one is ResponseTooLarge",
        ),
        Option(
            "max_output",
            positive_int,
            default=256 * 1024 * 1024,
            doc="bytes of stdout and stderr run() collects; more terminates the command",
        ),
    )
    foreign_errors = FOREIGN_ERRORS

    def __init__(self, conn_id: str, **options: Unpack[WinRMOptions]) -> None:
        super().__init__(conn_id, **options)
        self._hook: Any = None
        self._conn: Any = None
        self._endpoint = ""
        self._pool: Pool[ShellSlot] | None = None
        self.counters: Counter[str] = Counter()

    # -- lifecycle -------------------------------------------------------------------------

    async def _open(self) -> None:
        self._hook = WinRMHook(ssh_conn_id=self.conn_id)
        self._conn = await self._connection(self._hook)
        first = await self._new_slot()  # settles the endpoint, and refuses a bad connection now
        max_shells = self.options["max_shells"]
        # Each running command holds a thread in its Receive; a terminate needs one more.
        self.thread_capacity = 2 * max_shells + 2
        self._pool = Pool(
            self._new_slot,
            dispose=self._dispose_slot,
            max_size=max_shells,
            idle_timeout=self.options["shell_idle_timeout"],
            is_broken=_broken,
            name=f"winrm shells of {self.conn_id}",
        )
        await self._pool.__aenter__()
        await anyio.to_thread.run_sync(close_transport, first.protocol.transport)

    async def _close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def _new_slot(self) -> ShellSlot:
        try:
            # No I/O, but pywinrm checks certificate paths on the disk: not on the loop.
            protocol = await anyio.to_thread.run_sync(self._hook.create_protocol, self._conn)
        except Exception as exc:  # AirflowException: a connection it cannot use
            raise ConfigurationError(
                f"the WinRM connection cannot be used: {self.redact(str(exc))}",
                conn_id=self.conn_id,
            ) from exc
        self._endpoint = str(self._hook.endpoint)
        if self.options["request_timeout"] is not None:
            # pywinrm keeps whole seconds; requests takes any float for the socket's reads.
            protocol.transport.read_timeout_sec = float(self.options["request_timeout"])
        cap_answers(protocol.transport, int(self.options["max_envelope_size"]))
        return ShellSlot(protocol)

    async def _dispose_slot(self, slot: ShellSlot) -> None:
        await self.drop_shell(slot, close_session=True)

    async def drop_shell(self, slot: ShellSlot, *, close_session: bool = False) -> None:
        """Delete the slot's shell (which ends whatever still runs in it), if it has one.

        If the Delete fails the slot keeps the shell, marked dead, for a later attempt; a slot
        being disposed (``close_session``) forgets it either way.
        """
        shell_id = slot.shell_id
        protocol = slot.protocol
        deleted = shell_id is None
        try:
            if shell_id is not None:
                # The session is closed below, with its pooled connections (close_transport).
                close = functools.partial(read_answer, protocol.close_shell, close_session=False)
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.cleanup_timeout):
                    if self.closed:  # the pool's aclose: no more calls, but the shells go
                        await anyio.to_thread.run_sync(close, shell_id)
                    else:
                        await self.call_sync(close, shell_id, target="delete the shell")
                    deleted = True
                    self.counters["shells_closed"] += 1
        finally:
            if deleted or close_session:
                slot.shell_id, slot.settings, slot.commands_run, slot.dead = None, None, 0, False
            else:
                slot.dead = True
            if close_session:
                await anyio.to_thread.run_sync(close_transport, protocol.transport)

    def checkout(self) -> AbstractAsyncContextManager[ShellSlot]:
        self._require_open()
        assert self._pool is not None
        return self._pool.acquire()

    async def shell_for(self, slot: ShellSlot, settings: ShellSettings) -> str:
        """The slot's shell, opened (or replaced) so that it has ``settings``."""
        if slot.shell_id is not None and (
            slot.dead
            or slot.settings != settings
            or slot.commands_run >= self.options["commands_per_shell"]
        ):
            await self.drop_shell(slot)
            if slot.shell_id is not None:
                raise TransportError(
                    f"conn_id {self.conn_id!r}: the previous shell could not be deleted within "
                    f"cleanup_timeout={self.cleanup_timeout:g} s; this slot is dropped."
                )
        if slot.shell_id is None:
            await self.call_sync(_open_shell, slot, settings, target="open a shell")
            slot.settings, slot.commands_run, slot.dead = settings, 0, False
            self.counters["shells_opened"] += 1
        assert slot.shell_id is not None
        return slot.shell_id

    # -- options in force ----------------------------------------------------------------------

    @property
    def encoding(self) -> str:
        return str(self.options["encoding"])

    @property
    def cleanup_timeout(self) -> float:
        return float(self.options["cleanup_timeout"])

    @property
    def stream_buffer(self) -> int:
        return int(self.options["stream_buffer"])

    # -- the error boundary ------------------------------------------------------------------

    def _known_secrets(self) -> tuple[str, ...]:
        password = getattr(self._conn, "password", None)
        return (password,) if password else ()

    def _translate(self, exc: Exception, target: object) -> HookBridgeError:
        return translate(
            exc,
            target,
            conn_id=self.conn_id,
            endpoint=self._endpoint or "the WinRM endpoint",
            secrets=self._known_secrets(),
        )

    # -- commands ----------------------------------------------------------------------------

    def stream(
        self,
        command: str,
        *args: str,
        powershell: bool = False,
        working_directory: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stdin: bytes | str | None = None,
    ) -> CommandStream:
        """``async with winrm.stream(cmd) as output: async for chunk in output: ...``.

        Chunks (:class:`OutputChunk`, stdout or stderr) come as the server sends them; a slow
        reader holds the command back rather than losing output. ``output.exit_code`` is set at
        the end. Leaving the block early, cancellation and ``timeout`` terminate the command.
        """
        self._require_open()
        if not isinstance(command, str) or not command.strip():
            raise UsageError(
                f"command must be a non-empty string, got {command!r}.", argument="command"
            )
        for arg in args:
            if not isinstance(arg, str):
                raise UsageError(f"arguments must be strings, got {arg!r}.", argument="args")
        if timeout is not None:
            timeout = checked_argument(positive_seconds, timeout, "timeout")
        if env is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in dict(env).items()
        ):
            raise UsageError("env must map strings to strings.", argument="env")
        if working_directory is not None and not isinstance(working_directory, str):
            raise UsageError("working_directory must be a string.", argument="working_directory")
        display = " ".join([command, *args])
        if powershell:
            script = base64.b64encode(display.encode("utf-16-le")).decode("ascii")
            line, arguments = _POWERSHELL + script, tuple[str, ...]()
        else:
            line, arguments = command, tuple(args)
        data = stdin.encode(self.encoding) if isinstance(stdin, str) else stdin
        settings = ShellSettings(
            working_directory, tuple(sorted((env or {}).items())), int(self.options["codepage"])
        )
        return CommandStream(self, Command(line, arguments, display, settings, data, timeout))

    async def run(
        self,
        command: str,
        *args: str,
        check: bool = True,
        idempotent: bool = False,
        **options: Unpack[CommandOptions],
    ) -> CommandResult:
        """Run ``command`` (with ``args``) and return its exit code and output.

        ``options`` are :meth:`stream`'s. ``powershell=True`` runs it as a PowerShell script
        (``-EncodedCommand``). A non-zero exit raises :class:`CommandFailed` (carrying the result)
        unless ``check=False``; ``timeout`` terminates the command and raises
        :class:`CommandTimeout`. Output beyond ``max_output`` bytes terminates it and raises
        :class:`~hookbridge.ResponseTooLarge`.

        A failure is retried under the adapter's policy by running the command again: with
        ``idempotent=True`` (a read that is safe to repeat) after any retryable failure, else
        only when the server cannot have started it (no connection, HTTP 503 before Command).
        """
        # Checked once, before any attempt: a bad argument is not a failure to retry.
        checked = self.stream(command, *args, **options).command
        latest: CommandStream | None = None  # the attempt that just failed, when one did

        def may_repeat(error: BaseException) -> bool:
            if not self.retry.retry_on(error):
                return False
            return idempotent or latest is None or not latest.may_have_run

        async def attempt() -> CommandResult:
            nonlocal latest
            stream = latest = CommandStream(self, checked)
            return await self._run_once(stream)

        policy: Retry = dataclasses.replace(self.retry, retry_on=may_repeat)
        result = await policy.run(attempt, on_retry=self._count_retry)
        if check and result.exit_code != 0:
            raise CommandFailed(result, conn_id=self.conn_id)
        return result

    async def _run_once(self, stream: CommandStream) -> CommandResult:
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        size = 0
        limit = int(self.options["max_output"])
        try:
            async with stream as output:
                async for chunk in output:
                    size += len(chunk.data)
                    if size > limit:
                        # Leaving the block terminates the command: its output is not read on.
                        raise ResponseTooLarge(
                            f"conn_id {self.conn_id!r}: the command {stream.display!r} wrote more "
                            f"than max_output={limit} bytes; it was terminated.",
                            limit=limit,
                        )
                    (stdout if chunk.stream == "stdout" else stderr).append(chunk.data)
        except CommandTimeout as exc:
            partial = CommandResult(
                stream.display, -1, b"".join(stdout), b"".join(stderr), self.encoding
            )
            raise CommandTimeout(
                partial, timeout=exc.timeout, conn_id=self.conn_id, terminated=exc.terminated
            ) from exc
        assert output.exit_code is not None
        return CommandResult(
            stream.display, output.exit_code, b"".join(stdout), b"".join(stderr), self.encoding
        )

    # -- probing and statistics --------------------------------------------------------------

    async def _probe(self) -> str:
        async with self.checkout() as slot:
            await self.drop_shell(slot)  # a fresh shell, within the slot's share of the quota
            result = await self._probe_in(slot)
        return f"{result} at {self._endpoint} (opened a shell, ran hostname, closed it)"

    async def _probe_in(self, slot: ShellSlot) -> str:
        settings = ShellSettings(None, (), int(self.options["codepage"]))
        shell_id = await self.shell_for(slot, settings)
        protocol: Protocol = slot.protocol
        command_id = await self.call_sync(
            read_answer, protocol.run_command, shell_id, "hostname", target="hostname"
        )
        out, _, _ = await self.call_sync(
            read_answer, protocol.get_command_output, shell_id, command_id, target="hostname"
        )
        await self.drop_shell(slot)
        return str(out.decode(self.encoding, "replace").strip() or "a WinRM host")

    def _pool_statistics(self) -> WinRMPoolStatistics | None:
        if self._pool is None:
            return None
        return WinRMPoolStatistics(
            pool=self._pool.statistics(),
            shells_opened=self.counters["shells_opened"],
            shells_closed=self.counters["shells_closed"],
            commands=self.counters["commands"],
            terminated=self.counters["terminated"],
        )

    def __repr__(self) -> str:
        return f"<WinRMAdapter conn_id={self.conn_id!r} state={self._state}>"
