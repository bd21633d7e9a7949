"""Opening one SSH connection for the SFTP adapter: the provider's settings, AES-GCM preferred.

Why a cipher preference: asyncssh offers ``chacha20-poly1305@openssh.com`` first, and with the
``cryptography`` package it costs three ChaCha20 cipher set-ups and a Poly1305 pass per SSH
packet, in both processes. ``aes256-gcm@openssh.com`` / ``aes128-gcm@openssh.com`` use the CPU's
AES and carry-less multiply instructions through OpenSSL, one AEAD call per packet. Measured on
loopback (contrib/bench/sftp_transfer.py, 2-core VM with AES-NI), raw asyncssh: 10 KiB files
0.66 -> 0.38 ms client CPU per file (server 0.62 -> 0.33), 1.8x the files per second; one large
file 120 -> 200 MB/s. The order only decides which of the ciphers both sides support is used:

- every cipher of asyncssh's default list is still offered, after the GCM ones, so a server
  without GCM negotiates chacha20-poly1305 or AES-CTR exactly as before;
- AES-GCM is an AEAD mode like chacha20-poly1305 (no separate MAC), with a 256-bit key first;
  unlike chacha20-poly1305 it is not open to the Terrapin prefix truncation (CVE-2023-48795),
  which asyncssh's strict key exchange prevents anyway;
- the legacy ciphers asyncssh leaves out of its default list cannot be chosen, not even through
  the ``ciphers`` option, which only reorders or narrows the default list;
- key exchange, host-key algorithms, host-key verification and authentication are untouched.

Each SFTP channel also advertises a larger receive window and packet size than asyncssh's
defaults (2 MiB, 32 KiB): :data:`CHANNEL_WINDOW` and :data:`CHANNEL_MAX_PACKET`. They only bound
what the server may send before the client acknowledges it and how big each data packet may be;
a server that sends less is unaffected. Larger packets mean a quarter as many packets per byte,
and as much less per-packet work (a decryption, a Python dispatch, and the SSH_MSG_IGNORE asyncssh
sends before each) on both sides; the larger window keeps the server sending while the client
is busy. Measured, raw asyncssh ``get`` of a large file: 200 -> 270 MB/s, about 30% less client
and 20% less server CPU per byte. 128 KiB stays well below the 256 KiB packet limit of OpenSSH.

The connection settings are the provider's: ``SFTPHookAsync._parse_extras`` reads the Airflow
connection (host key, known_hosts, no_host_key_check, key file, private key, passphrase), and
:func:`connect_ssh` turns the hook's fields into ``asyncssh.connect`` arguments exactly as
``SFTPHookAsync._get_conn`` (sftp provider 7.0) does, adding ``encryption_algs``, ``window`` and
``max_pktsize``: the hook's ``_get_conn`` gives no way to pass an asyncssh option.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import asyncssh
from asyncssh.encryption import get_default_encryption_algs

from hookbridge import ConfigurationError
from hookbridge.adapter import get_connection

__all__ = [
    "CHANNEL_MAX_PACKET",
    "CHANNEL_WINDOW",
    "PREFERRED_CIPHERS",
    "parse_ciphers",
    "connect_ssh",
    "default_ciphers",
]

#: Offered first when asyncssh supports them; see the module docstring.
PREFERRED_CIPHERS = ("aes256-gcm@openssh.com", "aes128-gcm@openssh.com")

#: Receive window and largest data packet each SFTP channel advertises; see the docstring.
CHANNEL_WINDOW = 8 * 1024 * 1024
CHANNEL_MAX_PACKET = 128 * 1024

_SSH_PORT = 22


def _offered() -> list[str]:
    """asyncssh's default ciphers, in its order (what it offers when none are given)."""
    return [alg.decode("ascii") for alg in get_default_encryption_algs()]


def default_ciphers() -> tuple[str, ...]:
    """The adapter's cipher offer: AES-GCM first, then the rest of asyncssh's defaults."""
    offered = _offered()
    first = [name for name in PREFERRED_CIPHERS if name in offered]
    return (*first, *(name for name in offered if name not in first))


def parse_ciphers(value: Any) -> tuple[str, ...]:
    """A ``ciphers`` option: a list of names (or one comma-separated string), best first."""
    names: list[Any]
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",")]
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        names = list(value)
    else:
        names = [value]
    allowed = _offered()
    if not names or any(not isinstance(name, str) or name not in allowed for name in names):
        raise ValueError(
            f"must be a list of SSH cipher names, best first, from {', '.join(allowed)}; "
            f"got {value!r}."
        )
    return tuple(dict.fromkeys(names))


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


async def connect_ssh(conn_id: str, ciphers: Sequence[str]) -> asyncssh.SSHClientConnection:
    """Connect as ``SFTPHookAsync(sftp_conn_id=conn_id)._get_conn()`` does, offering ``ciphers``."""
    from airflow.providers.sftp.hooks.sftp import SFTPHookAsync

    # A hook per connection, as SFTPClientPool does: the connection is read again each time.
    hook = SFTPHookAsync(sftp_conn_id=conn_id)
    conn = await get_connection(conn_id)
    try:
        # The provider decides the host-key policy (and refuses contradictory settings) here.
        hook._parse_extras(conn)
    except ValueError as exc:
        raise ConfigurationError(
            f"{exc} Fix the connection extra.", conn_id=conn_id, field="extra.no_host_key_check"
        ) from None
    config: dict[str, Any] = {
        "host": _first(hook.host, conn.host),
        "port": _first(hook.port, conn.port, _SSH_PORT),
        "username": _first(hook.username, conn.login),
        "password": _first(hook.password, conn.password),
    }
    if hook.key_file:
        # Checked here: asyncssh would fail with a bare FileNotFoundError, which reads as a
        # network fault and would be retried.
        if not await anyio.Path(hook.key_file).is_file():
            raise ConfigurationError(
                f"the key file {hook.key_file!r} does not exist or is not a file. Fix the "
                "connection extra's key_file (a path on this machine), or give private_key.",
                conn_id=conn_id,
                field="extra.key_file",
            )
        config["client_keys"] = hook.key_file
    if hook.known_hosts:
        known_hosts = hook.known_hosts
        if isinstance(known_hosts, str) and known_hosts.lower() == "none":
            config["known_hosts"] = None
        elif hook._should_use_known_hosts():
            config["known_hosts"] = known_hosts
    if hook.private_key:
        try:
            key = asyncssh.import_private_key(hook.private_key, hook.passphrase)
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            raise ConfigurationError(
                f"the connection's private key could not be read: {type(exc).__name__}. Check "
                "private_key and the passphrase.",
                conn_id=conn_id,
                field="extra.private_key",
            ) from None
        config["client_keys"] = [key]
    if hook.passphrase:
        config["passphrase"] = hook.passphrase
    connection: asyncssh.SSHClientConnection = await asyncssh.connect(
        **config,
        encryption_algs=list(ciphers),
        window=CHANNEL_WINDOW,
        max_pktsize=CHANNEL_MAX_PACKET,
    )
    return connection
