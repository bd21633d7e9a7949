"""The registry (entry points and register()) and hookbridge.open with shared leases."""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import pytest

import hookbridge
from hookbridge import Adapter, AdapterNotFound, ConfigurationError

pytestmark = pytest.mark.anyio


class Probe(Adapter):
    name = "probe"
    conn_types = ("probe-type",)
    instances: ClassVar[list[Probe]] = []

    def __init__(self, conn_id: str, *, tag: str = "a", **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self.tag = tag
        self.open_count = 0
        self.close_count = 0
        Probe.instances.append(self)

    async def _open(self) -> None:
        await anyio.lowlevel.checkpoint()  # let concurrent leases race for the first open
        self.open_count += 1

    async def _close(self) -> None:
        self.close_count += 1

    def _spec_options(self) -> dict[str, Any]:
        return {**super()._spec_options(), "tag": self.tag}


@pytest.fixture(autouse=True)
def _registered() -> None:
    hookbridge.register(Probe, replace=True)
    Probe.instances.clear()


def test_builtin_adapters_come_from_entry_points() -> None:
    infos = {i.name: i for i in hookbridge.registered_adapters()}
    assert infos["http"].source == "entry point"
    assert infos["http"].target == "hookbridge.adapters.http:HttpAdapter"
    assert infos["sftp"].source == "entry point"
    assert infos["probe"].source == "register()"
    assert infos["probe"].conn_types == ("probe-type",)


def test_lookup_by_name_and_conn_type() -> None:
    assert hookbridge.get_adapter("probe") is Probe
    assert hookbridge.get_adapter(conn_type="probe-type") is Probe


def test_unknown_names_list_what_is_installed() -> None:
    with pytest.raises(
        AdapterNotFound, match=r"no adapter named 'nope'.*Installed adapters:.*probe"
    ):
        hookbridge.get_adapter("nope")
    with pytest.raises(AdapterNotFound, match=r"conn_type 'ftp'.*probe \(probe-type\)"):
        hookbridge.get_adapter(conn_type="ftp")


def test_register_validates() -> None:
    with pytest.raises(ConfigurationError, match="already registered"):
        hookbridge.register(Probe)
    with pytest.raises(ConfigurationError, match=r"not a hookbridge\.Adapter"):
        hookbridge.register(int)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="module:ClassName"):
        hookbridge.register("not-a-target")


def test_register_string_target_that_does_not_import_is_reported() -> None:
    hookbridge.register("no_such_module_xyz:Thing", name="broken", replace=True)
    info = {i.name: i for i in hookbridge.registered_adapters()}["broken"]
    assert info.error is not None and "no_such_module_xyz" in info.error
    with pytest.raises(AdapterNotFound, match="cannot be loaded"):
        hookbridge.get_adapter("broken")


async def test_open_not_shared_opens_and_closes() -> None:
    async with hookbridge.open("c1", adapter="probe", tag="x") as api:
        assert isinstance(api, Probe) and api.tag == "x" and api.open_count == 1
    assert api.closed and api.close_count == 1


async def test_shared_leases_share_one_instance_and_close_after_the_last() -> None:
    opened: list[Probe] = []

    async def lease(done: anyio.Event) -> None:
        async with hookbridge.open("c1", adapter=Probe, shared=True, linger=0) as api:
            opened.append(api)
            await done.wait()

    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(lease, done)
        await anyio.wait_all_tasks_blocked()
        assert len(opened) == 10 and len({id(a) for a in opened}) == 1
        shared = opened[0]
        assert shared.open_count == 1 and not shared.closed
        done.set()
    assert shared.closed and shared.close_count == 1


async def test_shared_by_spec_different_options_get_different_instances() -> None:
    async with (
        hookbridge.open("c1", adapter=Probe, shared=True, linger=0, tag="a") as a,
        hookbridge.open("c1", adapter=Probe, shared=True, linger=0, tag="b") as b,
        hookbridge.open("c2", adapter=Probe, shared=True, linger=0, tag="a") as c,
    ):
        assert len({id(a), id(b), id(c)}) == 3


async def test_shared_linger_keeps_it_open_then_sweeps(mock_clock: None) -> None:
    async with hookbridge.open("c1", adapter=Probe, shared=True, linger=30) as first:
        pass
    assert not first.closed  # lingering
    await anyio.sleep(10)
    async with hookbridge.open("c1", adapter=Probe, shared=True, linger=30) as again:
        assert again is first  # reused within the linger time
    await anyio.sleep(31)
    async with hookbridge.open("c9", adapter=Probe, shared=True, linger=0):
        pass  # any shared open in the loop sweeps what has lingered too long
    assert first.closed and first.close_count == 1
    await hookbridge.aclose_shared()


async def test_aclose_shared_closes_everything() -> None:
    async with hookbridge.open("c1", adapter=Probe, shared=True, linger=60) as api:
        pass
    assert not api.closed
    await hookbridge.aclose_shared()
    assert api.closed and api.close_count == 1


async def test_shared_open_failure_reaches_every_waiting_lease() -> None:
    class FailingProbe(Probe):
        async def _open(self) -> None:
            await anyio.sleep(0.01)
            raise ConnectionError("refused")

    errors: list[BaseException] = []

    async def lease() -> None:
        try:
            async with hookbridge.open("c1", adapter=FailingProbe, shared=True, linger=0):
                pass
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(lease)
    assert len(errors) == 3
    # The table is clean: a later open tries again.
    with pytest.raises(ConnectionError):
        async with hookbridge.open("c1", adapter=FailingProbe, shared=True, linger=0):
            pass


def test_open_spec_rejects_garbage() -> None:
    with pytest.raises(ConfigurationError, match=r"Adapter\.spec"):
        hookbridge.open_spec({"nope": 1})
    with pytest.raises(ConfigurationError, match="linger"):
        hookbridge.open("c", adapter=Probe, linger=-1)
