"""Shells and commands of the WS-Management emulator, and the tiny command language it runs.

A command line (``rsp:Command`` plus its ``rsp:Arguments``) is a list of steps separated by
newlines, ``;``, ``&`` or ``&&`` (a step after ``&&`` is skipped when the step before failed, as in
cmd). ``%NAME%`` is replaced by the shell's environment variable ``NAME`` first. Steps:

- ``echo TEXT`` (also ``Write-Output``/``Write-Host``): TEXT and CRLF on stdout;
- ``stderr TEXT`` (also ``Write-Error``): TEXT and CRLF on stderr;
- ``exit N``: stop here with exit code N;
- ``sleep SECONDS`` (also ``Start-Sleep [-Seconds] S``): wait;
- ``lines N [INTERVAL [TEXT]]``: N lines ``TEXT i`` (i = 1..N, TEXT defaults to ``line``) on
  stdout, INTERVAL seconds apart (default 0): output spread over ``(N - 1) * INTERVAL`` seconds;
- ``bytes N [stderr]``: N bytes of ``pattern_bytes`` (see the HTTP test server; its
  ``expected_sha256(N)`` is their digest), written 64 KiB at a time, never whole in memory;
- ``cat``: copy stdin to stdout until the client sends End;
- ``hang``: run until terminated (Signal terminate or Delete of the shell);
- ``cd``: print the shell's working directory; ``hostname`` and ``whoami`` print the server's
  name and the user.

An unknown step writes cmd's "is not recognized" message to stderr and fails with exit code 1; a
malformed step (``lines x``) says what is wrong on stderr and fails with exit code 1. PowerShell
lines (``powershell``/``pwsh`` with ``-EncodedCommand BASE64`` of UTF-16LE, or ``-Command TEXT``)
run the decoded script in the same language. Output is encoded with the shell's code page (437 by
default, as pywinrm asks; 65001 is UTF-8).

A command writes into a bounded buffer that Receive drains: a command that produces faster than
the client reads waits, as a real process blocks on its pipe, so the server's memory stays flat.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from ._http_server import pattern_bytes

__all__ = ["Command", "CommandRecord", "Shell", "decode_powershell", "parse_steps"]

_CHUNK_SIZE = 64 * 1024
_CHUNK = pattern_bytes(_CHUNK_SIZE)  # a whole number of the pattern's blocks
_SEPARATOR = re.compile(r"\r?\n|&&|&|;")
_POWERSHELL = re.compile(r"^\s*\"?(?:[^\s\"]*[\\/])?(?:powershell|pwsh)(?:\.exe)?\"?\s+(.*)$", re.I)
_ENCODED = re.compile(r"(?:^|\s)-(?:e|ec|enc|encodedcommand)\s+(\S+)", re.I)
_INLINE = re.compile(r"(?:^|\s)-(?:c|command)\s+(.*)$", re.I | re.S)
_VARIABLE = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")

Stream = Literal["stdout", "stderr"]
State = Literal["running", "done", "terminated"]


class _StepError(Exception):
    """A step the language cannot run; its message goes to stderr."""


class _Exit(Exception):
    """``exit N``: the command ends here with ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def decode_powershell(command_line: str) -> str | None:
    """The script of a ``powershell -EncodedCommand``/``-Command`` line, or None if it is not one.

    Raises ValueError when the encoded command is not base64 of UTF-16LE text.
    """
    match = _POWERSHELL.match(command_line)
    if match is None:
        return None
    rest = match.group(1)
    encoded = _ENCODED.search(rest)
    if encoded is not None:
        try:
            raw = base64.b64decode(encoded.group(1), validate=True)
            return raw.decode("utf-16-le")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"-EncodedCommand is not base64 of UTF-16LE text: {exc}") from None
    inline = _INLINE.search(rest)
    if inline is not None:
        return inline.group(1).strip().strip('"')
    return None


def parse_steps(script: str) -> list[tuple[str, str]]:
    """``(separator before the step, step text)`` pairs; empty steps are dropped."""
    steps: list[tuple[str, str]] = []
    position = 0
    separator = ""
    for match in _SEPARATOR.finditer(script):
        text = script[position : match.start()].strip()
        if text:
            steps.append((separator, text))
            separator = match.group(0).strip()
        elif match.group(0) == "&&":
            separator = "&&"
        position = match.end()
    tail = script[position:].strip()
    if tail:
        steps.append((separator, tail))
    return steps


