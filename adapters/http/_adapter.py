"""HttpAdapter: one long-lived aiohttp session over an Airflow HTTP connection.

The provider's ``HttpAsyncHook`` resolves the connection (base URL, basic auth, headers and the
extra's transport options); the adapter keeps one ``aiohttp.ClientSession`` with a sized
``TCPConnector`` for its whole life, and sends every request through ``Adapter.call`` so the
limits, the retry policy and the statistics apply. aiohttp is asyncio-only, and so is this adapter.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
from multidict import CIMultiDictProxy
from yarl import URL

from hookbridge._adapter import Adapter
from hookbridge._airflow import connection_extra, get_connection
from hookbridge._errors import (
    AdapterClosed,
    ConfigurationError,
    HookBridgeError,
    RemoteStatusError,
    ResponseTooLarge,
    Throttled,
    TransportError,
    redact,
)
from hookbridge._limits import Limits
from hookbridge._pagination import (
    Page,
    PageRequest,
    PaginationFunction,
    Strategy,
    iter_items,
    paginate,
    prefetch,
)
from hookbridge._retry import Retry

from ._response import Response, StreamedResponse
from ._translate import FOREIGN_ERRORS, ConnectFailed, status_error, translate_error

__all__ = ["HttpAdapter", "HttpPoolStatistics", "ItemStream", "PageStream"]

log = logging.getLogger("hookbridge.http")
_debug = functools.partial(log.isEnabledFor, logging.DEBUG)

#: Methods that may be sent twice without changing the outcome (RFC 9110 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})

DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BODY_SIZE = 32 * 1024 * 1024
# An error body is read only for its excerpt: no point holding megabytes of an HTML error page.
_ERROR_BODY_LIMIT = 64 * 1024
_TIMEOUT_FIELDS = ("total", "connect", "sock_connect", "sock_read")
# Parsed URLs of recent endpoints: polling and pagination repeat them, and parsing is per request.
_URL_CACHE_SIZE = 4096

_POOL_KEYS: dict[str, type | tuple[type, ...]] = {
    "max_connections": int,
    "max_per_host": int,
    "keepalive": (int, float),
}
_ADAPTER_KEYS: dict[str, type | tuple[type, ...]] = {
    "timeout": (int, float, dict),
    "max_body_size": int,
    "raise_for_status": bool,
    "retry_non_idempotent": bool,
    "allowed_hosts": list,
}
# Header names whose values are credentials: redacted from every message and log line.
_SECRET_HEADER = re.compile(
    r"auth|token|key|secret|passw|cookie|session|signature|credential", re.I
)
# Provider extra options that only requests understands.
_REQUESTS_ONLY_OPTIONS = ("stream", "cert")

TimeoutOption = float | int | Mapping[str, float | None] | aiohttp.ClientTimeout


@dataclass(frozen=True)
class HttpPoolStatistics:
    """The adapter's connection pool (aiohttp's connector)."""

    max_connections: int
    max_per_host: int
    in_use: int
    idle: int


def _error(message: str, conn_id: str | None, field: str) -> ConfigurationError:
    return ConfigurationError(message, conn_id=conn_id, field=field)


def _positive_int(value: Any, field: str, conn_id: str | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _error(f"must be a positive integer, got {value!r}.", conn_id, field)
    return value


def _non_negative(value: Any, field: str, conn_id: str | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise _error(f"must be a number of seconds >= 0, got {value!r}.", conn_id, field)
    return float(value)


def _as_bool(value: Any, field: str, conn_id: str | None) -> bool:
    if not isinstance(value, bool):
        raise _error(f"must be true or false, got {value!r}.", conn_id, field)
    return value


def _timeout(value: Any, field: str, conn_id: str | None) -> aiohttp.ClientTimeout:
    """A timeout in seconds (the total), a dict of aiohttp's fields, or a ClientTimeout."""
    if isinstance(value, aiohttp.ClientTimeout):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(_TIMEOUT_FIELDS))
        if unknown:
            raise _error(
                f"unknown timeout field(s) {unknown}; valid: {', '.join(_TIMEOUT_FIELDS)}.",
                conn_id,
                f"{field}.{unknown[0]}",
            )
        parts: dict[str, Any] = {
            key: None if value[key] is None else _positive_seconds(value[key], field, conn_id)
            for key in value
        }
        return aiohttp.ClientTimeout(**parts)
    return aiohttp.ClientTimeout(total=_positive_seconds(value, field, conn_id))


