"""Runs contrib/dags DAGs under dag.test() in one process (called by test_dag_runs.py).

Usage: run_dags.py SCENARIO_JSON. The scenario is a list of runs ``{"module", "dag",
"conf", "logical_date"}``; for each, one line ``HOOKBRIDGE_RUN {json}`` with the run's state and
every task's XCom return value and try number. Kept out of the dags folder: dag.test() imports
every file there that mentions Airflow DAGs.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import urllib.request
from datetime import datetime, timezone
from typing import Any

sys.path.insert(0, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])

from airflow.utils import db

db.initdb()


def _results(run: Any) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    tasks: dict[str, Any] = {}
    with create_session() as session:
        for ti in run.get_task_instances(session=session):
            tasks[ti.task_id] = {"state": str(ti.state), "try_number": ti.try_number}
        query = XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, key="return_value")
        for row in session.scalars(query):
            tasks.setdefault(row.task_id, {})["xcom"] = XComModel.deserialize_value(row)
    return tasks


def main() -> None:
    for spec in json.loads(sys.argv[1]):
        module = importlib.import_module(spec["module"])
        dag = getattr(module, spec["dag"])
        when = spec.get("logical_date")
        kwargs: dict[str, Any] = {"run_conf": spec.get("conf")}
        if when:
            # The same logical date again is a manual clear and re-run of the same DAG run.
            kwargs["logical_date"] = kwargs["run_after"] = datetime.fromisoformat(when).replace(
                tzinfo=timezone.utc
            )
        name = spec.get("name", spec["dag"])
        marker = os.environ.get("HOOKBRIDGE_MARKER_URL")
        if marker:
            # A request the test server logs: where this run's requests start in its log.
            with urllib.request.urlopen(f"{marker}?run={name}", timeout=10):
                pass
        print(f"HOOKBRIDGE_START {name}", flush=True)
        started = time.perf_counter()
        run = dag.test(**kwargs)
        record = {
            "name": name,
            "state": str(run.state),
            "run_id": run.run_id,
            "seconds": time.perf_counter() - started,
            "tasks": _results(run),
        }
        print("HOOKBRIDGE_RUN " + json.dumps(record, default=str), flush=True)


if __name__ == "__main__":
    main()