@dataclass(slots=True)
class CommandRecord:
    """What the server knows of one command, kept after it ends (the emulator's command log)."""

    command_id: str
    shell_id: str
    user: str
    command_line: str
    script: str | None  # the decoded PowerShell script, if the line was one
    state: State = "running"
    exit_code: int | None = None
    terminated: bool = False  # Signal terminate or Delete reached it while it ran
    stdin_bytes: int = 0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    receives: int = 0


@dataclass(slots=True)
class Shell:
    """One open shell: its options and the commands not yet signalled."""

    shell_id: str
    user: str
    working_directory: str
    environment: dict[str, str]
    codepage: int
    commands: dict[str, Command] = field(default_factory=dict)
    commands_run: int = 0

    @property
    def encoding(self) -> str:
        return "utf-8" if self.codepage == 65001 else f"cp{self.codepage}"


class Command:
    """A running emulated command: its output buffer, its stdin, and the task that runs it."""

    def __init__(
        self, shell: Shell, command_line: str, *, hostname: str, buffer_limit: int
    ) -> None:
        self.shell = shell
        self.hostname = hostname
        self.buffer_limit = buffer_limit
        self.record = CommandRecord(
            command_id=str(uuid.uuid4()).upper(),
            shell_id=shell.shell_id,
            user=shell.user,
            command_line=command_line,
            script=None,
        )
        self.task: asyncio.Task[None] | None = None
        self._output: deque[tuple[Stream, bytes]] = deque()
        self._buffered = 0
        self.max_buffered = 0
        self._changed = asyncio.Condition()
        self._stdin: deque[bytes] = deque()
        self._stdin_end = False
        self._finished = False

    @property
    def command_id(self) -> str:
        return self.record.command_id

    # -- the client's side -------------------------------------------------------------------

    async def receive(
        self, timeout: float, max_bytes: int
    ) -> tuple[list[tuple[Stream, bytes]], bool] | None:
        """Output available within ``timeout`` (at most ``max_bytes``) and whether it is the end.

        None when nothing arrived in time (the caller answers the OperationTimeout fault).
        """
        async with self._changed:
            if not self._output and not self._finished:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self._output) or self._finished),
                        timeout,
                    )
                except TimeoutError:
                    return None
            taken: list[tuple[Stream, bytes]] = []
            size = 0
            while self._output and size < max_bytes:
                stream, data = self._output[0]
                room = max_bytes - size
                if len(data) > room:
                    taken.append((stream, data[:room]))
                    self._output[0] = (stream, data[room:])
                    size += room
                    break
                self._output.popleft()
                taken.append((stream, data))
                size += len(data)
            self._buffered -= size
            self._changed.notify_all()
            self.record.receives += 1
            return taken, self._finished and not self._output

    async def send_stdin(self, data: bytes, end: bool) -> None:
        async with self._changed:
            if data:
                self._stdin.append(data)
                self.record.stdin_bytes += len(data)
            self._stdin_end = self._stdin_end or end
            self._changed.notify_all()

    # -- the command's side ------------------------------------------------------------------

    async def write(self, stream: Stream, data: bytes) -> None:
        """Append output, waiting while the buffer is over its limit (the pipe is full)."""
        if not data:
            return
        async with self._changed:
            await self._changed.wait_for(lambda: self._buffered < self.buffer_limit)
            self._output.append((stream, data))
            self._buffered += len(data)
            self.max_buffered = max(self.max_buffered, self._buffered)
            if stream == "stdout":
                self.record.stdout_bytes += len(data)
            else:
                self.record.stderr_bytes += len(data)
            self._changed.notify_all()

    async def read_stdin(self) -> bytes | None:
        """The next block of stdin, or None at its end."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._stdin) or self._stdin_end)
            return self._stdin.popleft() if self._stdin else None

    async def _finish(self, exit_code: int) -> None:
        async with self._changed:
            self.record.exit_code = exit_code
            self.record.state = "done"
            self._finished = True
            self._changed.notify_all()

    def mark_terminated(self) -> None:
        if self.record.state == "running":
            self.record.state = "terminated"
            self.record.terminated = True
        self._finished = True

    async def wake(self) -> None:
        """Wake a Receive waiting on this command (after ``mark_terminated``)."""
        async with self._changed:
            self._changed.notify_all()

    # -- the interpreter ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run the command line to its end (cancelled by a terminate)."""
        line = _VARIABLE.sub(self._expand, self.record.command_line)
        try:
            script = decode_powershell(line)
        except ValueError as exc:
            await self._text("stderr", str(exc))
            await self._finish(1)
            return
        self.record.script = script
        exit_code = 0
        for separator, step in parse_steps(line if script is None else script):
            if separator == "&&" and exit_code != 0:
                continue
            try:
                exit_code = await self._step(step)
            except _StepError as exc:
                await self._text("stderr", str(exc))
                exit_code = 1
            except _Exit as exc:
                exit_code = exc.code
                break
        await self._finish(exit_code)

    def _expand(self, match: re.Match[str]) -> str:
        return self.shell.environment.get(match.group(1), match.group(0))

    async def _text(self, stream: Stream, text: str) -> None:
        await self.write(stream, (text + "\r\n").encode(self.shell.encoding, "replace"))

    async def _step(self, step: str) -> int:
        """Run one step and return its exit code (``exit`` raises ``_Exit``)."""
        name, _, rest = step.partition(" ")
        verb = name.lower()
        rest = rest.strip()
        args = rest.split()
        if verb in ("echo", "write-output", "write-host"):
            await self._text("stdout", rest.strip('"'))
            return 0
        if verb in ("stderr", "write-error"):
            await self._text("stderr", rest.strip('"'))
            return 1 if verb == "write-error" else 0
        if verb == "exit":
            raise _Exit(_integer(args[0], "exit", "the exit code") if args else 0)
        if verb in ("sleep", "start-sleep"):
            values = [a for a in args if a.lower() not in ("-seconds", "-s")]
            if len(values) != 1:
                raise _StepError(f"{name}: expected one number of seconds, got {rest!r}")
            await asyncio.sleep(_seconds(values[0], name))
            return 0
        if verb == "lines":
            return await self._lines(args, rest)
        if verb == "bytes":
            return await self._bytes(args)
        if verb == "cat":
            while (block := await self.read_stdin()) is not None:
                await self.write("stdout", block)
            return 0
        if verb == "hang":
            await asyncio.Event().wait()  # until cancelled by a terminate
            return 0
        if verb == "cd" and not args:
            await self._text("stdout", self.shell.working_directory)
            return 0
        if verb == "hostname":
            await self._text("stdout", self.hostname)
            return 0
        if verb == "whoami":
            await self._text("stdout", f"{self.hostname.lower()}\\{self.shell.user}")
            return 0
        await self._text(
            "stderr",
            f"'{name}' is not recognized as an internal or external command,\r\n"
            "operable program or batch file.",
        )
        return 1

    async def _lines(self, args: list[str], rest: str) -> int:
        if not args:
            raise _StepError("lines: expected 'lines N [INTERVAL [TEXT]]'")
        count = _integer(args[0], "lines", "N")
        interval = _seconds(args[1], "lines") if len(args) > 1 else 0.0
        text = rest.split(None, 2)[2] if len(args) > 2 else "line"
        for index in range(1, count + 1):
            if index > 1 and interval:
                await asyncio.sleep(interval)
            await self._text("stdout", f"{text} {index}")
        return 0

    async def _bytes(self, args: list[str]) -> int:
        if not args or len(args) > 2 or (len(args) == 2 and args[1] != "stderr"):
            raise _StepError("bytes: expected 'bytes N [stderr]'")
        remaining = _integer(args[0], "bytes", "N")
        stream: Stream = "stderr" if len(args) == 2 else "stdout"
        while remaining:
            size = min(remaining, _CHUNK_SIZE)
            await self.write(stream, _CHUNK if size == _CHUNK_SIZE else _CHUNK[:size])
            remaining -= size
        return 0


def _integer(text: str, step: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _StepError(f"{step}: {what} must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise _StepError(f"{step}: {what} must be an integer >= 0, got {text!r}")
    return value


def _seconds(text: str, step: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e6:
        raise _StepError(f"{step}: seconds must be a number >= 0, got {text!r}")
    return value
