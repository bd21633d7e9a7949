"""Debian's OpenSSH server (``/usr/sbin/sshd``) on a random loopback port, for tests and benches.

The project's own server (:mod:`hookbridge.testing._sftp_server`) is asyncssh on both ends of the
wire; OpenSSH is what users run. :class:`OpenSSHServer` starts ``sshd -D`` with its own config,
host key and authorized key in a temporary directory, ``Subsystem sftp internal-sftp``, running
as the current user, and serves that user's file system (paths are absolute). Key authentication
only. ``stop()``/``cont()`` send SIGSTOP/SIGCONT to sshd and every process it forked (Linux
``/proc``): a server that stops answering with its connections open.

When the binary is missing, :func:`sshd_missing` says so in one line (tests skip on it; CI
installs ``openssh-server``). As root, sshd needs its privilege separation directory
``/run/sshd``, which only the service's start normally creates: it is created here if missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncssh

__all__ = ["SSHD", "OpenSSHServer", "sshd_missing"]

SSHD = "/usr/sbin/sshd"
_START_TIMEOUT = 10.0


def sshd_missing() -> str | None:
    """Why the OpenSSH server cannot be used here, or None when it can."""
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing: install Debian's openssh-server to run against OpenSSH"
    return None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class OpenSSHServer:
    """``with OpenSSHServer() as server:``: sshd listening on ``server.port`` until the block ends.

    ``ciphers`` (an OpenSSH ``Ciphers`` line, e.g. ``"aes256-gcm@openssh.com"``) narrows what it
    accepts. Synchronous: start it before the event loop, or from a thread.
    """

    def __init__(self, *, host: str = "127.0.0.1", ciphers: str | None = None) -> None:
        self.host = host
        self.user = os.environ.get("USER") or _login_name()
        self._ciphers = ciphers
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._host_key = host_key
        self._client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key_line: str = host_key.export_public_key("openssh").decode().strip()
        self.client_private_key: str = self._client_key.export_private_key("openssh").decode()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        reason = sshd_missing()
        if reason is not None:
            raise RuntimeError(reason)
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="hookbridge-sshd-"))
        host_key = self._dir / "host_key"
        self._host_key.write_private_key(host_key, "openssh")
        host_key.chmod(0o600)
        client_key = self._dir / "id_ed25519"
        self._client_key.write_private_key(client_key, "openssh")
        client_key.chmod(0o600)
        public = self._client_key.export_public_key("openssh").decode()
        (self._dir / "authorized_keys").write_text(public)
        self.port = _free_port(self.host)
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {host_key}",
            f"PidFile {self._dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self._dir / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "Subsystem sftp internal-sftp",
            "LogLevel ERROR",
            "MaxSessions 100",
            "MaxStartups 100:30:200",
        ]
        if self._ciphers:
            lines.append(f"Ciphers {self._ciphers}")
        config = self._dir / "sshd_config"
        config.write_text("\n".join(lines) + "\n")
        self._proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # not in the test runner's process group (Ctrl-C)
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self.close()
                raise RuntimeError(f"sshd exited at start: {err.strip()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 1):
                return
            time.sleep(0.02)
        self.close()
        raise RuntimeError(f"sshd did not listen on {self.host}:{self.port} in {_START_TIMEOUT} s")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            for pid in [proc.pid, *_descendants(proc.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> OpenSSHServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- a server that stops answering -------------------------------------------------------

    def stop(self) -> None:
        """SIGSTOP sshd and its per-connection processes: connections stay open, unanswered."""
        self._signal_all(signal.SIGSTOP)

    def cont(self) -> None:
        """Undo :meth:`stop`."""
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, signum: int) -> None:
        # The per-connection processes call setsid(): a process group does not reach them.
        assert self._proc is not None
        for pid in [self._proc.pid, *_descendants(self._proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    # -- for clients -------------------------------------------------------------------------

    @property
    def client_key_path(self) -> Path:
        assert self._dir is not None, "the key is written on start"
        return self._dir / "id_ed25519"

    def airflow_connection(self) -> dict[str, Any]:
        """An Airflow sftp connection (``AIRFLOW_CONN_<ID>`` JSON) with the host key pinned."""
        return {
            "conn_type": "sftp",
            "host": self.host,
            "port": self.port,
            "login": self.user,
            "extra": {"host_key": self.host_key_line, "private_key": self.client_private_key},
        }


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux /proc), children first."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in parents.get(pending.pop(0), []):
            found.append(child)
            pending.append(child)
    return found


def _login_name() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
