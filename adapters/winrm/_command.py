"""One remote command on a pooled shell: its output pump, its watchdog and its clean-up.

``stream()`` returns a :class:`CommandStream`: entering it checks a shell out of the pool, sends
Command (and stdin), and starts a task group holding the *pump* (Receive after Receive, each on a
worker thread through ``call_sync``, into a bounded memory object stream: when the reader falls
behind, the pump stops asking and the server holds the output, so nothing is dropped) and, with a
timeout, a *watchdog*. Leaving it early, by cancellation or by the timeout, sends Signal terminate
from another worker thread, shielded and bounded by ``cleanup_timeout``: the server ends the
command and answers the pump's pending Receive, so the threads come back promptly. The shell then
goes back to the pool; if the terminate failed, the shell is marked dead and replaced before its
next command.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream
from winrm.protocol import Protocol

from hookbridge import ConnectFailed, HookBridgeError, Retry, Throttled

from ._receive import receive_output
from ._results import CommandResult, CommandTimeout, OutputChunk
from ._translate import UnreadableAnswer, read_answer

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from ._adapter import WinRMAdapter

__all__ = ["NO_RETRY", "Command", "CommandOutput", "CommandStream", "ShellSettings", "ShellSlot"]

#: Command and Receive are not safe to repeat: a second Command runs it twice, a second Receive
#: would skip what the lost answer carried.
NO_RETRY = Retry(attempts=1)


@dataclass(frozen=True)
class ShellSettings:
    """What a shell is created with; a command that needs other settings gets a new shell."""

    working_directory: str | None
    env: tuple[tuple[str, str], ...]
    codepage: int


@dataclass(frozen=True)
class Command:
    """A command as ``stream()`` checked it: what is sent, and how it is run and shown."""

    line: str
    args: tuple[str, ...]
    #: The command as the caller wrote it, for messages and results.
    display: str
    settings: ShellSettings
    stdin: bytes | None
    timeout: float | None


class ShellSlot:
    """One place in the pool: a pywinrm ``Protocol`` (its own HTTP session) and its open shell."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.shell_id: str | None = None
        self.settings: ShellSettings | None = None
        self.commands_run = 0
        #: A terminate failed: the shell may still run something; replace it before reuse.
        self.dead = False

    def __repr__(self) -> str:  # never the protocol: it holds the password
        return f"<ShellSlot shell_id={self.shell_id} commands_run={self.commands_run}>"


def _receive_once(
    protocol: Protocol, shell_id: str, command_id: str
) -> tuple[bytes, bytes, int, bool]:
    """One Receive, read strictly (``_receive``); a fault's parse errors become UnreadableAnswer."""
    return read_answer(receive_output, protocol, shell_id, command_id)


class CommandOutput:
    """The chunks of one command as they arrive (``async for``); then ``exit_code``."""

    def __init__(self, receive: ObjectReceiveStream[OutputChunk], run: CommandStream) -> None:
        self._receive = receive
        self._run = run

    def __aiter__(self) -> CommandOutput:
        return self

    async def __anext__(self) -> OutputChunk:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            await self._run.raise_outcome()
            raise StopAsyncIteration from None

    @property
    def exit_code(self) -> int | None:
        """The exit code once the stream has ended, else None."""
        return self._run.exit_code

    @property
    def command(self) -> str:
        return self._run.display


