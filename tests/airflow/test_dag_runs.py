"""The example DAGs of contrib/dags under real dag.test() runs, all in one subprocess.

One process (AIRFLOW_HOME and SQLite in a temporary directory) runs every scenario in turn, since
the first task in a process pays several seconds to start Airflow's in-process execution API.
The loopback HTTP and SFTP servers run on their own loop in a thread, so their request logs can
be read afterwards: the runner requests ``/status/200?run=NAME`` before each run, which marks
where that run's requests start.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_servers import DAGS, ServerThread

import hookbridge
from hookbridge.testing import RecordedRequest

# The module's fixture runs every DAG in one subprocess (about 90 s here, several minutes on a
# loaded machine): its setup counts against the first test's timeout.
pytestmark = pytest.mark.timeout(900)

PASSWORD = "dag-run-s3cret-password"
SFTP_FILES = 120
FIXED_DATE = "2024-06-01T00:00:00"


class Runs:
    """What the subprocess printed and what the servers saw, by scenario name."""

    def __init__(self, output: str, requests: list[RecordedRequest], sinks: Path) -> None:
        self.output = output
        self.sinks = sinks
        self.results: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, str] = {}
        for match in re.finditer(r"^HOOKBRIDGE_RUN (.*)$", output, re.MULTILINE):
            record = json.loads(match.group(1))
            self.results[record["name"]] = record
        parts = re.split(r"^HOOKBRIDGE_START (\S+)$", output, flags=re.MULTILINE)
        for name, text in zip(parts[1::2], parts[2::2], strict=True):
            self.logs[name] = text
        self.requests: dict[str, list[RecordedRequest]] = {}
        current = None
        for request in requests:
            if request.path == "/status/200" and "run" in request.query:
                current = request.query["run"]
                self.requests[current] = []
            elif current is not None:
                self.requests[current].append(request)

    def result(self, name: str) -> dict[str, Any]:
        assert name in self.results, self.output[-5000:]
        return self.results[name]

    def item_ids(self, name: str) -> list[int]:
        return [
            int(r.path.rsplit("/", 1)[1])
            for r in self.requests[name]
            if r.path.startswith("/items/")
        ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    home = tmp_path_factory.mktemp("airflow-home")
    sinks = tmp_path_factory.mktemp("sinks")
    thread = ServerThread()
    try:
        http = thread.start_http(password="http-test-secret")
        # Each item takes 10 ms: the 300-item fan-out lasts >= 150 ms at 20 at once, long enough
        # for progress lines every 50 ms however fast the machine (it took 44 ms without).
        http.item_delay = 0.01
        sftp_root = tmp_path_factory.mktemp("sftp-root")
        sftp = thread.start_sftp(sftp_root, password="sftp-test-secret-pw")
        sftp.populate_small(count=SFTP_FILES, size=4096)
        api = {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": http.port,
            "login": "user",
            "password": PASSWORD,
        }
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "AIRFLOW_CONN_HOOKBRIDGE_EXAMPLE_API": json.dumps(api),
            "AIRFLOW_CONN_HOOKBRIDGE_EXAMPLE_SFTP": json.dumps(sftp.airflow_connection()),
            "HOOKBRIDGE_MARKER_URL": http.url_for("/status/200"),
            "PYTHONPATH": os.pathsep.join([str(DAGS), os.environ.get("PYTHONPATH", "")]),
        }
        resume = {"fail_at": 600, "sink_dir": f"file://{sinks}/resume", "every": 50}
        scenarios = [
            {
                "name": "collect",
                "module": "hookbridge_async_http",
                "dag": "collecting",
                "conf": {"total": 300, "known": 290, "progress_interval": 0.05},
            },
            {
                "name": "raise",
                "module": "hookbridge_async_http",
                "dag": "raising",
                "conf": {"total": 300, "known": 290},
            },
            {"name": "sftp", "module": "hookbridge_async_sftp", "dag": "example"},
            {
                "name": "resume",
                "module": "hookbridge_resume",
                "dag": "example",
                "conf": resume,
                "logical_date": FIXED_DATE,
            },
            {
                "name": "rerun",
                "module": "hookbridge_resume",
                "dag": "example",
                "conf": {**resume, "fail_at": -1},
                "logical_date": FIXED_DATE,
            },
            {
                "name": "deferred",
                "module": "hookbridge_deferred",
                "dag": "example",
                "conf": {"sink_dir": f"file://{sinks}/deferred"},
            },
        ]
        script = Path(__file__).with_name("run_dags.py")
        result = subprocess.run(
            [sys.executable, str(script), json.dumps(scenarios)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=840,
            check=False,
        )
        yield Runs(result.stdout.decode(errors="replace"), http.requests, sinks)
    finally:
        thread.close()


def test_collect_returns_the_failures_by_item_through_xcom(runs: Runs) -> None:
    run = runs.result("collect")
    assert run["state"] == "success"
    xcom = run["tasks"]["fetch_details"]["xcom"]
    assert xcom["ok"] == 290 and xcom["failed"] == 10
    assert xcom["failed_ids"] == list(range(290, 300))
    assert sorted(runs.item_ids("collect")) == list(range(300))  # listing fed the fan-out
    assert len([r for r in runs.requests["collect"] if r.path == "/paged/nextlink"]) == 6


def test_progress_lines_reach_the_task_log_at_a_bounded_rate(runs: Runs) -> None:
    log = runs.logs["collect"]
    lines = re.findall(r"amap: (\d+) done", log)
    finished = re.search(r"amap finished: 290 done, 10 failed.* over ([\d.]+) s", log)
    assert finished, log[-3000:]
    seconds = float(finished.group(1))
    # progress_interval=0.05: at most one line per 50 ms of fan-out, and some lines at all.
    assert 1 <= len(lines) <= seconds / 0.05 + 2, (len(lines), seconds)
    counts = [int(n) for n in lines]
    assert counts == sorted(counts)


def test_raise_fails_the_task_naming_the_failed_items(runs: Runs) -> None:
    run = runs.result("raise")
    assert run["state"] == "failed"
    assert run["tasks"]["fetch_details"]["state"] == "failed"
    log = runs.logs["raise"]
    assert "BatchError" in log and "item(s) failed" in log
    assert re.search(r"#29\d \{'id': 29\d", log)  # the failing items by index and value


def test_sftp_listing_and_reads_in_one_async_task(runs: Runs) -> None:
    run = runs.result("sftp")
    assert run["state"] == "success"
    xcom = run["tasks"]["read_directory"]["xcom"]
    assert xcom["files"] == SFTP_FILES and xcom["bytes"] == SFTP_FILES * 4096


def test_a_retry_resumes_without_fetching_completed_items_again(runs: Runs) -> None:
    run = runs.result("resume")
    assert run["state"] == "success"
    fetch = run["tasks"]["fetch_all"]
    assert fetch["try_number"] == 2  # try 1 failed at item 600, try 2 succeeded
    xcom = fetch["xcom"]
    resumed_at = xcom["resumed_at"]
    # Try 1 completed the items before the failure, less the ones still in flight when it
    # failed (at most 2 * max_at_once, whose results the failing fan-out dropped).
    assert 600 - 20 <= resumed_at <= 600
    assert xcom["fetched"] == 1000 and xcom["sink"]["items"] == 1000
    assert xcom["sink"]["path"].startswith(f"file://{runs.sinks}/resume/")
    ids = runs.item_ids("resume")
    again = {i for i, n in Counter(ids).items() if n > 1}
    assert not again & set(range(resumed_at))  # no completed item fetched again
    assert set(ids) == set(range(1000)) - {600} | {600}
    # The retry started at the page of the first item not done, not at page 1.
    skips = [
        int(r.query.get("skip", 0)) for r in runs.requests["resume"] if r.path == "/paged/nextlink"
    ]
    # Within one try the skips only grow; try 2 starts where they do not (it may ask for the
    # very page try 1 asked for last, when every item before the failing one had completed).
    restart = next(i for i in range(1, len(skips)) if skips[i] <= skips[i - 1])
    assert skips[restart] == resumed_at // 50 * 50 > 0
    assert skips[restart:] == list(range(skips[restart], 1000, 50))
    summary = run["tasks"]["summarize"]["xcom"]
    assert summary == {"rows": 1000, "unique": 1000, "min": 0, "max": 999}
    print(
        f"\nresume: try 1 completed {resumed_at} items; try 2 fetched {len(again)} items again "
        f"(in flight at the failure), completed items fetched again: 0"
    )


def test_a_cleared_task_run_again_does_all_the_work_again(runs: Runs) -> None:
    first, again = runs.result("resume"), runs.result("rerun")
    assert again["run_id"] == first["run_id"]  # the same DAG run, cleared and run again
    assert again["state"] == "success"
    xcom = again["tasks"]["fetch_all"]["xcom"]
    assert xcom["resumed_at"] == 0 and xcom["skipped"] == 0  # the checkpoint had ended itself
    assert sorted(runs.item_ids("rerun")) == list(range(1000))
    assert again["tasks"]["summarize"]["xcom"]["rows"] == 1000  # old parts replaced, not added


def test_deferrable_operator_with_a_paging_trigger(runs: Runs) -> None:
    run = runs.result("deferred")
    assert run["state"] == "success"
    counted = run["tasks"]["count_items"]["xcom"]
    assert counted["items"] == 200 and counted["state"]["id_sum"] == sum(range(200))
    assert counted["sink"] is None
    exported = run["tasks"]["export_items"]["xcom"]
    assert exported["sink"]["items"] == 1000 and len(json.dumps(exported)) < 500
    assert exported["sink"]["path"].startswith(f"file://{runs.sinks}/deferred/")
    rows = list(hookbridge.read_sink(exported["sink"]))
    assert [row["id"] for row in rows] == list(range(1000))


def test_no_secret_in_any_task_log(runs: Runs) -> None:
    assert runs.results, runs.output[-3000:]
    assert PASSWORD not in runs.output
