"""Every example DAG of contrib/dags loads through Airflow's DagBag, without side effects."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow_servers import DAGS

EXPECTED = {
    "hookbridge_example",
    "hookbridge_async_http",
    "hookbridge_async_http_raise",
    "hookbridge_async_sftp",
    "hookbridge_resume",
    "hookbridge_deferred",
}


def test_dagbag_loads_every_example_without_errors_or_side_effects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.syspath_prepend(str(DAGS))
    monkeypatch.chdir(tmp_path)
    # No connection is defined: importing must not look one up, open a socket or write a file.
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) >= EXPECTED
    assert list(tmp_path.iterdir()) == []
    for dag_id in EXPECTED:
        dag = bag.dags.get(dag_id)
        assert dag is not None and "hookbridge" in dag.tags
