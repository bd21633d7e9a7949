"""The WinRM part of ``hookbridge demo``: a batch of commands streamed over 5 shells, one cancelled.

Starts the WS-Management emulator in-process (5 shells per user, like a small quota), defines the
Airflow connection in-process, streams the output of 40 commands through ``WinRMAdapter.map``
(each prints five lines over 0.1 s), and cancels a 41st command that would hang forever: the
emulator confirms it was terminated and that every shell was closed at the end.
"""

from __future__ import annotations

import os
import tempfile
import time

import anyio

from hookbridge._demos import DemoResult, DemoUI, airflow_connection

# Importing Airflow creates $AIRFLOW_HOME/logs: keep a demo run out of the user's home. Airflow is
# imported here, when the demo loads its parts, so that its import is not counted in the part.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="hookbridge-demo-airflow-"))

from hookbridge.adapters.winrm import WinRMAdapter
from hookbridge.testing._wsman_server import WSManTestServer

__all__ = ["run"]

CONN_ID = "hookbridge_demo_winrm"
COMMANDS = 40
SHELLS = 5


async def run(ui: DemoUI) -> DemoResult:
    """Stream 40 commands' output over 5 pooled shells and cancel one hanging command."""
    async with WSManTestServer(max_shells_per_user=SHELLS, password="demo-winrm-secret") as server:
        with airflow_connection(CONN_ID, server.airflow_connection()):
            async with WinRMAdapter(CONN_ID, max_shells=SHELLS) as winrm:
                started = time.perf_counter()
                progress = ui.progress(f"winrm: {COMMANDS} commands over {SHELLS} shells", COMMANDS)
                received = lines = 0
                cancelled = False

                async def one(index: int) -> int:
                    nonlocal received, lines
                    async with winrm.stream(f"lines 5 0.025 job-{index}") as output:
                        async for chunk in output:
                            received += len(chunk.data)
                            lines += chunk.data.count(b"\n")
                    progress.advance()
                    return output.exit_code or 0

                async def hang_then_cancel() -> None:
                    nonlocal cancelled
                    with anyio.move_on_after(0.5) as scope:
                        await winrm.run("echo waiting forever & hang")
                    cancelled = scope.cancelled_caught
                    ui.log("winrm: the hanging command was cancelled after 0.5 s")

                async with anyio.create_task_group() as tg:
                    tg.start_soon(hang_then_cancel)
                    async with winrm.map(one, range(COMMANDS), max_at_once=SHELLS) as codes:
                        failed = len([code async for code in codes if code != 0])
                seconds = time.perf_counter() - started
                stats = winrm.statistics()
        emulator = server.statistics()
    per_command = emulator.requests / max(1, emulator.commands_started)
    ended = (
        "cancelled and terminated" if cancelled and emulator.commands_terminated else "NOT ended"
    )
    return DemoResult(
        part="winrm",
        operations=COMMANDS + 1,
        seconds=seconds,
        retries=stats.retries,
        failed=failed,
        bytes=received,
        notes=(
            f"{lines} lines streamed from {COMMANDS} commands over {emulator.shells_created} "
            f"shells ({per_command:.1f} requests/command); 1 hanging command "
            f"{ended}"
            f"; {emulator.shells_open} shells left open"
        ),
        extra={"terminated": emulator.commands_terminated, "shells_open": emulator.shells_open},
    )