def _positive_seconds(value: Any, field: str, conn_id: str | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise _error(
            f"must be a number of seconds > 0 or an object with {', '.join(_TIMEOUT_FIELDS)}, "
            f"got {value!r}.",
            conn_id,
            field,
        )
    return float(value)


def _timeout_spec(timeout: aiohttp.ClientTimeout) -> float | dict[str, float | None]:
    parts = {key: getattr(timeout, key) for key in _TIMEOUT_FIELDS}
    if all(parts[key] is None for key in _TIMEOUT_FIELDS[1:]) and parts["total"] is not None:
        return float(parts["total"])
    return {key: value for key, value in parts.items() if value is not None}


def _hosts(value: Any, field: str, conn_id: str | None) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Collection):
        raise _error(f"must be a list of host names (or host:port), got {value!r}.", conn_id, field)
    hosts = tuple(value)
    if not all(isinstance(host, str) and host for host in hosts):
        raise _error(f"must hold non-empty host names, got {value!r}.", conn_id, field)
    return hosts


_TRUE = ("true", "1", "yes", "on")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _truthy(value: Any) -> bool:
    """An extra's boolean as HttpHook users write it: true/false, or "true"/"False" strings."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port filled in, so :443 equals no port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or ""), parts.port or _DEFAULT_PORTS.get(scheme)


def _no_auth(login: str, password: str | None = None) -> None:
    return None


def _encode_basic_auth(login: str, password: str) -> str:
    encode = getattr(aiohttp, "encode_basic_auth", None)
    if encode is None:  # aiohttp < 3.14, where BasicAuth is not deprecated yet
        return aiohttp.BasicAuth(login, password).encode()
    return encode(login, password)  # type: ignore[no-any-return]


def _join(base_url: str, endpoint: str) -> str:
    # HttpHook's rule, so endpoints written for HttpOperator mean the same thing here.
    if base_url and not base_url.endswith("/") and endpoint and not endpoint.startswith("/"):
        return f"{base_url}/{endpoint}"
    return base_url + endpoint


def _non_idempotent_retry_on(
    base: Callable[[BaseException], bool],
) -> Callable[[BaseException], bool]:
    """Narrow a retry predicate for POST/PATCH: retry only what was surely not processed."""

    def retry_on(error: BaseException) -> bool:
        if not base(error):
            return False
        if isinstance(error, ConnectFailed):
            return True  # nothing was sent
        if isinstance(error, TransportError):
            return False  # the server may have processed it before the connection dropped
        if isinstance(error, RemoteStatusError):
            return error.status < 500  # 429: refused before processing; 5xx: unknown
        return True

    return retry_on


class HttpAdapter(Adapter):
    """Async HTTP over an Airflow ``http`` connection, with pooling, limits, retries, pagination.

    ::

        async with hookbridge.open("my_api", limits=Limits(rate="50/s")) as api:
            user = (await api.get("/users/1")).json()
            async for item in api.items("/users", strategy=LinkHeader()):
                ...

    Options (keyword-only; explicit arguments win over the connection extra's ``hookbridge`` key,
    which wins over the defaults):

    - ``limits``, ``retry``: see :class:`~hookbridge.Limits`, :class:`~hookbridge.Retry`.
    - ``max_connections`` (100), ``max_per_host`` (no separate cap), ``keepalive`` (seconds an
      idle connection is kept; 0 closes every connection after its response). In the extra these
      three live under ``"pool"``.
    - ``timeout``: seconds for a whole request (30), or ``{"total", "connect", "sock_connect",
      "sock_read"}``. Streams use no total by default, only ``sock_read``.
    - ``max_body_size``: bytes a buffered response may have (32 MiB); larger ones raise
      :class:`~hookbridge.ResponseTooLarge`. Use :meth:`stream` for large bodies.
    - ``raise_for_status`` (True): a status >= 400 raises :class:`~hookbridge.RemoteStatusError`
      (429/503: :class:`~hookbridge.Throttled`).
    - ``retry_non_idempotent`` (False): by default POST and PATCH are retried only when nothing
      was sent (connect failure) or the server refused them (429); True retries them like GET.
    - ``allowed_hosts``: hosts besides the connection's own that absolute URLs and pagination
      links may go to (credentials are sent with every request, so other hosts are refused).
    """

    name = "http"
    conn_types = ("http", "https")
    asyncio_only = True

    def __init__(
        self,
        conn_id: str,
        *,
        limits: Limits | None = None,
        retry: Retry | None = None,
        max_connections: int | None = None,
        max_per_host: int | None = None,
        keepalive: float | None = None,
        timeout: TimeoutOption | None = None,
        max_body_size: int | None = None,
        raise_for_status: bool | None = None,
        retry_non_idempotent: bool | None = None,
        allowed_hosts: Collection[str] | None = None,
    ) -> None:
        super().__init__(conn_id, limits=limits, retry=retry)
        # Explicit options, validated now so that a typo fails where it was written.
        self._explicit: dict[str, Any] = {}
        if max_connections is not None:
            self._explicit["max_connections"] = _positive_int(
                max_connections, "max_connections", conn_id
            )
        if max_per_host is not None:
            self._explicit["max_per_host"] = _positive_int(max_per_host, "max_per_host", conn_id)
        if keepalive is not None:
            self._explicit["keepalive"] = _non_negative(keepalive, "keepalive", conn_id)
        if timeout is not None:
            self._explicit["timeout"] = _timeout(timeout, "timeout", conn_id)
        if max_body_size is not None:
            self._explicit["max_body_size"] = _positive_int(max_body_size, "max_body_size", conn_id)
        if raise_for_status is not None:
            self._explicit["raise_for_status"] = _as_bool(
                raise_for_status, "raise_for_status", conn_id
            )
        if retry_non_idempotent is not None:
            self._explicit["retry_non_idempotent"] = _as_bool(
                retry_non_idempotent, "retry_non_idempotent", conn_id
            )
        if allowed_hosts is not None:
            self._explicit["allowed_hosts"] = _hosts(allowed_hosts, "allowed_hosts", conn_id)

        # Resolved in _open.
        self._session: aiohttp.ClientSession | None = None
        self._base_url = ""
        self._origin: tuple[str, str, int | None] = ("", "", None)
        self._secrets: tuple[str, ...] = ()
        self._request_options: dict[str, Any] = {}
        self._max_connections = DEFAULT_MAX_CONNECTIONS
        self._max_per_host = 0
        self._keepalive: float | None = None
        self._timeout = aiohttp.ClientTimeout(total=DEFAULT_TIMEOUT)
        self._stream_timeout = aiohttp.ClientTimeout(sock_read=DEFAULT_TIMEOUT)
        self._max_body_size = DEFAULT_MAX_BODY_SIZE
        self._raise_for_status = True
        self._retry_non_idempotent = False
        self._allowed_hosts: tuple[str, ...] = ()
        self._urls: dict[str, URL] = {}
        # Whether the hookbridge extra or an argument set these (they then win over the
        # provider's own extra options "timeout" and "check_response").
        self._timeout_set = False
        self._raise_for_status_set = False
        self._unsafe_retry: tuple[Retry, Retry] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def _open(self) -> None:
        from airflow.providers.http.hooks.http import HttpAsyncHook

        conn = await get_connection(self.conn_id)
        extra = await connection_extra(conn)
        settings = self._apply_settings(extra, pool_keys=_POOL_KEYS, adapter_keys=_ADAPTER_KEYS)
        self._resolve_options(settings.pool, settings.adapter_options)

        # The hook's auth_type would build an aiohttp.BasicAuth, which aiohttp 3.14 deprecates
        # (and pydantic re-creates, warning again): the header is built from login/password below,
        # as the provider does by default.
        hook = HttpAsyncHook(method="GET", http_conn_id=self.conn_id, auth_type=_no_auth)
        try:
            config = await hook.config()
        except HookBridgeError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"the HTTP provider could not read the connection: {type(exc).__name__}: "
                f"{redact(str(exc), [conn.password])}",
                conn_id=self.conn_id,
            ) from exc

        base_url = config.base_url
        # conn_type https without a schema means https; the provider would say http.
        if (
            (conn.conn_type or "").lower() == "https"
            and base_url.startswith("http://")
            and not conn.schema
            and "://" not in (conn.host or "")
        ):
            base_url = "https://" + base_url[len("http://") :]
        self._set_base_url(base_url)

        headers: dict[str, str] = {}
        for key, value in (config.headers or {}).items():
            if key == "hookbridge":
                continue  # our settings, not a header (the provider sends unknown keys as headers)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                headers[str(key)] = str(value)
            else:
                log.debug(
                    "conn_id %r: extra key %r is not a header value; ignored", self.conn_id, key
                )
        secrets = [conn.password] if conn.password else []
        secrets += [value for key, value in headers.items() if _SECRET_HEADER.search(key)]
        if conn.login and not any(key.lower() == "authorization" for key in headers):
            try:
                authorization = _encode_basic_auth(conn.login, conn.password or "")
            except ValueError as exc:
                raise ConfigurationError(
                    f"cannot use the login for basic auth: {exc}",
                    conn_id=self.conn_id,
                    field="login",
                ) from exc
            headers["Authorization"] = authorization
            secrets.append(authorization.split(" ", 1)[-1])
        self._secrets = tuple(secret for secret in secrets if secret and len(secret) >= 3)

        trust_env = self._provider_options(config.extra_options or {})
        cafile = self._request_options.get("ssl")
        if isinstance(cafile, str):
            try:
                self._request_options["ssl"] = await anyio.to_thread.run_sync(
                    functools.partial(ssl.create_default_context, cafile=cafile)
                )
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(
                    f"cannot load the CA bundle {cafile!r} named by the extra's verify: {exc}",
                    conn_id=self.conn_id,
                    field="verify",
                ) from exc

        connector_kwargs: dict[str, Any] = {
            "limit": self._max_connections,
            "limit_per_host": self._max_per_host,
        }
        if self._keepalive == 0:
            connector_kwargs["force_close"] = True
        elif self._keepalive is not None:
            connector_kwargs["keepalive_timeout"] = self._keepalive
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(**connector_kwargs),
            # No cookie jar: like HttpAsyncHook.run() (a new session per call), nothing a response
            # sets is sent again, and a shared adapter cannot carry one task's cookies into
            # another's requests. Pass a Cookie header to send one.
            cookie_jar=aiohttp.DummyCookieJar(),
            headers=headers,
            timeout=self._timeout,
            trust_env=trust_env,
        )
        log.debug(
            "conn_id %r: opened %s, max_connections=%d, timeout=%s",
            self.conn_id,
            redact(self._base_url, self._secrets),
            self._max_connections,
            _timeout_spec(self._timeout),
        )

    async def _close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _resolve_options(self, pool: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        def pick(key: str, source: Mapping[str, Any], prefix: str) -> tuple[Any, str] | None:
            if key in self._explicit:
                return self._explicit[key], key
            if key in source:
                return source[key], f"{prefix}{key}"
            return None

        cid = self.conn_id
        if found := pick("max_connections", pool, "hookbridge.pool."):
            self._max_connections = _positive_int(found[0], found[1], cid)
        if found := pick("max_per_host", pool, "hookbridge.pool."):
            self._max_per_host = _positive_int(found[0], found[1], cid)
        if found := pick("keepalive", pool, "hookbridge.pool."):
            self._keepalive = _non_negative(found[0], found[1], cid)
        if found := pick("timeout", options, "hookbridge."):
            self._set_timeout(_timeout(found[0], found[1], cid))
            self._timeout_set = True
        if found := pick("max_body_size", options, "hookbridge."):
            self._max_body_size = _positive_int(found[0], found[1], cid)
        if found := pick("raise_for_status", options, "hookbridge."):
            self._raise_for_status = _as_bool(found[0], found[1], cid)
            self._raise_for_status_set = True
        if found := pick("retry_non_idempotent", options, "hookbridge."):
            self._retry_non_idempotent = _as_bool(found[0], found[1], cid)
        if found := pick("allowed_hosts", options, "hookbridge."):
            self._allowed_hosts = _hosts(found[0], found[1], cid)

    def _set_timeout(self, timeout: aiohttp.ClientTimeout) -> None:
        self._timeout = timeout
        # A download may take longer than any total: streams time out only when data stops.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeout.connect,
            sock_connect=timeout.sock_connect,
            sock_read=timeout.sock_read or timeout.total,
        )

    def _provider_options(self, extra_options: Mapping[str, Any]) -> bool:
        """Map the provider's extra options (requests-style names) onto aiohttp; return trust_env.

        The hookbridge settings win over these: they are the more specific ones.
        """
        options: dict[str, Any] = {}
        cid = self.conn_id
        if "timeout" in extra_options and not self._timeout_set:
            self._set_timeout(_timeout(extra_options["timeout"], "timeout", cid))
        if "check_response" in extra_options and not self._raise_for_status_set:
            self._raise_for_status = _truthy(extra_options["check_response"])
        verify = extra_options.get("verify_ssl", extra_options.get("verify"))
        if verify is not None and not _truthy(verify):
            options["ssl"] = False
        elif isinstance(verify, str) and verify.lower() not in _TRUE:
            options["ssl"] = verify  # a CA bundle path: loaded in _open, off the event loop
        proxy = extra_options.get("proxy", extra_options.get("proxies"))
        if isinstance(proxy, Mapping):
            proxy = proxy.get(urlsplit(self._base_url).scheme) or proxy.get("all")
        if proxy:
            options["proxy"] = str(proxy)
        if "allow_redirects" in extra_options:
            options["allow_redirects"] = _truthy(extra_options["allow_redirects"])
        if "max_redirects" in extra_options:
            options["max_redirects"] = _positive_int(
                extra_options["max_redirects"], "max_redirects", cid
            )
        for key in _REQUESTS_ONLY_OPTIONS:
            if key in extra_options:
                log.warning(
                    "conn_id %r: extra option %r is for requests (HttpHook) and is ignored by the "
                    "async adapter",
                    cid,
                    key,
                )
        self._request_options = options
        return _truthy(extra_options.get("trust_env", False))

    def _set_base_url(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"the base URL {redact(base_url)!r} is not an http(s) URL with a host. Set the "
                "connection's host (and schema http/https, or a host like https://api.example.com).",
                conn_id=self.conn_id,
                field="host",
            )
        self._base_url = base_url
        self._origin = _origin(base_url)

    # -- configuration ---------------------------------------------------------------------

    def _spec_options(self) -> dict[str, Any]:
        options = super()._spec_options()
        for key, value in self._explicit.items():
            if key == "timeout":
                options[key] = _timeout_spec(value)
            elif key == "allowed_hosts":
                options[key] = list(value)
            else:
                options[key] = value
        return options

    @property
    def base_url(self) -> str:
        """The connection's base URL (known once the adapter is open)."""
        return self._base_url

    # -- requests --------------------------------------------------------------------------

    def _url(self, endpoint: str) -> URL:
        url = self._urls.get(endpoint)
        if url is None:
            if endpoint[:8].lower().startswith(("http://", "https://")):
                self._check_host(endpoint)
                text = endpoint
            else:
                text = _join(self._base_url, endpoint)
            try:
                url = URL(text)
            except (ValueError, TypeError) as exc:
                raise ConfigurationError(
                    f"not a usable URL: {redact(text, self._secrets)!r}", field="endpoint"
                ) from exc
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()  # bounded: ids in paths would grow it forever
            self._urls[endpoint] = url
        return url

    def _closed_error(self) -> AdapterClosed:
        # aclose() ran (in another task) between this call's admission and its attempt.
        return AdapterClosed(f"{self!r} was closed while a request was starting.")

    def _check_host(self, url: str) -> None:
        try:
            scheme, host, port = _origin(url)
        except ValueError as exc:
            raise ConfigurationError(
                f"not a usable URL: {redact(url, self._secrets)!r}", field="endpoint"
            ) from exc
        if (scheme, host, port) == self._origin:
            return
        if host in self._allowed_hosts or f"{host}:{port}" in self._allowed_hosts:
            return
        raise ConfigurationError(
            f"refusing to send the connection's credentials to {scheme}://{host}"
            f"{f':{port}' if port else ''}: it is not the connection's host. Pass "
            f"allowed_hosts=[{host!r}] if you trust it.",
            conn_id=self.conn_id,
            field="allowed_hosts",
        )

    def _retry_for(self, method: str, retry_non_idempotent: bool | None) -> Retry:
        if method in IDEMPOTENT_METHODS:
            return self.retry
        if retry_non_idempotent if retry_non_idempotent is not None else self._retry_non_idempotent:
            return self.retry
        cached = self._unsafe_retry
        if cached is None or cached[0] is not self.retry:
            narrowed = dataclasses.replace(
                self.retry, retry_on=_non_idempotent_retry_on(self.retry.retry_on)
            )
            cached = self._unsafe_retry = (self.retry, narrowed)
        return cached[1]

    def request(
        self,
        method: str,
        endpoint: str = "",
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: TimeoutOption | None = None,  # per-request HTTP timeout
        raise_for_status: bool | None = None,
        retry_non_idempotent: bool | None = None,
    ) -> Coroutine[Any, Any, Response]:
        """Send one request (retried per the adapter's policy) and return its complete response.

        ``await api.request(method, endpoint, ...)``. ``endpoint`` is joined to the connection's
        base URL as ``HttpHook`` joins it; an absolute URL must be on the connection's host or in
        ``allowed_hosts``. The body is read (up to ``max_body_size``) before the connection goes
        back to the pool. A plain function returning the call's coroutine, so that a request
        costs one coroutine less: a bad ``endpoint`` or ``timeout`` raises when it is called.
        """
        method = method.upper()
        url = self._urls.get(endpoint)
        if url is None:
            url = self._url(endpoint)
        call_timeout = None if timeout is None else _timeout(timeout, "timeout", self.conn_id)
        return self.call(
            self._send,
            method,
            url,
            params,
            json,
            data,
            headers,
            call_timeout,
            self._raise_for_status if raise_for_status is None else raise_for_status,
            retry=self.retry
            if method in IDEMPOTENT_METHODS
            else self._retry_for(method, retry_non_idempotent),
        )

    def get(self, endpoint: str = "", **kwargs: Any) -> Coroutine[Any, Any, Response]:
        """``await api.get(endpoint, ...)``: :meth:`request` with method GET."""
        return self.request("GET", endpoint, **kwargs)

    def head(self, endpoint: str = "", **kwargs: Any) -> Coroutine[Any, Any, Response]:
        """``await api.head(endpoint, ...)``: :meth:`request` with method HEAD."""
        return self.request("HEAD", endpoint, **kwargs)

    def post(self, endpoint: str = "", **kwargs: Any) -> Coroutine[Any, Any, Response]:
        """``await api.post(endpoint, ...)``: :meth:`request` with method POST."""
        return self.request("POST", endpoint, **kwargs)

    def put(self, endpoint: str = "", **kwargs: Any) -> Coroutine[Any, Any, Response]:
        """``await api.put(endpoint, ...)``: :meth:`request` with method PUT."""
        return self.request("PUT", endpoint, **kwargs)

    def patch(self, endpoint: str = "", **kwargs: Any) -> Coroutine[Any, Any, Response]:
        """``await api.patch(endpoint, ...)``: :meth:`request` with method PATCH."""
        return self.request("PATCH", endpoint, **kwargs)

    def delete(self, endpoint: str = "", **kwargs: Any) -> Coroutine[Any, Any, Response]:
        """``await api.delete(endpoint, ...)``: :meth:`request` with method DELETE."""
        return self.request("DELETE", endpoint, **kwargs)

    async def _send(
        self,
        method: str,
        url: URL,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        client_timeout: aiohttp.ClientTimeout | None,
        check: bool,
    ) -> Response:
        """One attempt: send, read the whole body (capped), release the connection."""
        session = self._session
        if session is None:
            raise self._closed_error()
        try:
            async with session.request(
                method,
                url,
                params=params,
                json=json,
                data=data,
                headers=headers,
                timeout=client_timeout or self._timeout,
                **self._request_options,
            ) as resp:
                status = resp.status
                resp_headers = resp.headers
                length = resp_headers.get("Content-Length")
                if (
                    status < 400
                    and length is not None
                    and method != "HEAD"
                    and "Content-Encoding" not in resp_headers
                    and length.isdigit()
                    and int(length) <= self._max_body_size
                ):
                    # The common case, inline: a declared length within the cap.
                    body = await resp.read()
                elif status >= 400 and check:
                    body = await self._read_body(resp, method, _ERROR_BODY_LIMIT, truncate=True)
                else:
                    body = await self._read_body(resp, method, self._max_body_size)
                final_url = resp.url
                reason = resp.reason
        except FOREIGN_ERRORS as exc:
            raise translate_error(exc, method, str(url), self._secrets) from exc
        if _debug():
            log.debug(
                "%s %s -> %d (%d bytes)",
                method,
                redact(str(final_url), self._secrets),
                status,
                len(body),
            )
        if status >= 400:
            self._on_error_status(status, reason, method, str(final_url), resp_headers, body, check)
        return Response(
            status=status,
            reason=reason,
            headers=resp_headers,
            url=final_url,
            content=body,
            method=method,
            secrets=self._secrets,
        )

    def _on_error_status(
        self,
        status: int,
        reason: str | None,
        method: str,
        url: str,
        headers: CIMultiDictProxy[str],
        body: bytes,
        check: bool,
    ) -> None:
        if check:
            raise status_error(status, reason, method, url, headers, body, self._secrets)
        if status in (429, 503):
            # Not raising, but the server still asked everyone to slow down.
            error = status_error(status, reason, method, url, headers, b"")
            wait = error.retry_after if isinstance(error, Throttled) else None
            if wait is not None and wait <= self.retry.max_retry_after:
                self.limits.throttled(wait)

    async def _read_body(
        self, resp: aiohttp.ClientResponse, method: str, limit: int, *, truncate: bool = False
    ) -> bytes:
        """The whole body, or ResponseTooLarge (the connection is then closed, not reused).

        With ``truncate`` (error bodies, read only for an excerpt) the first ``limit`` bytes.
        """
        if method == "HEAD" or resp.status in (204, 304):
            return await resp.read()
        length = resp.content_length
        if length is not None and "Content-Encoding" not in resp.headers:
            if length <= limit:
                return await resp.read()
            if not truncate:
                resp.close()
                raise self._too_large(resp, limit, f"Content-Length says {length} bytes")
        # Unknown or compressed length: count while reading, so that nothing big is buffered.
        buffer = bytearray()
        content = resp.content
        while True:
            chunk = await content.readany()
            if not chunk:
                return bytes(buffer)
            buffer += chunk
            if len(buffer) > limit:
                resp.close()
                if truncate:
                    return bytes(buffer[:limit])
                raise self._too_large(resp, limit, f"more than {limit} bytes arrived")

    def _too_large(self, resp: aiohttp.ClientResponse, limit: int, why: str) -> ResponseTooLarge:
        url = redact(str(resp.url), self._secrets)
        return ResponseTooLarge(
            f"{resp.method} {url}: the response body is larger than max_body_size={limit} bytes "
            f"({why}). Read it with `async with adapter.stream(...)`, or raise max_body_size.",
            limit=limit,
            url=url,
        )

    # -- streaming -------------------------------------------------------------------------

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        endpoint: str = "",
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: TimeoutOption | None = None,  # noqa: ASYNC109 - per-request HTTP timeout
        raise_for_status: bool | None = None,
        retry_non_idempotent: bool | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        """Send a request and read its body in chunks: ``async for chunk in r.iter_chunks()``.

        Opening the response (up to the status line and headers) goes through the limits and is
        retried like :meth:`request`; reading the body is not retried. No ``max_body_size``, and
        by default no total timeout (only ``sock_read``). Leaving the block releases the
        connection, or closes it when the body was not read to the end (also on cancellation).
        """
        method = method.upper()
        url = self._url(endpoint)
        call_timeout = (
            self._stream_timeout if timeout is None else _timeout(timeout, "timeout", self.conn_id)
        )
        check = self._raise_for_status if raise_for_status is None else raise_for_status
        resp = await self.call(
            self._open_stream,
            method,
            url,
            params,
            json,
            data,
            headers,
            call_timeout,
            check,
            retry=self._retry_for(method, retry_non_idempotent),
        )
        body = StreamedResponse(resp, method, self._secrets)
        try:
            yield body
        except BaseException:
            body._abort()
            raise
        else:
            if resp.content.at_eof():
                body._release()
            else:
                body._abort()

    async def _open_stream(
        self,
        method: str,
        url: URL,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        client_timeout: aiohttp.ClientTimeout,
        check: bool,
    ) -> aiohttp.ClientResponse:
        session = self._session
        if session is None:
            raise self._closed_error()
        try:
            resp = await session.request(
                method,
                url,
                params=params,
                json=json,
                data=data,
                headers=headers,
                timeout=client_timeout,
                **self._request_options,
            )
        except FOREIGN_ERRORS as exc:
            raise translate_error(exc, method, str(url), self._secrets) from exc
        if resp.status < 400 or not check:
            return resp
        try:
            body = await self._read_body(resp, method, _ERROR_BODY_LIMIT, truncate=True)
        except FOREIGN_ERRORS as exc:
            resp.close()
            raise translate_error(exc, method, str(url), self._secrets) from exc
        except BaseException:
            resp.close()
            raise
        resp.release()
        raise status_error(
            resp.status, resp.reason, method, str(resp.url), resp.headers, body, self._secrets
        )

    # -- pagination ------------------------------------------------------------------------

    def _first_page(
        self,
        endpoint: str,
        method: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        json: Any,
        data: Any,
    ) -> PageRequest:
        self._require_open()
        return PageRequest(
            url=str(self._url(endpoint)),
            params=params or {},
            headers=headers or {},
            json=json,
            data=data,
            method=method,
        )

    async def _fetch_page(self, request: PageRequest) -> Response:
        method = request.method
        return await self.call(
            self._send,
            method,
            URL(request.url),
            request.params or None,
            request.json,
            request.data,
            request.headers or None,
            None,
            True,
            retry=self._retry_for(method, None),
        )

    def pages(
        self,
        endpoint: str = "",
        *,
        strategy: Strategy,
        method: str = "GET",
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Any = None,
        max_pages: int | None = None,
        max_items: int | None = None,
        cursor: Mapping[str, Any] | None = None,
        allowed_hosts: Collection[str] | None = None,
        prefetch: int = 0,
    ) -> PageStream:
        """The pages of a paginated endpoint, fetched one at a time.

        Two forms, one object::

            async for page in api.pages("/items", strategy=NextLink()):   # no background work
                ...
            async with api.pages("/items", strategy=NextLink(), prefetch=2) as pages:
                async for page in pages:    # up to 2 pages fetched ahead, in a task the block owns
                    ...

        ``prefetch > 0`` needs the ``async with`` form (a background task must live in a block).
        ``page.cursor`` resumes after that page (``cursor=``); links may go only to the
        connection's host and ``allowed_hosts``. A :class:`PaginationFunction` without a
        ``base_url`` gets the connection's, so ``HttpOperator`` pagination functions work as is.
        """
        if isinstance(allowed_hosts, str):
            hosts: Any = allowed_hosts  # paginate refuses it with a hint
        else:
            hosts = (*self._allowed_hosts, *(allowed_hosts or ()))

        def source() -> AsyncIterator[Page[Any]]:
            first = self._first_page(endpoint, method.upper(), params, headers, json, data)
            chosen = strategy
            if isinstance(chosen, PaginationFunction) and chosen.base_url is None:
                chosen = dataclasses.replace(chosen, base_url=self._base_url)
            return paginate(
                self._fetch_page,
                first,
                chosen,
                max_pages=max_pages,
                max_items=max_items,
                allowed_hosts=hosts,
                cursor=cursor,
            )

        return PageStream(source, prefetch)

    def items(
        self,
        endpoint: str = "",
        *,
        strategy: Strategy,
        method: str = "GET",
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Any = None,
        max_pages: int | None = None,
        max_items: int | None = None,
        cursor: Mapping[str, Any] | None = None,
        allowed_hosts: Collection[str] | None = None,
        prefetch: int = 0,
    ) -> ItemStream:
        """The items of every page (see :meth:`pages`): ``async for item in api.items(...)``.

        Memory does not grow with the number of pages: about two pages at the peak (the one
        being consumed and the one arriving; ``prefetch`` more with prefetch), so it can feed
        :meth:`map` over millions of items.
        """
        return ItemStream(
            self.pages(
                endpoint,
                strategy=strategy,
                method=method,
                params=params,
                headers=headers,
                json=json,
                data=data,
                max_pages=max_pages,
                max_items=max_items,
                cursor=cursor,
                allowed_hosts=allowed_hosts,
                prefetch=prefetch,
            )
        )

    # -- probing and introspection ---------------------------------------------------------

    async def check(self) -> str:
        """GET the base URL once and say what answered (``hookbridge check CONN_ID``)."""
        started = anyio.current_time()
        response = await self.request("GET", "", raise_for_status=False)
        elapsed = (anyio.current_time() - started) * 1000
        return (
            f"GET {redact(self._base_url, self._secrets)} -> {response.status} "
            f"{response.reason or ''} in {elapsed:.0f} ms".replace("  ", " ")
        )

    def _pool_statistics(self) -> HttpPoolStatistics | None:
        session = self._session
        if session is None:
            return None
        connector = session.connector
        # aiohttp exposes no pool statistics: read its bookkeeping defensively.
        acquired = getattr(connector, "_acquired", ())
        idle = getattr(connector, "_conns", {})
        return HttpPoolStatistics(
            max_connections=self._max_connections,
            max_per_host=self._max_per_host,
            in_use=len(acquired),
            idle=sum(len(conns) for conns in idle.values()),
        )

    def __repr__(self) -> str:
        base = f" {redact(self._base_url, self._secrets)}" if self._base_url else ""
        return f"<HttpAdapter conn_id={self.conn_id!r} state={self._state}{base}>"


