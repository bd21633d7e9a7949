"""Test and demo servers on 127.0.0.1, and the pytest plugin that serves them as fixtures.

The servers are imported lazily: aiohttp and asyncssh are optional extras, and the modules double
as ``python -m`` entry points for benchmarks that run a server in its own process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._graph_server import GraphRequest, GraphTestServer, TokenRequest
    from ._http_server import HTTPTestServer, RecordedRequest, expected_sha256, retry_after_date
    from ._redis_server import RedisTestServer
    from ._secrets import secret_forms
    from ._sftp_files import (
        deterministic_bytes,
        populate_large,
        populate_small,
        populate_tree,
        sha256_of,
    )
    from ._sftp_server import SFTPServerStatistics, SFTPTestServer
    from ._shared_grants import GrantLog, max_in_window
    from ._wsman_serve import serve_in_thread
    from ._wsman_server import WSManStatistics, WSManTestServer

__all__ = [
    "GrantLog",
    "HTTPTestServer",
    "RecordedRequest",
    "RedisTestServer",
    "SFTPServerStatistics",
    "SFTPTestServer",
    "deterministic_bytes",
    "expected_sha256",
    "max_in_window",
    "populate_large",
    "populate_small",
    "populate_tree",
    "retry_after_date",
    "secret_forms",
    "sha256_of",
    "GraphRequest",
    "GraphTestServer",
    "TokenRequest",
    "WSManStatistics",
    "WSManTestServer",
    "serve_in_thread",
]

_WHERE = {
    "HTTPTestServer": "._http_server",
    "RecordedRequest": "._http_server",
    "expected_sha256": "._http_server",
    "retry_after_date": "._http_server",
    "SFTPServerStatistics": "._sftp_server",
    "SFTPTestServer": "._sftp_server",
    "deterministic_bytes": "._sftp_files",
    "populate_large": "._sftp_files",
    "populate_small": "._sftp_files",
    "populate_tree": "._sftp_files",
    "sha256_of": "._sftp_files",
    "secret_forms": "._secrets",
    "RedisTestServer": "._redis_server",
    "GrantLog": "._shared_grants",
    "max_in_window": "._shared_grants",
    "GraphRequest": "._graph_server",
    "GraphTestServer": "._graph_server",
    "TokenRequest": "._graph_server",
    "WSManStatistics": "._wsman_server",
    "WSManTestServer": "._wsman_server",
    "serve_in_thread": "._wsman_serve",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hookbridge.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
