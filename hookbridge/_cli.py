"""The ``hookbridge`` command: list adapters, check a connection, run the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import anyio

from ._adapter import CheckResult
from ._demos import DemoResult, DemoUI, ProgressHandle, demo_parts, run_part
from ._errors import HookBridgeError
from ._registry import open as open_adapter
from ._registry import registered_adapters

__all__ = ["main"]

__version__ = version("hookbridge")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        if not rows:
            return
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        if title:
            print(title)
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        return
    table = Table(title=title or None)
    for h in headers:
        table.add_column(h)
    for row in rows:
        table.add_row(*row)
    # The table is made to fit 80 columns, piped (CI logs) or not.
    Console(width=max(Console().width, 80)).print(table)


def cmd_adapters(_: argparse.Namespace) -> int:
    rows = [
        [i.name, ", ".join(i.conn_types) or "-", i.source, i.target, i.error or "ok"]
        for i in registered_adapters()
    ]
    _table(["adapter", "conn_types", "source", "target", "status"], rows, "hookbridge adapters")
    return 0


# Libraries whose INFO lines (connections opened, tasks started) would tear the progress display.
_CHATTY_LOGGERS = ("asyncssh", "airflow", "azure", "httpx", "kiota", "urllib3", "winrm")


def _quiet_libraries(log_file: str | None = None) -> None:
    """Keep library logs out of the terminal: warnings only, or everything to ``log_file``."""
    # Airflow 3 logs its hooks' INFO lines through structlog straight to the terminal, past the
    # standard logging handlers below; its own level setting is the one switch it reads (before
    # Airflow is first imported, which the commands do later). A user's setting wins.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    handler: logging.Handler | None = None
    if log_file is not None:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in _CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if handler is not None:
            logger.addHandler(handler)
            logger.propagate = False
            logger.setLevel(logging.INFO)
        else:
            logger.setLevel(logging.WARNING)


def cmd_check(args: argparse.Namespace) -> int:
    _quiet_libraries()

    async def check() -> CheckResult:
        async with open_adapter(args.conn_id, adapter=args.adapter) as adapter:
            print(f"{args.conn_id}: opened {adapter!r}")
            result: CheckResult = await adapter.check()
            return result

    try:
        result = anyio.run(check)
    except HookBridgeError as exc:
        print(f"{args.conn_id}: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"{args.conn_id}: {result}", file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


class _PlainProgress:
    def __init__(self, description: str, total: int | None) -> None:
        self.description, self.total, self.done = description, total, 0
        self._next_report = 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        step = max(1, (self.total or 1000) // 10)
        if self.done >= self._next_report:
            print(f"  {self.description}: {self.done}/{self.total or '?'}", flush=True)
            self._next_report = self.done + step

    def update(self, *, total: int | None = None, description: str | None = None) -> None:
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description


class _PlainUI:
    def progress(self, description: str, total: int | None = None) -> ProgressHandle:
        return _PlainProgress(description, total)

    def log(self, message: str) -> None:
        print(message, flush=True)


class _RichProgress:
    def __init__(self, progress: Any, description: str, total: int | None) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def update(self, *, total: int | None = None, description: str | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if total is not None:
            kwargs["total"] = total
        if description is not None:
            kwargs["description"] = description
        self._progress.update(self._task, **kwargs)


class _RichUI:
    def __init__(self, progress: Any) -> None:
        self._progress = progress

    def progress(self, description: str, total: int | None = None) -> ProgressHandle:
        return _RichProgress(self._progress, description, total)

    def log(self, message: str) -> None:
        self._progress.console.log(message, markup=False)


async def _run_demo(only: Sequence[str]) -> list[DemoResult | tuple[str, str]]:
    results: list[DemoResult | tuple[str, str]] = []
    available = demo_parts()
    unknown = sorted(set(only) - {name for name, _ in available})
    if unknown:
        raise SystemExit(
            f"unknown demo part(s) {', '.join(unknown)}; the parts are: "
            f"{', '.join(name for name, _ in available) or 'none installed'}"
        )
    parts = [(n, p) for n, p in available if not only or n in only]
    if not parts:
        raise SystemExit(
            "no demo parts are installed: install the adapters' extras, "
            "for example pip install -e '.[all]'"
        )

    async def run_all(ui: DemoUI) -> None:
        for name, part in parts:
            if isinstance(part, str):
                results.append((name, f"skipped: {part}"))
                continue
            ui.log(f"[{name}] starting")
            results.append(await run_part(part, ui))

    try:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:
        await run_all(_PlainUI())
        return results
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    ) as progress:
        await run_all(_RichUI(progress))
    return results


def cmd_demo(args: argparse.Namespace) -> int:
    # Importing Airflow creates $AIRFLOW_HOME/logs: keep a demo run out of the user's home.
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="hookbridge-demo-airflow-"))
    # The progress bars say what the fan-out's periodic log lines would.
    logging.getLogger("hookbridge.progress").setLevel(logging.WARNING)
    log_file = os.path.join(os.environ["AIRFLOW_HOME"], "hookbridge-demo.log")
    _quiet_libraries(log_file)
    results = anyio.run(_run_demo, args.only or (), backend="asyncio")
    rows = []
    notes = []
    failed = 0
    for r in results:
        if isinstance(r, tuple):
            rows.append([r[0], "-", "-", "-", "-", "-", "-", "-"])
            notes.append(f"{r[0]}: {r[1]}")
            continue
        failed += r.failed
        rows.append(
            [
                r.part,
                f"{r.operations:,}",
                f"{r.seconds:.1f} s",
                f"{r.throughput:,.0f}/s",
                str(r.retries),
                str(r.throttles),
                str(r.failed),
                _human_bytes(r.peak_memory),
            ]
        )
        if r.notes:
            notes.append(f"{r.part}: {r.notes}")
    _table(
        ["part", "ops", "time", "rate", "retries", "throttled", "failed", "heap"],
        rows,
        "hookbridge demo",
    )
    for note in notes:
        print(f"  {note}")
    print(f"  library logs: {log_file}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hookbridge", description="Async adapters over Airflow provider hooks."
    )
    parser.add_argument("--version", action="version", version=f"hookbridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("adapters", help="list the registered adapters and their conn_types")
    check = sub.add_parser("check", help="open the adapter of a connection and probe it")
    check.add_argument("conn_id")
    check.add_argument("--adapter", help="adapter name, when the conn_type does not pick one")
    demo = sub.add_parser("demo", help="run every adapter against embedded loopback servers")
    demo.add_argument("--only", nargs="*", help="run only these parts (e.g. http sftp)")
    args = parser.parse_args(argv)
    handler = {"adapters": cmd_adapters, "check": cmd_check, "demo": cmd_demo}[args.command]
    return handler(args)
