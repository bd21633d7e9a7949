"""The SFTP adapter is asyncio-only (asyncssh): under trio it refuses clearly at open time."""

from __future__ import annotations

import pytest

from hookbridge import ConfigurationError
from hookbridge import open as open_adapter
from hookbridge.adapters.sftp import SFTPAdapter

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["trio"])]


async def test_opening_under_trio_is_a_clear_configuration_error() -> None:
    adapter = SFTPAdapter("any_sftp_conn")
    with pytest.raises(ConfigurationError, match="asyncio") as caught:
        async with adapter:
            pass
    assert "any_sftp_conn" in str(caught.value)
    assert "trio" in str(caught.value)
    with pytest.raises(ConfigurationError, match="asyncio"):
        async with open_adapter("any_sftp_conn", adapter="sftp"):
            pass
