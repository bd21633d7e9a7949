"""What a WinRM command gives back: output chunks, the result, and the errors that carry it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hookbridge import DeadlineExceeded, PermissionDenied, RemoteError, RemoteStatusError
from hookbridge.adapter import excerpt

__all__ = [
    "CommandFailed",
    "CommandResult",
    "CommandTimeout",
    "OutputChunk",
    "ServerFault",
    "ShellQuotaExceeded",
    "WinRMAuthenticationError",
]


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """One piece of output as the server sent it, tagged with its stream."""

    stream: Literal["stdout", "stderr"]
    data: bytes


@dataclass(frozen=True)
class CommandResult:
    """A finished command: its exit code and its output, as bytes and decoded."""

    command: str  # the command line as given (before PowerShell encoding), never a secret
    exit_code: int
    stdout_bytes: bytes
    stderr_bytes: bytes
    encoding: str = "utf-8"

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode(self.encoding, "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode(self.encoding, "replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def __repr__(self) -> str:
        return (
            f"CommandResult(command={self.command!r}, exit_code={self.exit_code}, "
            f"stdout={len(self.stdout_bytes)} bytes, stderr={len(self.stderr_bytes)} bytes)"
        )


class CommandFailed(RemoteError):
    """The command ran and exited with a non-zero code (``run(check=True)``); ``.result`` has it.

    ``code`` is the exit code, ``target`` the command line.
    """

    def __init__(self, result: CommandResult, *, conn_id: str) -> None:
        stderr = excerpt(result.stderr_bytes.decode(result.encoding, "replace"))
        super().__init__(
            f"conn_id {conn_id!r}: the command {result.command!r} exited with code "
            f"{result.exit_code}. Pass check=False to get the result instead of this error."
            + (f" stderr: {stderr}" if stderr else ""),
            code=result.exit_code,
            target=result.command,
        )
        self.result = result


class CommandTimeout(DeadlineExceeded):
    """The command outlived ``timeout=``: it was terminated; ``.result`` holds the output so far.

    ``result.exit_code`` is -1. ``terminated`` says whether the server confirmed the terminate.
    """

    def __init__(
        self, result: CommandResult, *, timeout: float, conn_id: str, terminated: bool
    ) -> None:
        state = (
            "was terminated" if terminated else "could not be terminated (its shell was dropped)"
        )
        super().__init__(
            f"conn_id {conn_id!r}: the command {result.command!r} did not finish within "
            f"timeout={timeout:g} s and {state}. Raise timeout= if it needs longer."
        )
        self.result = result
        self.timeout = timeout
        self.terminated = terminated


class WinRMAuthenticationError(PermissionDenied):
    """The WinRM endpoint rejected the connection's login or password (HTTP 401)."""


class ShellQuotaExceeded(RemoteError):
    """The server refused a new shell: the user's MaxShellsPerUser quota is used up.

    hookbridge never opens more than ``max_shells`` per adapter: lower it, or close other
    clients' shells, or raise the quota on the server (``winrm/config/winrs/MaxShellsPerUser``).
    """


class ServerFault(RemoteStatusError):
    """A SOAP fault the server blames on itself (``s:Receiver``, HTTP 5xx): it may pass.

    A :class:`~hookbridge.RemoteStatusError` with the HTTP ``status``, so a retry policy treats
    it as a 5xx (shell creation, and commands run with ``idempotent=True``, are retried);
    ``code`` is the WSManFault code, ``target`` what was asked for.
    """

    def __init__(self, message: str, *, status: int, fault_code: int | None, target: str) -> None:
        super().__init__(message, status=status)
        self.code = fault_code
        self.target = target
