"""SFTP adapter: pooled SSH connections, each carrying many concurrent SFTP requests (asyncio only).

``hookbridge.open(conn_id)`` picks it for Airflow connections of type ``sftp``; install it with
``pip install 'hookbridge[sftp]'``. Host keys are verified as ``SFTPHookAsync`` verifies them:
give the connection extra ``host_key`` (or a ``known_hosts`` file).

::

    async with hookbridge.open("my_sftp", root="/data") as sftp:
        async for entry in sftp.walk("incoming"):
            ...
        result = await sftp.download_tree("incoming", "/tmp/incoming", on_error="collect")
        await sftp.upload("/tmp/report.csv", "outgoing/report.csv")
        async with sftp.open("outgoing/log.txt", "ab") as f:
            await f.write(b"done\\n")
"""

from __future__ import annotations

from ._adapter import SFTPAdapter
from ._entries import RemoteEntry
from ._file import RemoteFile
from ._links import LinkStatistics
from ._local import LocalFileError
from ._translate import RemoteFailure, RemoteFileExists, RemoteFileNotFound, RemotePermissionDenied
from ._trees import TransferProgress, TreeTransfer

__all__ = [
    "LinkStatistics",
    "LocalFileError",
    "RemoteEntry",
    "RemoteFailure",
    "RemoteFile",
    "RemoteFileExists",
    "RemoteFileNotFound",
    "RemotePermissionDenied",
    "SFTPAdapter",
    "TransferProgress",
    "TreeTransfer",
]
