"""Runs contrib/dags/hookbridge_example_dag.py under dag.test() (called by test_example_dag.py).

Kept out of the dags folder: dag.test() imports every file there that mentions Airflow DAGs.
"""

from __future__ import annotations

import os
import sys

dags = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
sys.path.insert(0, dags)

from airflow.utils import db  # noqa: E402

db.initdb()

import hookbridge_example_dag  # noqa: E402

run = hookbridge_example_dag.example.test()
print(f"HOOKBRIDGE_EXAMPLE state {run.state}")
