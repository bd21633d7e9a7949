"""Test and demo servers on 127.0.0.1, and the pytest plugin that serves them as fixtures.

The servers are imported lazily: aiohttp and asyncssh are optional extras, and the modules double
as ``python -m`` entry points for benchmarks that run a server in its own process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._http_server import HTTPTestServer, RecordedRequest, expected_sha256, retry_after_date
    from ._sftp_server import (
        SFTPServerStatistics,
        SFTPTestServer,
        deterministic_bytes,
        populate_large,
        populate_small,
        populate_tree,
        sha256_of,
    )

__all__ = [
    "HTTPTestServer",
    "RecordedRequest",
    "SFTPServerStatistics",
    "SFTPTestServer",
    "deterministic_bytes",
    "expected_sha256",
    "populate_large",
    "populate_small",
    "populate_tree",
    "retry_after_date",
    "sha256_of",
]

_WHERE = {
    "HTTPTestServer": "._http_server",
    "RecordedRequest": "._http_server",
    "expected_sha256": "._http_server",
    "retry_after_date": "._http_server",
    "SFTPServerStatistics": "._sftp_server",
    "SFTPTestServer": "._sftp_server",
    "deterministic_bytes": "._sftp_server",
    "populate_large": "._sftp_server",
    "populate_small": "._sftp_server",
    "populate_tree": "._sftp_server",
    "sha256_of": "._sftp_server",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hookbridge.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
