"""The example DAG and trigger of contrib/dags, against the loopback HTTP server.

The trigger runs in-process on asyncio, as the triggerer would run it; the whole DAG runs under
``dag.test()`` in a subprocess with its own AIRFLOW_HOME and SQLite metadata DB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import hookbridge
from hookbridge.testing import HTTPTestServer

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "contrib" / "dags"
PASSWORD = "example-s3cret-pw"


@pytest.fixture
def example_conn(http_server: HTTPTestServer, monkeypatch: pytest.MonkeyPatch) -> str:
    conn = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": http_server.port,
        "login": "user",
        "password": PASSWORD,
    }
    monkeypatch.setenv("AIRFLOW_CONN_HOOKBRIDGE_EXAMPLE_API", json.dumps(conn))
    monkeypatch.syspath_prepend(str(DAGS))
    return "hookbridge_example_api"


def _trigger(**kwargs: Any) -> Any:
    from hookbridge_example_triggers import CountItemsTrigger

    from hookbridge.adapters.http import HttpAdapter

    spec = HttpAdapter("hookbridge_example_api", limits=hookbridge.Limits(rate="1000/s")).spec()
    return CountItemsTrigger(spec, "/paged/nextlink", {"size": 30, "total": 100}, **kwargs)


async def test_trigger_counts_and_serializes_no_secret(example_conn: str) -> None:
    trigger = _trigger()
    events = [event async for event in trigger.run()]
    await hookbridge.aclose_shared()
    assert [e.payload["count"] for e in events] == [100]
    classpath, kwargs = trigger.serialize()
    assert classpath == "hookbridge_example_triggers.CountItemsTrigger"
    state = json.dumps(kwargs)
    assert PASSWORD not in state and "user" not in json.dumps(kwargs["spec"]["options"])


async def test_trigger_resumes_from_its_serialized_cursor(example_conn: str) -> None:
    first = _trigger()
    # Stop after two pages, as a triggerer restart would, then rebuild from serialize().
    async with hookbridge.open_spec(first.spec, shared=False) as api:
        pages = api.pages(
            "/paged/nextlink",
            strategy=hookbridge.NextLink(link="@odata.nextLink", items="value"),
            params=first.params,
            max_pages=2,
        )
        async for page in pages:
            first.counted += len(page.items)
            first.cursor = page.cursor
    _, state = first.serialize()
    resumed = type(first)(**json.loads(json.dumps(state)))
    events = [event async for event in resumed.run()]
    await hookbridge.aclose_shared()
    assert first.counted == 60
    assert events[0].payload["count"] == 100


@pytest.mark.timeout(300)  # a subprocess that migrates a DB and parses contrib/dags
async def test_example_dag_runs_under_dag_test(
    example_conn: str, tmp_path: Path, http_server: HTTPTestServer
) -> None:
    import anyio

    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "PYTHONPATH": os.pathsep.join([str(DAGS), os.environ.get("PYTHONPATH", "")]),
    }
    script = Path(__file__).with_name("run_example_dag.py")
    # The server runs on this test's loop: await the subprocess instead of blocking on it.
    with anyio.fail_after(120):
        result = await anyio.run_process(
            [sys.executable, str(script)], env=env, check=False, stderr=subprocess.STDOUT
        )
    output = result.stdout.decode(errors="replace")
    lines = [line for line in output.splitlines() if "HOOKBRIDGE_EXAMPLE" in line]
    assert any("state success" in line for line in lines), output[-4000:]
    assert any("fetch_details {'ok': 300, 'failed': 0" in line for line in lines), lines
    assert any("count_items 200" in line for line in lines), lines
    assert PASSWORD not in output
    assert http_server.count(path_prefix="/items/") == 300