class PageStream:
    """What :meth:`HttpAdapter.pages` returns: async-iterable, and an async context manager.

    ``async for`` fetches pages one at a time in the caller's task. ``async with`` is needed for
    ``prefetch > 0`` (the prefetching task belongs to the block) and also works without it.
    """

    def __init__(self, source: Callable[[], AsyncIterator[Page[Any]]], prefetch: int) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ConfigurationError(
                f"prefetch must be an integer >= 0, got {prefetch!r}", field="prefetch"
            )
        self._source = source
        self._prefetch = prefetch
        self._entered: Any = None
        self._iterator: AsyncIterator[Page[Any]] | None = None

    def __aiter__(self) -> AsyncIterator[Page[Any]]:
        if self._prefetch:
            raise ConfigurationError(
                "pages(..., prefetch=n) fetches in a background task, which needs a block: write "
                "`async with api.pages(..., prefetch=n) as pages: async for page in pages: ...`",
                field="prefetch",
            )
        return self._source()

    async def __aenter__(self) -> AsyncIterator[Page[Any]]:
        if self._entered is not None or self._iterator is not None:
            raise ConfigurationError("this page stream was already entered; call pages() again")
        if not self._prefetch:
            self._iterator = self._source()
            return self._iterator
        manager = prefetch(self._source, self._prefetch)
        stream = await manager.__aenter__()
        self._entered = manager
        return aiter(stream)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._entered is not None:
            return await self._entered.__aexit__(exc_type, exc, tb)  # type: ignore[no-any-return]
        iterator, self._iterator = self._iterator, None
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await aclose()
        return None


class ItemStream:
    """What :meth:`HttpAdapter.items` returns: the items of a :class:`PageStream`, flattened."""

    def __init__(self, pages: PageStream) -> None:
        self._pages = pages
        self._iterator: AsyncIterator[Any] | None = None

    def __aiter__(self) -> AsyncIterator[Any]:
        return iter_items(self._pages.__aiter__())

    async def __aenter__(self) -> AsyncIterator[Any]:
        pages = await self._pages.__aenter__()
        self._iterator = _flatten(pages)
        return self._iterator

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        iterator, self._iterator = self._iterator, None
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await aclose()
        return await self._pages.__aexit__(exc_type, exc, tb)


async def _flatten(pages: AsyncIterator[Page[Any]]) -> AsyncIterator[Any]:
    # Unlike iter_items, does not close ``pages``: the PageStream block owns it.
    async for page in pages:
        for item in page.items:
            yield item