class CommandStream:
    """``async with adapter.stream(...) as output:`` (see the module docstring)."""

    def __init__(self, adapter: WinRMAdapter, command: Command) -> None:
        self._adapter = adapter
        self.command = command
        self.display = command.display
        self.exit_code: int | None = None
        self.timed_out = False
        self.terminated = False
        self._error: HookBridgeError | None = None
        self._terminating = False
        self._terminate_done: anyio.Event | None = None
        self._lease: AbstractAsyncContextManager[ShellSlot] | None = None
        self._slot: ShellSlot | None = None
        self._shell_id = ""
        self._command_id = ""
        # Set by the worker thread around Command (plain flags: the loop only polls them).
        self._command_sending = False
        self._command_answered = False
        #: Command was refused before the server acted on it (no connection, HTTP 503).
        self._command_refused = False
        self._abandoned = False
        self._send_lock = threading.Lock()  # decides, once, between sending and abandoning
        self._tasks: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[OutputChunk] | None = None
        self._watchdog_scope = anyio.CancelScope()
        self._entered = False

    async def _call(self, fn: Callable[..., Any], *args: Any, retry: Retry | None = None) -> Any:
        return await self._adapter.call_sync(fn, *args, retry=retry, target=self.display)

    async def __aenter__(self) -> CommandOutput:
        if self._entered:
            raise RuntimeError("a command stream is entered once")
        self._entered = True
        adapter = self._adapter
        self._lease = lease = adapter.checkout()
        slot = self._slot = await lease.__aenter__()
        try:
            self._shell_id = await adapter.shell_for(slot, self.command.settings)
            send, receive = anyio.create_memory_object_stream[OutputChunk](adapter.stream_buffer)
            tasks = anyio.create_task_group()
            await tasks.__aenter__()
        except BaseException as exc:
            await self._leave(type(exc), exc, exc.__traceback__)
            raise
        # Until Command answers the shell is suspect: a Command cancelled on its way may have
        # started the command, whose id we then never learn. The pump clears this.
        slot.dead = True
        slot.commands_run += 1
        adapter.counters["commands"] += 1
        self._tasks = tasks
        self._receive = receive
        tasks.start_soon(self._pump, send)
        if self.command.timeout is not None:
            tasks.start_soon(self._watchdog, self.command.timeout)
        return CommandOutput(receive, self)

    def _start(self, protocol: Protocol) -> tuple[bytes, bytes, int, bool]:
        """On a worker thread: Command, stdin, and the first Receive, in one hand-off.

        The command id is published as soon as Command answers, so that a terminate sent from
        the event loop meanwhile (cancellation, timeout) can name it.
        """
        command = self.command
        with self._send_lock:
            if self._abandoned:  # terminated before it was sent: send nothing
                return b"", b"", -1, True
            self._command_sending = True
        try:
            command_id = read_answer(
                protocol.run_command, self._shell_id, command.line, command.args
            )
            if isinstance(command_id, str) and command_id.strip():
                # Published before the answer is flagged: a terminate that waits for the flag
                # reads the id next (set after it, a terminate could find no id and skip).
                self._command_id = command_id
        finally:
            self._command_answered = True
        if not self._command_id:
            # The command may run, unnamed: the shell stays suspect and is deleted (dead).
            raise UnreadableAnswer(
                f"the Command answer names no command (CommandId {command_id!r})"
            )
        if command.stdin is not None:
            read_answer(
                protocol.send_command_input, self._shell_id, self._command_id, command.stdin, True
            )
        return _receive_once(protocol, self._shell_id, self._command_id)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks, self._tasks = self._tasks, None
        if self._receive is not None:
            self._receive.close()  # a pump blocked on a full buffer now ends
        try:
            if self.exit_code is None:
                # Left before the end (cancelled, an error, a break): stop the command first, so
                # that the pump's Receive returns and its thread comes back.
                await self.terminate()
            if tasks is not None:
                tasks.cancel_scope.cancel()
                if exc is None or isinstance(exc, anyio.get_cancelled_exc_class()):
                    await tasks.__aexit__(exc_type, exc, tb)
                else:
                    # The block's own error stays the caller's; handed to the task group it
                    # would come back wrapped in an exception group.
                    await tasks.__aexit__(None, None, None)
        finally:
            # In a finally: the task group re-raises a cancellation it was handed.
            slot = self._slot
            if slot is not None and slot.dead:
                # The terminate failed or had nothing to name: Delete the shell now (shielded
                # and bounded), which ends whatever runs in it, rather than at its next use.
                with contextlib.suppress(HookBridgeError):
                    await self._adapter.drop_shell(slot)
            await self._leave(exc_type, exc, tb)

    async def _leave(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            if self._error is not None and exc is None:
                exc_type, exc = type(self._error), self._error  # a broken session: drop it
            await lease.__aexit__(exc_type, exc, tb)

    async def raise_outcome(self) -> None:
        """At the end of the output: the pump's error, or the timeout, if either ended it."""
        if self._error is not None:
            raise self._error
        if self.timed_out:
            # The watchdog's terminate may still wait for the server's answer when the aborted
            # Receive comes back first: report how it ended, not how far it had got. It begins
            # in the same step that sets timed_out, and cleanup_timeout bounds it.
            if self._terminate_done is not None:
                await self._terminate_done.wait()
            raise CommandTimeout(
                CommandResult(self.display, -1, b"", b"", self._adapter.encoding),
                timeout=self.command.timeout or 0.0,
                conn_id=self._adapter.conn_id,
                terminated=self.terminated,
            )

    async def _pump(self, send: ObjectSendStream[OutputChunk]) -> None:
        slot = self._slot
        assert slot is not None
        async with send:
            try:
                answer = await self._call(self._start, slot.protocol, retry=NO_RETRY)
                if self._abandoned:
                    return
                if not self._terminating:
                    slot.dead = False
                receive = functools.partial(
                    _receive_once, slot.protocol, self._shell_id, self._command_id
                )
                while True:
                    out, err, code, done = answer
                    if out:
                        await send.send(OutputChunk("stdout", out))
                    if err:
                        await send.send(OutputChunk("stderr", err))
                    if done:
                        self.exit_code = code
                        break
                    answer = await self._call(receive, retry=NO_RETRY)
            except HookBridgeError as exc:
                if not self._command_id and isinstance(exc, (ConnectFailed, Throttled)):
                    self._command_refused = True
                if not self._terminating:  # after a terminate the pending Receive is aborted
                    self._error = exc
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the reader left: __aexit__ terminates the command
            finally:
                self._watchdog_scope.cancel()

    @property
    def may_have_run(self) -> bool:
        """Whether the server may have started the command (a write must not be sent again)."""
        return self._command_sending and not self._command_refused

    async def _watchdog(self, seconds: float) -> None:
        with self._watchdog_scope:
            await anyio.sleep(seconds)
            self.timed_out = True
            await self.terminate()

    async def terminate(self) -> None:
        """Signal terminate, once, shielded and bounded; on failure the shell is marked dead."""
        if self._terminate_done is not None:
            with anyio.CancelScope(shield=True):
                await self._terminate_done.wait()
            return
        self._terminate_done = anyio.Event()
        self._terminating = True
        slot = self._slot
        try:
            if slot is None:
                return
            with self._send_lock:
                if not self._command_sending:
                    self._abandoned = True  # never sent: nothing runs, the shell is clean
            if self._abandoned:
                self.terminated = True
                slot.dead = False
                return
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._adapter.cleanup_timeout):
                # A Command on its way: wait for its answer, which names what to terminate.
                while self._command_sending and not self._command_answered:  # noqa: ASYNC110
                    await anyio.sleep(0.005)
                if not self._command_id:
                    return
                try:
                    await self._call(
                        read_answer,
                        slot.protocol.cleanup_command,
                        self._shell_id,
                        self._command_id,
                    )
                    self.terminated = True
                    self._adapter.counters["terminated"] += 1
                except HookBridgeError:
                    pass  # reported through slot.dead: the shell is replaced
            # The command is gone (its shell is clean again), or the shell is in doubt.
            slot.dead = not self.terminated
        finally:
            self._terminate_done.set()
