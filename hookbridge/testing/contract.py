"""The adapter contract: one test class that every adapter, ours or a provider author's, runs.

Subclass :class:`AdapterContract` in your tests and give it a ``contract_subject`` fixture::

    from hookbridge.testing.contract import AdapterContract, ContractSubject

    class TestWidgetContract(AdapterContract):
        @pytest.fixture
        def contract_subject(self, widget_server, monkeypatch) -> ContractSubject:
            monkeypatch.setenv("AIRFLOW_CONN_WIDGETS", json.dumps(widget_server.connection()))
            return ContractSubject(
                adapter=WidgetAdapter,
                conn_id="widgets",
                operation=lambda api: api.fetch("1"),
                secrets=[widget_server.password],
            )

It checks, against your real server: the lifecycle (and that a closed adapter is not
reopened); that ``spec()`` is JSON-safe, reproducible through ``open_spec`` and free of every
secret; that limits (concurrency and rate) and retry apply through ``call`` and ``call_sync``,
with foreign errors translated; that a throttled answer pauses every caller (when the subject can
provoke one); that cancelling a fan-out at random points leaves the limits and the pool whole,
the server with nothing open (when the subject can count it), and the adapter working;
``check()``; and the trio behaviour (works, or is refused clearly).
"""

from __future__ import annotations

import functools
import json
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from .._adapter import Adapter
from .._errors import AdapterClosed, ConfigurationError, HookBridgeError, TransportError
from .._limits import Limits
from .._registry import open_spec
from .._retry import Retry
from ._secrets import secret_forms

__all__ = ["AdapterContract", "ContractSubject"]


@dataclass
class ContractSubject:
    """What the contract needs to know about one adapter and its server."""

    #: The adapter class under test.
    adapter: type[Adapter]
    #: An Airflow connection (``AIRFLOW_CONN_*``) that reaches the test server.
    conn_id: str
    #: One cheap, idempotent remote operation: ``lambda api: api.get("/items/1")``.
    operation: Callable[[Any], Awaitable[Any]]
    #: Every secret of the connection (password, tokens, keys): none may show anywhere.
    secrets: Sequence[str] = ()
    #: Explicit options to open the adapter with (they must survive spec() and open_spec()).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Connections (or channels, shells, handles) the server has open now; None if uncounted.
    open_on_server: Callable[[], int] | None = None
    #: Make the server answer the next request with "slow down for ``seconds``"; None when the
    #: protocol has no such answer.
    throttle: Callable[[float], None] | None = None
    #: Cancellation rounds (each cancels a fan-out of ``fan_out`` operations at a random moment).
    cancellation_rounds: int = 20
    fan_out: int = 50
    seed: int = 1234


def _seen_in(text: str, secrets: Sequence[str]) -> list[str]:
    return [secret for secret in secrets for form in secret_forms(secret) if form in text]


