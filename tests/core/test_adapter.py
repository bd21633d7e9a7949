"""The Adapter base class: lifecycle, call() policy, statistics, spec."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import hookbridge
from hookbridge import Adapter, AdapterClosed, ConfigurationError, Limits, Retry, Throttled

pytestmark = pytest.mark.anyio


class CounterAdapter(Adapter):
    """A real adapter over an in-process resource: counts opens and closes."""

    name = "counter"
    conn_types = ("counter",)

    def __init__(self, conn_id: str, *, step: int = 1, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self.step = step
        self.opened = 0
        self.closed_count = 0

    async def _open(self) -> None:
        self.opened += 1

    async def _close(self) -> None:
        self.closed_count += 1

    def _spec_options(self) -> dict[str, Any]:
        return {**super()._spec_options(), "step": self.step}


class AsyncioOnlyAdapter(CounterAdapter):
    name = "asyncio-only"
    asyncio_only = True


async def test_lifecycle_open_close_and_no_reopen() -> None:
    adapter = CounterAdapter("c")
    with pytest.raises(AdapterClosed, match="open it first"):
        await adapter.call(anyio.sleep, 0)
    async with adapter as opened:
        assert opened is adapter
        assert adapter.opened == 1
        assert not adapter.closed
    assert adapter.closed and adapter.closed_count == 1
    await adapter.aclose()  # idempotent
    assert adapter.closed_count == 1
    with pytest.raises(AdapterClosed, match="already opened"):
        async with adapter:
            pass
    with pytest.raises(AdapterClosed, match="closed"):
        await adapter.call(anyio.sleep, 0)


async def test_failed_open_releases_what_it_acquired() -> None:
    class Failing(CounterAdapter):
        async def _open(self) -> None:
            await super()._open()
            raise RuntimeError("boom")

    adapter = Failing("c")
    with pytest.raises(RuntimeError, match="boom"):
        async with adapter:
            pass
    assert adapter.closed and adapter.closed_count == 1


async def test_call_runs_through_limits_and_retry(mock_clock: None) -> None:
    attempts = 0

    async def flaky(x: int) -> int:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise Throttled("slow down", status=429, retry_after=1.0)
        return x * 2

    limits = Limits(rate="10/s", max_concurrency=2)
    async with CounterAdapter("c", limits=limits, retry=Retry(attempts=5, backoff=0.01)) as api:
        start = anyio.current_time()
        assert await api.call(flaky, 21) == 42
        # Two throttles with Retry-After 1 s each: at least 2 s of (virtual) waiting.
        assert anyio.current_time() - start >= 2.0
        stats = api.statistics()
    assert (stats.calls, stats.succeeded, stats.failed) == (1, 1, 0)
    assert stats.retries == 2 and stats.throttled == 2
    assert stats.limits.granted >= 3


async def test_call_counts_failures() -> None:
    async def broken() -> None:
        raise ValueError("not retryable")

    async with CounterAdapter("c") as api:
        with pytest.raises(ValueError, match="not retryable"):
            await api.call(broken)
        stats = api.statistics()
    assert (stats.calls, stats.failed, stats.retries) == (1, 1, 0)


async def test_spec_is_json_safe_and_round_trips() -> None:
    adapter = CounterAdapter(
        "c", step=3, limits=Limits(rate="5/s", burst=2), retry=Retry(attempts=4)
    )
    spec = adapter.spec()
    assert json.loads(json.dumps(spec)) == spec
    assert spec["adapter"] == "counter" and spec["conn_id"] == "c"
    hookbridge.register(CounterAdapter, replace=True)
    async with hookbridge.open_spec(json.loads(json.dumps(spec)), shared=False) as copy:
        assert isinstance(copy, CounterAdapter) and copy is not adapter
        assert copy.step == 3
        assert copy.spec() == spec


async def test_map_uses_adapter_concurrency() -> None:
    in_flight = peak = 0

    async def work(i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.lowlevel.checkpoint()
        in_flight -= 1
        return i

    async with (
        CounterAdapter("c", limits=Limits(max_concurrency=3)) as api,
        api.map(work, range(50)) as results,
    ):
        assert [r async for r in results] == list(range(50))
    assert 1 <= peak <= 3


async def test_asyncio_only_adapter_refuses_trio(anyio_backend: Any) -> None:
    adapter = AsyncioOnlyAdapter("c")
    if anyio_backend[0] == "trio":
        with pytest.raises(ConfigurationError, match=r"asyncio-only.*cannot run under trio"):
            async with adapter:
                pass
        assert adapter.opened == 0
    else:
        async with adapter:
            assert adapter.opened == 1


def test_conn_id_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="conn_id"):
        CounterAdapter("")


async def test_call_waits_for_rate_and_slots_and_frees_them(mock_clock: None) -> None:
    # The first attempt runs inline only when a slot and a token are free at once; otherwise
    # the call waits like `async with limits():`. Either way the slot is given back.
    running = peak = 0

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.1)
        running -= 1

    limits = Limits(rate="2/s", burst=1, max_concurrency=1)
    async with CounterAdapter("c", limits=limits) as api:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(api.call, work)
        # Five grants at 2/s with a burst of 1: the last one 2 s after the first.
        assert anyio.current_time() - start >= 2.0
        assert peak == 1
        assert limits.statistics().in_flight == 0
        assert api.statistics().succeeded == 5


async def test_a_failed_first_attempt_is_raised_unchanged_and_frees_its_slot() -> None:
    error = ValueError("not retryable")

    async def broken() -> None:
        raise error

    limits = Limits(max_concurrency=1)
    async with CounterAdapter("c", limits=limits) as api:
        with pytest.raises(ValueError) as caught:
            await api.call(broken)
        assert caught.value is error and caught.value.__context__ is None
        assert limits.statistics().in_flight == 0
        # The slot is free again: a second call does not wait for it.
        with anyio.fail_after(1):
            with pytest.raises(ValueError):
                await api.call(broken)


def _or_value_error(base: Any) -> Any:
    def retry_on(error: BaseException) -> bool:
        return isinstance(error, ValueError) or base(error)

    return retry_on


def test_derived_retry_is_built_once_per_policy_in_force() -> None:
    adapter = CounterAdapter("c", retry=Retry(attempts=4))
    widened = adapter._derived_retry(_or_value_error)
    assert widened.attempts == 4
    assert widened.retry_on(ValueError()) and not adapter.retry.retry_on(ValueError())
    assert widened.retry_on(hookbridge.TransportError("down"))  # the base policy's still hold
    assert adapter._derived_retry(_or_value_error) is widened
    adapter.retry = Retry(attempts=2)  # as the connection extra does at open
    again = adapter._derived_retry(_or_value_error)
    assert again is not widened and again.attempts == 2 and again.retry_on(ValueError())
