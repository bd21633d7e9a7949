import anyio, pytest, time
pytestmark = pytest.mark.anyio

async def test_virtual(mock_clock):
    t0 = anyio.current_time(); w0 = time.monotonic()
    await anyio.sleep(100)
    assert anyio.current_time() - t0 >= 100
    assert time.monotonic() - w0 < 1
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 3)
            await anyio.sleep(1)
    assert anyio.current_time() - t0 >= 103

async def test_real():
    t0 = time.monotonic(); await anyio.sleep(0.05); assert time.monotonic() - t0 >= 0.04
