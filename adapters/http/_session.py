"""What the HTTP adapter's one session is built from: the provider's resolved connection.

``HttpAsyncHook.config()`` gives the base URL, the extra's headers and its transport options
(requests-style names); this module turns them into aiohttp settings, the credential headers and
the list of secrets to redact, and opens the session.
"""

from __future__ import annotations

import functools
import logging
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio

from hookbridge import ConfigurationError
from hookbridge.adapter import positive_int, redact

from ._options import DEFAULT_TIMEOUT, client_timeout, truthy

__all__ = ["SessionSettings", "encode_basic_auth", "open_session", "session_settings"]

log = logging.getLogger("hookbridge.http")

# Header names whose values are credentials: redacted from every message and log line.
_SECRET_HEADER = re.compile(
    r"auth|token|key|secret|passw|cookie|session|signature|credential", re.I
)
# Provider extra options that only requests understands.
_REQUESTS_ONLY_OPTIONS = ("stream", "cert")
#: aiohttp's default, kept when the extra says nothing.
DEFAULT_MAX_REDIRECTS = 10


@dataclass
class SessionSettings:
    """The resolved transport of one adapter."""

    base_url: str
    headers: dict[str, str]
    secrets: tuple[str, ...]
    timeout: aiohttp.ClientTimeout
    raise_for_status: bool
    follow_redirects: bool = True
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    trust_env: bool = False
    #: Per-request keyword arguments for aiohttp (ssl, proxy).
    request_options: dict[str, Any] = field(default_factory=dict)


def encode_basic_auth(login: str, password: str) -> str:
    encode = getattr(aiohttp, "encode_basic_auth", None)
    if encode is None:  # aiohttp < 3.14, where BasicAuth is not deprecated yet
        return aiohttp.BasicAuth(login, password).encode()
    return encode(login, password)  # type: ignore[no-any-return]


def _base_url(conn: Any, provider_base_url: str, conn_id: str) -> str:
    base_url = provider_base_url
    # conn_type https without a schema means https; the provider would say http.
    if (
        (conn.conn_type or "").lower() == "https"
        and base_url.startswith("http://")
        and not conn.schema
        and "://" not in (conn.host or "")
    ):
        base_url = "https://" + base_url[len("http://") :]
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"the base URL {redact(base_url)!r} is not an http(s) URL with a host. Set the "
            "connection's host (and schema http/https, or a host like https://api.example.com).",
            conn_id=conn_id,
            field="host",
        )
    return base_url


def _headers(conn: Any, extra_headers: Mapping[str, Any], conn_id: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in extra_headers.items():
        if key == "hookbridge":
            continue  # our settings, not a header (the provider sends unknown keys as headers)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            headers[str(key)] = str(value)
        else:
            log.debug("conn_id %r: extra key %r is not a header value; ignored", conn_id, key)
    if conn.login and not any(key.lower() == "authorization" for key in headers):
        try:
            headers["Authorization"] = encode_basic_auth(conn.login, conn.password or "")
        except ValueError as exc:
            raise ConfigurationError(
                f"cannot use the login for basic auth: {exc}", conn_id=conn_id, field="login"
            ) from exc
    return headers


def _secrets(conn: Any, headers: Mapping[str, str]) -> tuple[str, ...]:
    secrets = [conn.password] if conn.password else []
    for key, value in headers.items():
        if _SECRET_HEADER.search(key):
            secrets.append(value)
            if key.lower() == "authorization":
                secrets.append(value.split(" ", 1)[-1])  # the credentials without the scheme
    return tuple(secret for secret in secrets if secret and len(secret) >= 3)


def session_settings(
    conn: Any, config: Any, options: Mapping[str, Any], sources: Mapping[str, str], conn_id: str
) -> SessionSettings:
    """Settle the transport from the provider's config; the hookbridge options win over the
    provider's own extra options (``timeout``, ``check_response``) when set explicitly."""
    base_url = _base_url(conn, config.base_url, conn_id)
    headers = _headers(conn, config.headers or {}, conn_id)
    extra_options: Mapping[str, Any] = config.extra_options or {}
    timeout = options["timeout"]
    if timeout is None:
        if "timeout" in extra_options:
            try:
                timeout = client_timeout(extra_options["timeout"])
            except ValueError as exc:
                raise ConfigurationError(str(exc), conn_id=conn_id, field="timeout") from None
        else:
            timeout = aiohttp.ClientTimeout(total=DEFAULT_TIMEOUT)
    raise_for_status = options["raise_for_status"]
    if raise_for_status is None:
        raise_for_status = truthy(extra_options.get("check_response", True))
    settings = SessionSettings(
        base_url=base_url,
        headers=headers,
        secrets=_secrets(conn, headers),
        timeout=timeout,
        raise_for_status=raise_for_status,
        trust_env=truthy(extra_options.get("trust_env", False)),
    )
    verify = extra_options.get("verify_ssl", extra_options.get("verify"))
    if verify is not None and not truthy(verify):
        settings.request_options["ssl"] = False
    elif isinstance(verify, str) and verify.lower() not in ("true", "1", "yes", "on"):
        settings.request_options["ssl"] = verify  # a CA bundle path: loaded off the event loop
    proxy = extra_options.get("proxy", extra_options.get("proxies"))
    if isinstance(proxy, Mapping):
        proxy = proxy.get(urlsplit(base_url).scheme) or proxy.get("all")
    if proxy:
        settings.request_options["proxy"] = str(proxy)
    if "allow_redirects" in extra_options:
        settings.follow_redirects = truthy(extra_options["allow_redirects"])
    if "max_redirects" in extra_options:
        try:
            settings.max_redirects = positive_int(extra_options["max_redirects"])
        except ValueError as exc:
            raise ConfigurationError(str(exc), conn_id=conn_id, field="max_redirects") from None
    for key in _REQUESTS_ONLY_OPTIONS:
        if key in extra_options:
            log.warning(
                "conn_id %r: extra option %r is for requests (HttpHook) and is ignored by the "
                "async adapter",
                conn_id,
                key,
            )
    return settings


async def open_session(
    settings: SessionSettings, options: Mapping[str, Any], conn_id: str
) -> aiohttp.ClientSession:
    """The adapter's one session: a sized connector, no cookie jar, the credential headers."""
    cafile = settings.request_options.get("ssl")
    if isinstance(cafile, str):
        try:
            settings.request_options["ssl"] = await anyio.to_thread.run_sync(
                functools.partial(ssl.create_default_context, cafile=cafile)
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load the CA bundle {cafile!r} named by the extra's verify: {exc}",
                conn_id=conn_id,
                field="verify",
            ) from exc
    connector_kwargs: dict[str, Any] = {
        "limit": options["max_connections"],
        "limit_per_host": options["max_per_host"] or 0,
    }
    keepalive = options["keepalive"]
    if keepalive == 0:
        connector_kwargs["force_close"] = True
    elif keepalive is not None:
        connector_kwargs["keepalive_timeout"] = keepalive
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(**connector_kwargs),
        # No cookie jar: like HttpAsyncHook.run() (a new session per call), nothing a response
        # sets is sent again, and a shared adapter cannot carry one task's cookies into
        # another's requests. Pass a Cookie header to send one.
        cookie_jar=aiohttp.DummyCookieJar(),
        headers=settings.headers,
        timeout=settings.timeout,
        trust_env=settings.trust_env,
    )
