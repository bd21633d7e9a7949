"""A real redis-server on 127.0.0.1 in a temporary directory, for tests and benchmarks.

Runs the ``redis-server`` binary (Debian's ``redis-server`` package) with no persistence and a
password, on a free port. ``kill()`` and ``start()`` again on the same port simulate an outage and
a restart that lost every key; ``pause()``/``resume()`` (SIGSTOP/SIGCONT) a server too slow to
answer.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisTestServer", "redis_server_binary"]


def redis_server_binary() -> str | None:
    """The redis-server executable, or None when it is not installed."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisTestServer:
    """``with RedisTestServer() as server: server.url`` (password included: it is a test one)."""

    def __init__(
        self, *, password: str = "redis-test-secret", directory: str | Path | None = None
    ) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise FileNotFoundError(
                "redis-server is not installed: apt-get install redis-server (Debian/Ubuntu)"
            )
        self.binary = binary
        self.password = password
        self.host = "127.0.0.1"
        self.port = _free_port()
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="hookbridge-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://:password@127.0.0.1:port/0``."""
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def airflow_connection(self) -> dict[str, object]:
        """The server as an Airflow connection (conn_type redis), for ``AIRFLOW_CONN_*``."""
        return {
            "conn_type": "redis",
            "host": self.host,
            "port": self.port,
            "password": self.password,
            "extra": {"db": 0},
        }

    def start(self) -> None:
        """Start (or start again, on the same port, with no keys) and wait until it answers."""
        if self._process is not None and self._process.poll() is None:
            return
        options = {
            "port": str(self.port),
            "bind": self.host,
            "requirepass": self.password,
            "save": "",
            "appendonly": "no",
            "dir": str(self.directory),
            "logfile": str(self.directory / "redis.log"),
            "daemonize": "no",
        }
        self._process = subprocess.Popen(
            [
                self.binary,
                *(part for name, value in options.items() for part in (f"--{name}", value)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            if self._process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                    sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                    if b"PONG" in sock.recv(64) or b"PONG" in sock.recv(64):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer on port {self.port} in 10 s")
            time.sleep(0.01)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL): clients see their connections drop."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
            process.wait()

    def pause(self) -> None:
        """Stop answering (SIGSTOP) without closing a connection: a hung Redis."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def __enter__(self) -> RedisTestServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __repr__(self) -> str:
        return f"RedisTestServer(port={self.port})"
