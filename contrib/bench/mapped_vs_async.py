"""Mapped tasks against one async task (the AIP-98 claim), measured under dag.test().

    python contrib/bench/mapped_vs_async.py                     # N = 50, 200, 1000; 3 rounds
    python contrib/bench/mapped_vs_async.py --n 200 --rounds 3 --deferrable

The same N HTTP GETs (``/items/{i}`` on the loopback test server, in its own process) done by:

- ``mapped``: ``.expand`` over N task instances, one ``HttpHook.run`` each (what DAG authors do
  today to get per-item retries);
- ``async``: one ``@task async def`` fanning the N requests out with ``hookbridge.open`` and
  ``hookbridge.amap``;
- ``deferrable`` (``--deferrable``): N mapped ``HttpOperator(deferrable=True)``, each deferring
  to the provider's ``HttpTrigger`` (dag.test() runs triggers inline).

All under ``dag.test()`` in this one process (AIRFLOW_HOME and SQLite in a temporary directory);
a warm-up run first pays the in-process execution API's start. Per item: the DAG run's wall time
divided by N; for ``async`` also the fan-out's own time inside the task. The ratio column is the
median of within-round ratios (mapped / async), the order of the two alternating every round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

DAG_FILE = '''
"""DAGs written by contrib/bench/mapped_vs_async.py."""
import time
import pendulum
from airflow.sdk import dag, task

CONN_ID = "bench_api"


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def bench_mapped():
    @task
    def ids(params=None):
        return list(range(int(params["n"])))

    @task
    def get_one(i):
        from airflow.providers.http.hooks.http import HttpHook

        response = HttpHook(method="GET", http_conn_id=CONN_ID).run(f"/items/{i}")
        return response.json()["id"]

    get_one.expand(i=ids())


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def bench_async():
    @task
    async def get_all(params=None):
        import hookbridge

        n = int(params["n"])
        started = time.perf_counter()
        async with hookbridge.open(CONN_ID, max_connections=50) as api:

            async def get_one(i):
                return (await api.get(f"/items/{i}")).json()["id"]

            total = 0
            async with hookbridge.amap(get_one, range(n), max_at_once=50) as results:
                async for value in results:
                    total += 1
        return {"n": total, "seconds": time.perf_counter() - started}

    get_all()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def bench_deferrable():
    from airflow.providers.http.operators.http import HttpOperator

    @task
    def endpoints(params=None):
        return [f"/items/{i}" for i in range(int(params["n"]))]

    HttpOperator.partial(
        task_id="get_one", http_conn_id=CONN_ID, method="GET", deferrable=True
    ).expand(endpoint=endpoints())


mapped = bench_mapped()
asynchronous = bench_async()
deferrable = bench_deferrable()
'''


def _start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hookbridge.testing._http_server",
            "--port",
            "0",
            "--items",
            "100000",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http://"):
        process.kill()
        raise SystemExit(f"the HTTP test server did not start (exit code {process.poll()})")
    return process, url


def _run(dag: Any, n: int) -> tuple[float, Any, str]:
    started = time.perf_counter()
    run = dag.test(run_conf={"n": n})
    wall = time.perf_counter() - started
    value = None
    if dag.dag_id == "bench_async":
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            query = XComModel.get_many(run_id=run.run_id, dag_ids=dag.dag_id, key="return_value")
            row = session.scalars(query).first()
            value = XComModel.deserialize_value(row) if row is not None else None
    return wall, value, str(run.state)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="default: 50, 200 and 1000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deferrable", action="store_true", help="also deferrable HttpOperator")
    args = parser.parse_args(argv)
    sizes = args.n or [50, 200, 1000]

    home = tempfile.mkdtemp(prefix="hookbridge-bench-airflow-")
    dags = Path(home) / "dags"
    dags.mkdir()
    (dags / "bench_mapped_vs_async.py").write_text(textwrap.dedent(DAG_FILE))
    server, url = _start_server()
    port = int(url.rsplit(":", 1)[1])
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",  # the table, not every task's log
            "AIRFLOW_CONN_BENCH_API": json.dumps(
                {"conn_type": "http", "host": "127.0.0.1", "port": port}
            ),
        }
    )
    sys.path.insert(0, str(dags))
    try:
        from airflow.utils import db

        db.initdb()
        import bench_mapped_vs_async as module  # type: ignore[import-not-found]

        print("warming up (the first task in a process starts the execution API)...", flush=True)
        _run(module.asynchronous, 1)
        rows = []
        for n in sizes:
            walls: dict[str, list[float]] = {"mapped": [], "async": [], "deferrable": []}
            inside: list[float] = []
            ratios: list[float] = []
            for round_number in range(args.rounds):
                order = ["mapped", "async"] if round_number % 2 == 0 else ["async", "mapped"]
                if args.deferrable:
                    order.append("deferrable")
                seen: dict[str, float] = {}
                for kind in order:
                    dag = {
                        "mapped": module.mapped,
                        "async": module.asynchronous,
                        "deferrable": module.deferrable,
                    }[kind]
                    wall, value, state = _run(dag, n)
                    if state != "success":
                        raise SystemExit(f"{kind} N={n}: the DAG run ended {state}")
                    walls[kind].append(wall)
                    seen[kind] = wall
                    if kind == "async":
                        assert value["n"] == n, value
                        inside.append(value["seconds"])
                    print(f"  N={n} round {round_number + 1} {kind}: {wall:.2f} s", flush=True)
                ratios.append(seen["mapped"] / seen["async"])
            rows.append((n, walls, inside, ratios))
        print()
        print(
            f"{'N':>5} {'mapped s/item':>14} {'async s/item':>13} {'(in task)':>10} "
            f"{'ratio':>7} {'worst':>6} {'in-task ratio':>14} {'deferrable s/item':>18}"
        )
        for n, walls, inside, ratios in rows:
            mapped = statistics.median(walls["mapped"]) / n
            asynchronous = statistics.median(walls["async"]) / n
            in_task = statistics.median(inside) / n
            deferred = (
                f"{statistics.median(walls['deferrable']) / n:>18.5f}"
                if walls["deferrable"]
                else f"{'-':>18}"
            )
            print(
                f"{n:>5} {mapped:>14.5f} {asynchronous:>13.5f} {in_task:>10.6f} "
                f"{statistics.median(ratios):>6.0f}x {min(ratios):>5.0f}x "
                f"{mapped / in_task:>13.0f}x {deferred}"
            )
        print(
            f"(medians of {args.rounds} rounds; ratio = mapped / async wall time per DAG run, "
            "worst = the lowest round; in-task = the fan-out's own time inside the async task)"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
