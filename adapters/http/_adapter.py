"""HttpAdapter: one long-lived aiohttp session over an Airflow HTTP connection.

The provider's ``HttpAsyncHook`` resolves the connection (base URL, basic auth, headers and the
extra's transport options); the adapter keeps one ``aiohttp.ClientSession`` with a sized
``TCPConnector`` for its whole life, and sends every request through ``Adapter.call`` so the
limits, the retry policy, the error boundary and the statistics apply. aiohttp is asyncio-only,
and so is this adapter.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from hookbridge import (
    ConfigurationError,
    ConnectFailed,
    HookBridgeError,
    HostPolicy,
    HostRefused,
    PageRequest,
    RemoteStatusError,
    Retry,
    Strategy,
    TransportError,
)
from hookbridge.adapter import Adapter, ItemStream, PageOptions, PageStream, redact

from ._options import (
    DEFAULT_TIMEOUT,
    HTTP_OPTIONS,
    HttpOptions,
    HttpPageOptions,
    TimeoutOption,
    client_timeout,
    stream_timeout,
    timeout_spec,
)
from ._pagination_function import PaginationFunction
from ._response import Response, StreamedResponse
from ._session import SessionSettings, open_session, session_settings
from ._translate import FOREIGN_ERRORS, translate_error
from ._transport import HttpTransport

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["HttpAdapter", "HttpPoolStatistics"]

log = logging.getLogger("hookbridge.http")

#: Methods that may be sent twice without changing the outcome (RFC 9110 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
# Parsed URLs of recent endpoints: polling and pagination repeat them, and parsing is per request.
_URL_CACHE_SIZE = 4096
_REQUEST_KEYS = ("method", "params", "headers", "json", "data")


@dataclass(frozen=True)
class HttpPoolStatistics:
    """The adapter's connection pool (aiohttp's connector)."""

    max_connections: int
    max_per_host: int
    in_use: int
    idle: int


def _no_auth(login: str, password: str | None = None) -> None:
    return None


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


class HttpAdapter(HttpTransport, Adapter):
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
      (429/503: :class:`~hookbridge.Throttled`; 404: also :class:`~hookbridge.NotFound`).
    - ``retry_non_idempotent`` (False): by default POST and PATCH are retried only when nothing
      was sent (connect failure) or the server refused them (429); True retries them like GET.
    - ``allowed_hosts``: hosts besides the connection's own that absolute URLs, redirects and
      pagination links may go to. The connection's credentials (its Authorization header and the
      extra's headers) are sent with every request, so a redirect to any other host is refused
      with :class:`~hookbridge.HostRefused` rather than followed.
    """

    name = "http"
    conn_types = ("http", "https")
    asyncio_only = True
    declared_options = HTTP_OPTIONS
    foreign_errors = FOREIGN_ERRORS

    def __init__(self, conn_id: str, **options: Unpack[HttpOptions]) -> None:
        super().__init__(conn_id, **options)
        # Resolved in _open.
        self._session = None
        self._settings = SessionSettings(
            base_url="",
            headers={},
            secrets=(),
            timeout=aiohttp.ClientTimeout(total=DEFAULT_TIMEOUT),
            raise_for_status=True,
        )
        self._secrets = ()
        self._hosts = HostPolicy("http://unopened.invalid")
        self._stream_timeout = stream_timeout(self._settings.timeout)
        self._max_body_size = self.options["max_body_size"]
        self._raise_for_status = True
        self._urls: dict[str, URL] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def _open(self) -> None:
        from airflow.providers.http.hooks.http import HttpAsyncHook

        conn = await self._connection()
        # The hook's auth_type would build an aiohttp.BasicAuth, which aiohttp 3.14 deprecates
        # (and pydantic re-creates, warning again): the header is built from login/password,
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
        options = self.options
        settings = session_settings(conn, config, options, self._option_sources, self.conn_id)
        self._settings = settings
        self._secrets = settings.secrets
        self._hosts = HostPolicy(
            settings.base_url, options["allowed_hosts"], secrets=settings.secrets
        )
        self._stream_timeout = stream_timeout(settings.timeout)
        self._max_body_size = options["max_body_size"]
        self._raise_for_status = settings.raise_for_status
        self._session = await open_session(settings, options, self.conn_id)
        log.debug(
            "conn_id %r: opened %s, max_connections=%d, timeout=%s",
            self.conn_id,
            redact(settings.base_url, self._secrets),
            options["max_connections"],
            timeout_spec(settings.timeout),
        )

    async def _close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- the error boundary ----------------------------------------------------------------

    def _known_secrets(self) -> tuple[str, ...]:
        return self._secrets

    def _translate(self, exc: Exception, target: object) -> HookBridgeError:
        method, url = target if isinstance(target, tuple) else ("", target)
        return translate_error(exc, method, str(url), self._secrets)

    def _slow_down(self, seconds: float) -> None:
        self.limits.throttled(seconds)

    # -- configuration ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The connection's base URL (known once the adapter is open)."""
        return self._settings.base_url

    @property
    def hosts(self) -> HostPolicy:
        """Which URLs may receive the connection's credentials (and be redirected to)."""
        return self._hosts

    def _call_timeout(self, timeout: TimeoutOption) -> aiohttp.ClientTimeout:
        try:
            return client_timeout(timeout)
        except ValueError as exc:
            raise ConfigurationError(str(exc), conn_id=self.conn_id, field="timeout") from None

    # -- requests --------------------------------------------------------------------------

    def _url(self, endpoint: str) -> URL:
        url = self._urls.get(endpoint)
        if url is None:
            if endpoint[:8].lower().startswith(("http://", "https://")):
                self._check_host(endpoint)
                text = endpoint
            else:
                text = _join(self._settings.base_url, endpoint)
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

    def _check_host(self, url: str) -> None:
        try:
            urlsplit(url).port  # noqa: B018 -- raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ConfigurationError(
                f"not a usable URL: {redact(url, self._secrets)!r}", field="endpoint"
            ) from exc
        problem = self._hosts.problem(url, what="an absolute URL")
        if problem is not None:
            raise HostRefused(
                f"refusing to send the connection's credentials: {problem}",
                url=redact(url, self._secrets),
            )

    def _retry_for(self, method: str, retry_non_idempotent: bool | None) -> Retry:
        if method in IDEMPOTENT_METHODS:
            return self.retry
        if (
            retry_non_idempotent
            if retry_non_idempotent is not None
            else self.options["retry_non_idempotent"]
        ):
            return self.retry
        return self._derived_retry(_non_idempotent_retry_on)

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
        base URL as ``HttpHook`` joins it; an absolute URL, like a redirect, must be on the
        connection's origin or in ``allowed_hosts``. The body is read (up to ``max_body_size``)
        before the connection goes back to the pool. A plain function returning the call's
        coroutine, so that a request costs one coroutine less: a bad ``endpoint`` or ``timeout``
        raises when it is called.
        """
        method = method.upper()
        url = self._urls.get(endpoint)
        if url is None:
            url = self._url(endpoint)
        call_timeout = None if timeout is None else self._call_timeout(timeout)
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
            target=(method, url),
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
        timeout: TimeoutOption | None = None,
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
        call_timeout = self._stream_timeout if timeout is None else self._call_timeout(timeout)
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
            target=(method, url),
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

    # -- pagination ------------------------------------------------------------------------

    def _fetch_page(self, request: PageRequest) -> Coroutine[Any, Any, Response]:
        method = request.method
        url = URL(request.url)
        return self.call(
            self._send,
            method,
            url,
            request.params or None,
            request.json,
            request.data,
            request.headers or None,
            None,
            True,
            retry=self._retry_for(method, None),
            target=(method, url),
        )

    def pages(
        self, endpoint: str = "", *, strategy: Strategy, **options: Unpack[HttpPageOptions]
    ) -> PageStream[Any]:
        """The pages of a paginated endpoint, fetched one at a time.

        Two forms, one object::

            async for page in api.pages("/items", strategy=NextLink()):   # no background work
                ...
            async with api.pages("/items", strategy=NextLink(), prefetch=2) as pages:
                async for page in pages:    # up to 2 pages fetched ahead, in a task the block owns
                    ...

        ``options``: the first request's ``method`` (GET), ``params``, ``headers``, ``json`` and
        ``data``, and the :class:`~hookbridge.adapter.PageOptions` (``max_pages``,
        ``max_items``, ``cursor``, ``allowed_hosts``, ``prefetch``). ``page.cursor`` resumes
        after that page; links may go only where the adapter's host policy allows. A
        :class:`PaginationFunction` without a ``base_url`` gets the connection's, so
        ``HttpOperator`` pagination functions work as is.
        """
        request: dict[str, Any] = {k: v for k, v in options.items() if k in _REQUEST_KEYS}
        paging = cast(PageOptions, {k: v for k, v in options.items() if k not in _REQUEST_KEYS})
        chosen = strategy
        if isinstance(chosen, PaginationFunction) and chosen.base_url is None and self.base_url:
            chosen = dataclasses.replace(chosen, base_url=self.base_url)

        def first() -> PageRequest:
            self._require_open()
            return PageRequest(
                url=str(self._url(endpoint)),
                params=request.get("params") or {},
                headers=request.get("headers") or {},
                json=request.get("json"),
                data=request.get("data"),
                method=str(request.get("method", "GET")).upper(),
            )

        return PageStream(self._fetch_page, first, chosen, hosts=self._hosts, **paging)

    def items(
        self, endpoint: str = "", *, strategy: Strategy, **options: Unpack[HttpPageOptions]
    ) -> ItemStream[Any]:
        """The items of every page (see :meth:`pages`): ``async for item in api.items(...)``.

        Memory does not grow with the number of pages: about two pages at the peak (the one
        being consumed and the one arriving; ``prefetch`` more with prefetch), so it can feed
        :meth:`map` over millions of items.
        """
        return ItemStream(self.pages(endpoint, strategy=strategy, **options))

    # -- probing and introspection ---------------------------------------------------------

    async def _probe(self) -> str:
        """GET the base URL once; an error status fails the check."""
        response = await self.request("GET", "", raise_for_status=False)
        line = f"GET {redact(self.base_url, self._secrets)} -> {response.status} "
        line += response.reason or ""
        server = response.headers.get("Server")
        if server:
            line += f" (server: {server})"
        if response.status >= 400:
            raise RemoteStatusError(line.rstrip(), status=response.status, url=self.base_url)
        return line.rstrip()

    def _pool_statistics(self) -> HttpPoolStatistics | None:
        session = self._session
        if session is None:
            return None
        connector = session.connector
        # aiohttp exposes no pool statistics: read its bookkeeping defensively.
        acquired = getattr(connector, "_acquired", ())
        idle = getattr(connector, "_conns", {})
        return HttpPoolStatistics(
            max_connections=self.options["max_connections"],
            max_per_host=self.options["max_per_host"] or 0,
            in_use=len(acquired),
            idle=sum(len(conns) for conns in idle.values()),
        )

    def __repr__(self) -> str:
        base = self._settings.base_url
        shown = f" {redact(base, self._secrets)}" if base else ""
        return f"<HttpAdapter conn_id={self.conn_id!r} state={self._state}{shown}>"
