"""The hookbridge command: adapters, check, and the demo (the README's first command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def hookbridge_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookbridge", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def test_adapters_lists_the_builtin_adapters_with_conn_types() -> None:
    result = hookbridge_cli("adapters")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("http" in line and "https" in line and "entry point" in line for line in lines)
    assert any("sftp" in line and "entry point" in line for line in lines)


def test_check_names_an_undefined_connection(tmp_path: Path) -> None:
    result = hookbridge_cli("check", "nowhere", env={"AIRFLOW_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "conn_id 'nowhere'" in result.stderr and "AIRFLOW_CONN_NOWHERE" in result.stderr


def test_check_with_an_unknown_conn_type_lists_what_is_installed(tmp_path: Path) -> None:
    env = {
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW_CONN_ODD": json.dumps({"conn_type": "gopher", "host": "127.0.0.1"}),
    }
    result = hookbridge_cli("check", "odd", env=env)
    assert result.returncode == 1
    assert "conn_type 'gopher'" in result.stderr and "http (http, https)" in result.stderr


@pytest.mark.timeout(300)
def test_demo_runs_every_part_and_prints_the_summary(tmp_path: Path) -> None:
    result = hookbridge_cli("demo", env={"AIRFLOW_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "hookbridge demo" in out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    parts = {row.split("│")[1].strip() for row in rows}
    assert {"http", "sftp"} <= parts, out
    for row in rows:
        cells = [c.strip() for c in row.split("│")[1:-1]]
        if cells[0] in {"http", "sftp"}:
            assert int(cells[1].replace(",", "")) > 0  # operations
            assert cells[6] == "0"  # failed
    # The table fits 80 columns, and library logs went to the file named under it.
    assert all(len(line) <= 80 for line in out.splitlines() if line.startswith(("│", "┃", "┏")))
    log_line = next(line for line in out.splitlines() if "library logs:" in line)
    assert Path(log_line.split("library logs:")[1].strip()).is_file()
    # No library INFO line tore the progress display: asyncssh's (standard logging) nor the
    # provider hooks' (Airflow's structlog), and every part's own "[part] starting" line shows.
    both = out + result.stderr
    assert "asyncssh" not in both
    assert "[info" not in both and "Establishing WinRM connection" not in both
    assert all(f"[{part}] starting" in both for part in ("http", "msgraph", "sftp", "winrm"))


def test_demo_only_runs_the_named_part_and_refuses_unknown_names(tmp_path: Path) -> None:
    env = {"AIRFLOW_HOME": str(tmp_path)}
    unknown = hookbridge_cli("demo", "--only", "gopher", env=env)
    assert unknown.returncode != 0
    assert "gopher" in unknown.stderr and "http" in unknown.stderr and "sftp" in unknown.stderr


def test_check_probes_and_exits_non_zero_on_an_error_status(
    tmp_path: Path, http_server_process: str
) -> None:
    env = {
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW_CONN_UP": json.dumps({"conn_type": "http", "host": http_server_process}),
        "AIRFLOW_CONN_MISSING": json.dumps(
            {"conn_type": "http", "host": http_server_process + "/status/404"}
        ),
    }
    up = hookbridge_cli("check", "up", env=env)
    assert up.returncode == 0, up.stderr
    assert "ok in" in up.stdout and "-> 200" in up.stdout
    missing = hookbridge_cli("check", "missing", env=env)
    assert missing.returncode == 1
    assert "FAILED" in missing.stderr and "-> 404" in missing.stderr


def test_version() -> None:
    result = hookbridge_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("hookbridge ")
