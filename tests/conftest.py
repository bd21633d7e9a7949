"""Shared fixtures: every core test runs on asyncio and on trio, with virtual time on demand."""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any

import pytest
from hypothesis import settings

# Every property test draws the same examples on every run: CI stays deterministic (a run that
# fails fails again, on any machine). HOOKBRIDGE_FUZZ=long explores with fresh random examples.
settings.register_profile("hookbridge-tests", derandomize=True, database=None, deadline=None)
settings.register_profile("hookbridge-explore", deadline=None)
settings.load_profile(
    "hookbridge-explore" if os.environ.get("HOOKBRIDGE_FUZZ") == "long" else "hookbridge-tests"
)

# Importing Airflow creates $AIRFLOW_HOME/logs: keep it out of the user's home.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="hookbridge-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")


def _virtual_time_loop() -> asyncio.AbstractEventLoop:
    import looptime

    return looptime.new_event_loop(start=1000.0)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Both backends; a test that also requests ``mock_clock`` gets virtual time on both.

    trio takes ``MockClock(autojump_threshold=0)``; asyncio takes a looptime event loop. In both,
    sleeps end as soon as every task is blocked and ``anyio.current_time()`` jumps ahead.
    """
    name = str(request.param)
    if "mock_clock" not in request.fixturenames:
        return name, {}
    if name == "trio":
        import trio.testing

        return name, {"clock": trio.testing.MockClock(autojump_threshold=0)}
    return name, {"loop_factory": _virtual_time_loop}


@pytest.fixture
def mock_clock(anyio_backend: Any) -> None:
    """Request it to run the test on virtual time (see ``anyio_backend``).

    A direct ``parametrize("anyio_backend", ["asyncio"])`` bypasses the fixture above and would
    silently run on real time: refuse it, so that a timing test cannot pass by accident.
    """
    if not isinstance(anyio_backend, tuple):
        raise pytest.UsageError(
            "mock_clock needs the conftest's anyio_backend fixture: parametrize it with "
            'pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)'
        )