class AdapterContract:
    """The contract tests; subclasses provide the ``contract_subject`` fixture."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        # The servers of the contract run on the test's loop; the trio behaviour is checked
        # separately (test_trio_behaviour) in a loop of its own.
        return "asyncio"

    @pytest.fixture
    def contract_subject(self) -> ContractSubject:
        raise NotImplementedError("define a contract_subject fixture returning a ContractSubject")

    def _open(self, subject: ContractSubject, **extra: Any) -> Adapter:
        return subject.adapter(subject.conn_id, **{**subject.options, **extra})

    @pytest.mark.anyio
    async def test_lifecycle_and_reopen_refused(self, contract_subject: ContractSubject) -> None:
        adapter = self._open(contract_subject)
        with pytest.raises(AdapterClosed):
            await adapter.call(anyio.sleep, 0)
        async with adapter as opened:
            assert opened is adapter
            assert not adapter.closed
            await contract_subject.operation(adapter)
        assert adapter.closed
        with pytest.raises(AdapterClosed):
            await contract_subject.operation(adapter)
        with pytest.raises(AdapterClosed):
            await adapter.__aenter__()
        await adapter.aclose()  # idempotent

    @pytest.mark.anyio
    async def test_spec_is_json_safe_reproducible_and_secret_free(
        self, contract_subject: ContractSubject
    ) -> None:
        limits = Limits(rate="1000/s", burst=5, max_concurrency=7)
        retry = Retry(attempts=4, backoff=0.25)
        async with self._open(contract_subject, limits=limits, retry=retry) as adapter:
            spec = adapter.spec()
            text = json.dumps(spec)
            assert json.loads(text) == spec
            assert spec["conn_id"] == contract_subject.conn_id
            async with open_spec(json.loads(text), shared=False) as again:
                assert type(again) is type(adapter)
                assert again.spec() == spec
                assert again.limits.to_spec() == limits.to_spec()
                assert again.retry == retry
                await contract_subject.operation(again)
            shown = [text, repr(adapter), repr(adapter.statistics()), str(await adapter.check())]
        leaks = [s for part in shown for s in _seen_in(part, contract_subject.secrets)]
        assert not leaks, f"secrets leaked into spec/repr/statistics/check: {len(leaks)} form(s)"

    @pytest.mark.anyio
    async def test_concurrency_limit_holds_for_call_and_call_sync(
        self, contract_subject: ContractSubject
    ) -> None:
        async with self._open(contract_subject, limits=Limits(max_concurrency=2)) as adapter:
            active = peak = 0
            lock = threading.Lock()

            async def async_work() -> None:
                nonlocal active, peak
                active += 1
                peak = max(peak, active)
                await anyio.sleep(0.005)
                active -= 1

            def blocking_work() -> None:
                nonlocal active, peak
                with lock:
                    active += 1
                    peak = max(peak, active)
                time.sleep(0.005)
                with lock:
                    active -= 1

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(adapter.call, async_work)
                    tg.start_soon(adapter.call_sync, blocking_work)
            assert peak == 2
            stats = adapter.statistics()
            assert stats.limits.in_flight == 0
            assert stats.succeeded >= 20

    @pytest.mark.anyio
    async def test_rate_limit_holds_for_remote_operations(
        self, contract_subject: ContractSubject
    ) -> None:
        # GCRA never grants faster than its rate: 21 calls at 200/s take at least 0.1 s. A lower
        # bound only, so it is deterministic however slow the machine is.
        async with self._open(contract_subject, limits=Limits(rate="200/s")) as adapter:
            await contract_subject.operation(adapter)
            started = anyio.current_time()

            async def one() -> None:
                await contract_subject.operation(adapter)

            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
            assert anyio.current_time() - started >= 0.095

    @pytest.mark.anyio
    async def test_retry_and_translation_apply_to_call_and_call_sync(
        self, contract_subject: ContractSubject
    ) -> None:
        retry = Retry(attempts=3, backoff=0.001)
        async with self._open(contract_subject, retry=retry) as adapter:
            failures = {"async": 2, "sync": 2}

            async def flaky() -> str:
                if failures["async"]:
                    failures["async"] -= 1
                    raise TransportError("dropped (contract test)")
                return "ok"

            def flaky_sync() -> str:
                if failures["sync"]:
                    failures["sync"] -= 1
                    raise TransportError("dropped (contract test)")
                return "ok"

            assert await adapter.call(flaky) == "ok"
            assert await adapter.call_sync(flaky_sync) == "ok"
            assert adapter.statistics().retries == 4

            async def refused() -> None:
                raise ConnectionRefusedError("refused (contract test)")

            if issubclass(ConnectionRefusedError, adapter.foreign_errors):
                with pytest.raises(HookBridgeError) as translated:
                    await adapter.call(refused, retry=Retry.none())
                assert isinstance(translated.value.__cause__, ConnectionRefusedError)

            calls = 0

            async def broken() -> None:
                nonlocal calls
                calls += 1
                raise ValueError("a bug, not a fault (contract test)")

            with pytest.raises(ValueError, match="contract test"):
                await adapter.call(broken)
            assert calls == 1  # programming errors are not retried

    @pytest.mark.anyio
    async def test_a_throttled_answer_pauses_every_caller(
        self, contract_subject: ContractSubject
    ) -> None:
        if contract_subject.throttle is None:
            pytest.skip("the protocol has no 'slow down' answer (ContractSubject.throttle)")
        async with self._open(contract_subject, retry=Retry(attempts=3, backoff=0.0)) as adapter:
            await contract_subject.operation(adapter)
            contract_subject.throttle(0.3)
            started = anyio.current_time()
            finished: list[float] = []

            async def one() -> None:
                await contract_subject.operation(adapter)
                finished.append(anyio.current_time() - started)

            await one()  # answered "slow down": waits the cool-down, then succeeds
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(one)
            assert min(finished) >= 0.29
            assert adapter.statistics().throttled >= 1

    @pytest.mark.anyio
    async def test_cancellation_at_random_points_leaves_everything_whole(
        self, contract_subject: ContractSubject
    ) -> None:
        rng = random.Random(contract_subject.seed)
        before = contract_subject.open_on_server() if contract_subject.open_on_server else 0
        async with self._open(contract_subject, limits=Limits(max_concurrency=8)) as adapter:
            for round_number in range(contract_subject.cancellation_rounds):
                delay = rng.uniform(0, 0.02)
                with anyio.move_on_after(delay):
                    async with adapter.map(
                        lambda _: contract_subject.operation(adapter),
                        range(contract_subject.fan_out),
                        on_error="collect",
                    ) as results:
                        async for _ in results:
                            pass
                stats = adapter.statistics()
                assert stats.limits.in_flight == 0, (round_number, contract_subject.seed)
                assert stats.limits.waiting == 0, (round_number, contract_subject.seed)
                assert stats.holding == 0, (round_number, contract_subject.seed)
            await contract_subject.operation(adapter)  # still works
        if contract_subject.open_on_server is not None:
            counter = contract_subject.open_on_server
            with anyio.fail_after(5):
                # The server notices closed connections a moment later, and offers no event.
                while counter() > before:  # noqa: ASYNC110
                    await anyio.sleep(0.01)

    @pytest.mark.anyio
    async def test_check_reports_success(self, contract_subject: ContractSubject) -> None:
        async with self._open(contract_subject) as adapter:
            result = await adapter.check()
        assert result.ok, result
        assert result.latency >= 0
        assert result.detail

    @pytest.mark.anyio
    async def test_trio_behaviour(self, contract_subject: ContractSubject) -> None:
        # trio runs in a worker thread while this loop keeps serving the test server.
        adapter = self._open(contract_subject)

        async def use_under_trio() -> None:
            async with adapter:
                await contract_subject.operation(adapter)

        under_trio = functools.partial(anyio.run, use_under_trio, backend="trio")
        if adapter.asyncio_only:
            with pytest.raises(ConfigurationError, match=r"asyncio-only.*trio") as refused:
                await anyio.to_thread.run_sync(under_trio)
            assert refused.value.conn_id == contract_subject.conn_id
        else:
            await anyio.to_thread.run_sync(under_trio)
            assert adapter.statistics().succeeded >= 1
