"""The WinRM adapter: commands on a Windows host over a pool of shells (asyncio and trio)."""

from __future__ import annotations

from ._adapter import WinRMAdapter, WinRMPoolStatistics
from ._command import CommandOutput, CommandStream
from ._results import (
    CommandFailed,
    CommandResult,
    CommandTimeout,
    OutputChunk,
    ServerFault,
    ShellQuotaExceeded,
    WinRMAuthenticationError,
)

__all__ = [
    "CommandFailed",
    "CommandOutput",
    "CommandResult",
    "CommandStream",
    "CommandTimeout",
    "OutputChunk",
    "ServerFault",
    "ShellQuotaExceeded",
    "WinRMAdapter",
    "WinRMAuthenticationError",
    "WinRMPoolStatistics",
]
