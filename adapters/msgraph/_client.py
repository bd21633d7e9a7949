"""The adapter's own kiota stack, built from the connection by the provider hook's settings.

``KiotaRequestAdapterHook.get_async_conn`` caches one request adapter per conn_id in a class-level
dict, whatever the event loop, and keeps it after a 401 (apache/airflow#72688). The adapter
instead builds its own stack from the same settings, through the hook's public helpers
(``get_host``, ``get_base_url``, ``get_api_version``, ``get_proxies``, ``get_allowed_hosts``,
``get_credentials``) and msgraph-core's ``GraphClientFactory``, owns it for its lifetime on its
loop, and closes it. Two loops (a task and a trigger, two tests) never share one.

kiota's ``RetryHandler`` stays in the middleware chain but is switched off per request with a
``RetryHandlerOption(should_retry=False)``: hookbridge's ``Retry`` is the only retry budget, and
throttling reaches the adapter's limits (the shared cool-down) instead of being slept off inside
one request.

kiota reads every body whole, so the adapter's ``max_body_size`` is enforced below it, in the
transport: the body of each response is counted as it arrives and cut at the cap of the request
being sent (a context variable, set by ``send``), so a server that streams forever costs the cap
in memory, not everything it sent before a timeout.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_abstractions.response_handler import ResponseHandler
from kiota_abstractions.serialization import ParseNodeFactoryRegistry
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.httpx_request_adapter import HttpxRequestAdapter
from kiota_http.middleware.options.response_handler_option import ResponseHandlerOption
from kiota_http.middleware.options.retry_handler_option import RetryHandlerOption
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph_core import GraphClientFactory  # type: ignore[import-untyped]

__all__ = ["BodyTooLarge", "GraphClient", "GraphResponse", "GraphSettings"]

#: The body cap of the request this task is sending (``GraphClient.send`` sets it).
_BODY_CAP: ContextVar[int | None] = ContextVar("hookbridge_msgraph_body_cap", default=None)


class BodyTooLarge(Exception):
    """A response body went over the cap: ``declared`` (Content-Length) or counted on arrival."""

    def __init__(self, cap: int, declared: int | None) -> None:
        super().__init__(f"more than {cap} bytes")
        self.cap = cap
        self.declared = declared


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, cap: int) -> None:
        self._inner = inner
        self._cap = cap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._cap:
                raise BodyTooLarge(self._cap, None)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _CappedTransport(httpx.AsyncBaseTransport):
    """Refuses a declared length over the cap, and counts the body as it arrives."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        cap = _BODY_CAP.get()
        if cap is None:
            return response
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            await response.aclose()
            raise BodyTooLarge(cap, int(declared))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _CappedStream(response.stream, cap)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(frozen=True)
class GraphResponse:
    """One HTTP answer from Graph, read in full (kiota reads bodies whole)."""

    status: int
    url: str
    headers: Mapping[str, str]
    content: bytes
    _parsed: list[Any] = field(default_factory=list, repr=False, compare=False)

    @property
    def is_json(self) -> bool:
        return "json" in self.headers.get("content-type", "").lower()

    def json(self) -> Any:
        """The body parsed as JSON (once; pagination asks more than once per page)."""
        if not self._parsed:
            self._parsed.append(json.loads(self.content))
        return self._parsed[0]

    def value(self) -> Any:
        """What a caller gets: parsed JSON, the raw bytes of other content, None for no body."""
        if not self.content:
            return None
        return self.json() if self.is_json else self.content


def _proxy_mounts(
    hook: Any, proxies: Mapping[str, Any] | None, verify: Any, trust_env: bool
) -> dict[str, httpx.AsyncBaseTransport | None] | None:
    """The connection's ``proxies`` as httpx mounts, read as the provider reads them.

    Built here rather than by the hook's ``to_httpx_proxies``, whose proxy transports verify TLS
    against the default CA bundle whatever the connection's ``verify`` says, and would bypass
    the body cap. An empty entry of ``no`` (``"localhost,"``) is skipped: the provider turns it
    into ``all://``, which switches the proxy off for every host.
    """
    if not proxies:
        return None
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
    for scheme in ("http", "https"):
        if proxies.get(scheme):
            proxied = httpx.AsyncHTTPTransport(
                proxy=proxies[scheme], verify=verify, trust_env=trust_env
            )
            mounts[f"{scheme}://"] = _CappedTransport(proxied)
    for host in str(proxies.get("no") or "").split(","):
        if host.strip():
            mounts[hook.format_no_proxy_url(host.strip())] = None
    return mounts


class _RawResponse(ResponseHandler):
    # Returns httpx's response untouched: status mapping (and Retry-After) stays ours.
    async def handle_response_async(self, response: Any, error_map: Any) -> Any:
        return response


@dataclass(frozen=True)
class GraphSettings:
    """What the connection says, as the provider hook reads it (no secret in the repr)."""

    base_url: str
    api_version: str
    authority: str | None
    scopes: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    verify: Any
    trust_env: bool
    proxies: Mapping[str, Any] | None = field(repr=False)


