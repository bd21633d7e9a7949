"""The reliability suite's subjects (an adapter and its loopback server) and its fuzz profiles.

Every guarantee module takes the ``subject`` fixture, parametrized over :data:`SUBJECTS`: an
adapter joins the suite by adding a factory there.

Fuzzing: ``HOOKBRIDGE_FUZZ=long`` runs every fuzz test with many examples
(``HOOKBRIDGE_FUZZ_EXAMPLES``, 5,000 by default) and a random seed; CI runs few, derandomized.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, settings
from reliability_subjects import SUBJECTS, Subject

# -- hypothesis profiles ------------------------------------------------------------------------

CI_EXAMPLES = 60
LONG_EXAMPLES = int(os.environ.get("HOOKBRIDGE_FUZZ_EXAMPLES", "5000"))
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "hookbridge-ci",
    max_examples=CI_EXAMPLES,
    derandomize=True,  # the same examples on every run: CI stays deterministic
    deadline=None,  # a loaded CI machine must not turn slowness into failure
    database=None,
    suppress_health_check=_QUIET,
)
settings.register_profile(
    "hookbridge-long",
    max_examples=LONG_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=_QUIET,
)
#: The profile the fuzz tests use: ``@settings.get_profile(FUZZ_PROFILE)``.
FUZZ_PROFILE = "hookbridge-long" if os.environ.get("HOOKBRIDGE_FUZZ") == "long" else "hookbridge-ci"
settings.register_profile("hookbridge-fuzz", settings.get_profile(FUZZ_PROFILE))


@pytest.fixture(params=sorted(SUBJECTS))
async def subject(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Subject]:
    """Each adapter of :data:`SUBJECTS` in turn, with its server running on the test's loop."""
    async with SUBJECTS[str(request.param)](monkeypatch) as made:
        yield made


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long fuzz profile runs past the suite's per-test timeout: lift it for the fuzz tests."""
    if FUZZ_PROFILE != "hookbridge-long":
        return
    for item in items:
        if item.path.name.startswith("test_fuzz_"):  # test_fuzz_parsers and each adapter's
            item.add_marker(pytest.mark.timeout(0))
