"""Fixtures of the Airflow integration tests: servers on a loop of their own, contrib/dags."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow_servers import DAGS, ServerThread


@pytest.fixture
def servers() -> Iterator[ServerThread]:
    """A ServerThread; start the servers you need with ``start_http``/``start_sftp``."""
    thread = ServerThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture
def dags_on_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """contrib/dags importable (its trigger modules are imported by class path)."""
    monkeypatch.syspath_prepend(str(DAGS))
    return DAGS