class GraphClient:
    """An httpx client with msgraph-core's middleware, a credential and a kiota request adapter.

    ``refresh()`` swaps in a new credential (and so a new token) while requests in flight finish
    on the old one; every credential is closed by ``aclose()``.
    """

    def __init__(
        self,
        hook: Any,
        connection: Any,
        config: Mapping[str, Any],
        on_token: Callable[[], None] | None = None,
    ) -> None:
        self._hook = hook
        self._on_token = on_token
        self._connection = connection
        self._config = dict(config)
        api_version = hook.get_api_version(self._config)
        host = hook.get_host(connection)
        base_url = hook.get_base_url(host, api_version, self._config)
        authority = self._config.get("authority")
        proxies = hook.get_proxies(self._config)
        scopes = self._config.get("scopes", hook.scopes)
        if isinstance(scopes, str):
            scopes = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        self.settings = GraphSettings(
            base_url=base_url,
            api_version=api_version,
            authority=authority,
            scopes=tuple(scopes),
            allowed_hosts=tuple(hook.get_allowed_hosts(authority, self._config)),
            verify=self._config.get("verify", True),
            trust_env=bool(self._config.get("trust_env", False)),
            proxies=proxies,
        )
        transport = _CappedTransport(
            httpx.AsyncHTTPTransport(verify=self.settings.verify, trust_env=self.settings.trust_env)
        )
        mounts = _proxy_mounts(hook, proxies, self.settings.verify, self.settings.trust_env)
        # Our own references to the connection pools: msgraph-core's AsyncGraphTransport, which
        # wraps each of them, has no aclose(), so closing the client alone leaves sockets open.
        self._pools = [transport, *(pool for pool in (mounts or {}).values() if pool is not None)]
        self._http = GraphClientFactory.create_with_default_middleware(
            api_version=api_version,
            client=httpx.AsyncClient(
                transport=transport,
                mounts=mounts,
                timeout=httpx.Timeout(timeout=hook.timeout),
                trust_env=self.settings.trust_env,
                base_url=base_url,
            ),
            host=host,
        )
        self._credentials: list[Any] = []
        self.tokens: deque[str] = deque(maxlen=8)
        """The latest bearer tokens sent (secrets to redact: a gateway may echo them back);
        ``on_token()`` is called when one is new."""
        self._kiota = self._new_request_adapter()
        self.generation = 0
        """How many times the credential was replaced (a 401 refreshes at most once per token)."""
        self._refresh_lock = anyio.Lock()

    def _new_request_adapter(self) -> HttpxRequestAdapter:
        settings = self.settings
        credential = self._hook.get_credentials(
            login=self._connection.login,
            password=self._connection.password,
            config=self._config,
            authority=settings.authority,
            verify=settings.verify,
            proxies=settings.proxies,
        )
        self._credentials.append(credential)
        provider = AzureIdentityAuthenticationProvider(
            credentials=credential,
            scopes=list(settings.scopes),
            allowed_hosts=list(settings.allowed_hosts),
        )
        parse_nodes = ParseNodeFactoryRegistry()
        parse_nodes.CONTENT_TYPE_ASSOCIATED_FACTORIES["application/json"] = JsonParseNodeFactory()
        return HttpxRequestAdapter(
            authentication_provider=provider,
            parse_node_factory=parse_nodes,
            http_client=self._http,
            base_url=settings.base_url,
        )

    def gets_token(self, url: str) -> bool:
        """Whether kiota adds the bearer token for ``url``: its host is in ``allowed_hosts``."""
        allowed = [host.lower() for host in self.settings.allowed_hosts]
        if not allowed:
            return True
        host = (urlsplit(url).hostname or "").lower()
        return host in allowed or any(h.startswith(".") and host.endswith(h) for h in allowed)

    async def refresh(self, seen_generation: int) -> None:
        """Use a new credential, unless another request already did since ``seen_generation``."""
        async with self._refresh_lock:
            if self.generation == seen_generation:
                self._kiota = self._new_request_adapter()
                self.generation += 1

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        max_body_size: int | None = None,
    ) -> GraphResponse:
        """One request through kiota (the token is added for allowed hosts); no retry inside.

        Raises BodyTooLarge when the answer's body is over ``max_body_size`` (None: no cap).
        """
        info = RequestInformation()
        info.http_method = Method(method)
        info.url = url
        info.headers.try_add("Accept", "application/json")
        for name, value in (headers or {}).items():
            info.headers.try_add(name, value)
        if content is not None:
            info.content = content
        info.add_request_options(
            [
                RetryHandlerOption(delay=0, max_retries=0, should_retry=False),
                ResponseHandlerOption(response_handler=_RawResponse()),
            ]
        )
        # Typed as returning nothing; with a ResponseHandlerOption it returns the handler's value.
        reset = _BODY_CAP.set(max_body_size)
        try:
            response = await self._kiota.send_primitive_async(info, "bytes", None)  # type: ignore[func-returns-value]
        finally:
            _BODY_CAP.reset(reset)
        if not isinstance(response, httpx.Response):  # what _RawResponse hands back
            raise TypeError(f"kiota returned {type(response).__name__}, not the HTTP response")
        self._note_token(response.request.headers.get("authorization", ""))
        return GraphResponse(
            status=response.status_code,
            url=str(response.url),
            headers={name.lower(): value for name, value in response.headers.items()},
            content=response.content,
        )

    def _note_token(self, authorization: str) -> None:
        # kiota adds the token below us; the request as sent is the one place to learn it.
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token and token not in self.tokens:
            self.tokens.append(token)
            if self._on_token is not None:
                self._on_token()

    async def aclose(self) -> None:
        try:
            await self._http.aclose()
            for pool in self._pools:
                await pool.aclose()
        finally:
            for credential in self._credentials:
                # The provider's CachedAsyncTokenCredential makes close() a no-op (kiota would
                # close it after every token); the wrapped credential holds the token session.
                inner = getattr(credential, "_credential", credential)
                await inner.close()
            self._credentials.clear()
