"""The provider's own hook: a blocking client for a small line-based key/value protocol.

The protocol (UTF-8 lines over TCP): the client sends ``AUTH <password>`` first (answered
``OK``); then ``GET <key>`` (``VALUE <json>`` or ``MISSING``), ``SET <key> <json>`` (``OK``) and
``PING`` (``PONG <server name>``). Any command may be answered ``BUSY <seconds>`` (slow down) or
``ERR <reason>``. This stands for whatever synchronous client library a real provider wraps.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from airflow.sdk import BaseHook

__all__ = ["KeyValueBusy", "KeyValueClient", "KeyValueError", "KeyValueHook", "KeyValueMissing"]


class KeyValueError(Exception):
    """The server answered ``ERR``."""


class KeyValueMissing(KeyValueError):
    """``GET`` of a key that does not exist."""


class KeyValueBusy(KeyValueError):
    """The server asked us to slow down for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"busy, retry after {seconds} s")
        self.seconds = seconds


class KeyValueClient:
    """One authenticated TCP connection; blocking, not thread-safe (one user at a time)."""

    def __init__(self, host: str, port: int, password: str, *, timeout: float = 10.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._file = self._sock.makefile("rwb")
        try:
            self._command(f"AUTH {password}")
        except BaseException:
            self.close()
            raise

    def _command(self, line: str) -> str:
        self._file.write(line.encode() + b"\n")
        self._file.flush()
        answer = self._file.readline().decode().rstrip("\n")
        if not answer:
            raise ConnectionResetError("the key/value server closed the connection")
        word, _, rest = answer.partition(" ")
        if word == "BUSY":
            raise KeyValueBusy(float(rest))
        if word == "ERR":
            raise KeyValueError(rest)
        return answer

    def get(self, key: str) -> Any:
        answer = self._command(f"GET {key}")
        if answer == "MISSING":
            raise KeyValueMissing(f"no key {key!r}")
        return json.loads(answer.partition(" ")[2])

    def set(self, key: str, value: Any) -> None:
        self._command(f"SET {key} {json.dumps(value)}")

    def ping(self) -> str:
        return self._command("PING").partition(" ")[2]

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._sock.close()


class KeyValueHook(BaseHook):
    """Airflow hook for connections of type ``kv`` (host, port, password)."""

    conn_name_attr = "kv_conn_id"
    default_conn_name = "kv_default"
    conn_type = "kv"
    hook_name = "Key/value store"

    def __init__(self, kv_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.kv_conn_id = kv_conn_id

    @staticmethod
    def client_for(conn: Any, *, timeout: float = 10.0) -> KeyValueClient:
        """A client for an Airflow connection object (the adapter looks it up asynchronously)."""
        return KeyValueClient(conn.host, int(conn.port), conn.password or "", timeout=timeout)

    def get_conn(self) -> KeyValueClient:
        return self.client_for(self.get_connection(self.kv_conn_id))
