"""MSGraphAdapter: Microsoft Graph over the provider's KiotaRequestAdapterHook settings."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

import httpx
from azure.core.exceptions import AzureError

from hookbridge import (
    ConnectFailed,
    HookBridgeError,
    HostPolicy,
    HostRefused,
    MalformedResponse,
    NextLink,
    Outcome,
    PageRequest,
    PermissionDenied,
    ResponseTooLarge,
    Retry,
    Throttled,
    UsageError,
)
from hookbridge.adapter import (
    Adapter,
    AdapterOptions,
    ItemStream,
    Option,
    PageOptions,
    PageStream,
    checked_argument,
    connection_extra,
    host_list,
    one_of,
    positive_int,
    positive_seconds,
)

from ._batch import IDEMPOTENT, BatchRequest, run_batch
from ._client import BodyTooLarge, GraphClient, GraphResponse
from ._delta import DeltaStream
from ._translate import status_error, translate_foreign

if sys.version_info >= (3, 11):
    from typing import Unpack
else:
    from typing_extensions import Unpack

if TYPE_CHECKING:
    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

__all__ = ["MSGraphAdapter"]

DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024
#: How a Graph collection pages: ``value`` holds the items, ``@odata.nextLink`` the next page.
ODATA_PAGES = NextLink(link="@odata.nextLink", items="value")
# What a query value may show unencoded: Graph's own links keep $, commas and quotes readable.
_QUERY_SAFE = "$,'()*:@/"


def _for_writes(base: Callable[[BaseException], bool]) -> Callable[[BaseException], bool]:
    """Narrow a retry predicate for writes: retried only when Graph cannot have acted on them."""

    def retry_on(error: BaseException) -> bool:
        # Throttled (refused before processing) or never sent.
        return isinstance(error, (Throttled, ConnectFailed)) and base(error)

    return retry_on


def _list(hosts: tuple[str, ...]) -> list[str]:
    return list(hosts)


def encode_query(query: Mapping[str, Any]) -> str:
    """``$top=5&$filter=department%20eq%20'Sales'``: names and values as Graph shows them."""
    parts = []
    for name, value in query.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        parts.append(f"{quote(str(name), safe='$')}={quote(str(value), safe=_QUERY_SAFE)}")
    return "&".join(parts)


class MSGraphOptions(AdapterOptions, total=False):
    """The keyword arguments of :class:`~hookbridge.adapters.msgraph.MSGraphAdapter` (its doc)."""

    timeout: float | None
    max_body_size: int | None
    api_version: str | None
    allowed_hosts: Sequence[str] | None


class MSGraphAdapter(Adapter):
    """Microsoft Graph through an Airflow ``msgraph`` connection (``KiotaRequestAdapterHook``).

    ``get``/``request`` return parsed JSON (bytes for ``$value`` content); ``pages``/``items``
    follow ``@odata.nextLink`` with bounded memory; ``batch`` sends any number of requests as
    ``$batch`` calls of 20; ``delta`` streams changes and ends with a storable delta link.
    Throttling (429/503/504 with Retry-After, inside batches too) becomes ``Throttled`` and the
    adapter's shared cool-down; hookbridge's ``Retry`` is the only retry budget (kiota's retry
    handler is switched off per request). asyncio only (kiota, httpx, azure-identity).
    """

    name = "msgraph"
    conn_types = ("msgraph",)
    asyncio_only = True
    declared_options = (
        Option("timeout", positive_seconds, default=60.0, doc="seconds for one HTTP request"),
        Option(
            "max_body_size",
            positive_int,
            default=DEFAULT_MAX_BODY_SIZE,
            doc="bytes a response may have (64 MiB)",
        ),
        Option(
            "api_version",
            one_of("v1.0", "beta"),
            doc="the Graph version; the connection's api_version (v1.0) otherwise",
        ),
        Option(
            "allowed_hosts",
            host_list,
            default=(),
            to_spec=_list,
            doc="hosts besides the connection's base URL that next links may lead to",
        ),
    )
    foreign_errors = (httpx.HTTPError, AzureError, OSError, TimeoutError)

    def __init__(self, conn_id: str, **options: Unpack[MSGraphOptions]) -> None:
        super().__init__(conn_id, **options)
        self._client: GraphClient | None = None
        self._secrets: tuple[str, ...] = ()
        self._hosts = HostPolicy("http://unopened.invalid")

    @property
    def _write_retry(self) -> Retry:
        # Derived from the policy in force, so a retry set after open applies to writes too.
        return self._derived_retry(_for_writes)

    # -- lifecycle -------------------------------------------------------------------------

    async def _open(self) -> None:
        from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

        hook: KiotaRequestAdapterHook = KiotaRequestAdapterHook(conn_id=self.conn_id)
        conn = await self._connection(hook)
        config = await connection_extra(conn)
        self._secrets = tuple(s for s in (conn.password, config.get("certificate_data")) if s)
        hook.timeout = self.options["timeout"]
        if self.options["api_version"] is not None:
            hook.api_version = self.options["api_version"]
        self._client = GraphClient(hook, conn, config, on_token=self._new_token)
        self._hosts = HostPolicy(
            self._client.settings.base_url, self.options["allowed_hosts"], secrets=self._secrets
        )

    def _new_token(self) -> None:
        # Refusals of next links are redacted by the host policy: a link may carry the token.
        self._hosts.secrets = self._known_secrets()

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def base_url(self) -> str:
        """The Graph base URL with the version, ending in ``/`` (``https://.../v1.0/``)."""
        return self._require_client().settings.base_url

    def _require_client(self) -> GraphClient:
        self._require_open()
        assert self._client is not None
        return self._client

    def _known_secrets(self) -> tuple[str, ...]:
        tokens = tuple(self._client.tokens) if self._client is not None else ()
        return self._secrets + tokens

    # -- the error boundary ----------------------------------------------------------------

    def _translate(self, exc: Exception, target: object) -> HookBridgeError:
        authority = self._client.settings.authority if self._client is not None else None
        error = translate_foreign(exc, str(target), self.conn_id, authority, self.redact)
        if error is not None:
            return error
        return super()._translate(exc, target)

    # -- requests --------------------------------------------------------------------------

    def url(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        """The absolute URL of ``path`` (``users``, ``/users/{id}``, or an absolute URL)."""
        base = self.base_url
        url = path if urlsplit(path).scheme else urljoin(base, path.lstrip("/"))
        if query:
            url += ("&" if urlsplit(url).query else "?") + encode_query(query)
        return url

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        content: bytes | None,
        max_body_size: int,
    ) -> GraphResponse:
        """One attempt: send, refresh the credential once on a 401, map error statuses."""
        client = self._require_client()
        if not client.gets_token(url):
            # kiota would send it without the token and Graph would answer 401.
            raise HostRefused(
                f"{self.redact(url)}: the host is not in the allowed_hosts of conn_id "
                f"{self.conn_id!r} ({', '.join(client.settings.allowed_hosts)}), so the provider "
                "withholds the token from it. Add the host (no scheme, no port) to the "
                "connection extra's allowed_hosts if you trust it.",
                url=self.redact(url),
            )
        generation = client.generation
        try:
            response = await client.send(method, url, headers, content, max_body_size)
            if response.status == 401:
                # Expired or revoked token: one new credential (a new token), then one retry.
                await client.refresh(generation)
                response = await client.send(method, url, headers, content, max_body_size)
                if response.status == 401:
                    raise self._auth_failed(url, response)
        except BodyTooLarge as exc:
            said = (
                f"more than {max_body_size:,} bytes (cut as they arrived)"
                if exc.declared is None
                else f"{exc.declared:,} bytes (its Content-Length)"
            )
            raise self._too_large(url, said, max_body_size) from None
        if response.status >= 400:
            raise status_error(
                response.status,
                response.headers,
                response.content,
                self.redact(url),
                self.conn_id,
                self.redact,
            )
        return response

    def _too_large(self, url: str, said: str, cap: int) -> ResponseTooLarge:
        return ResponseTooLarge(
            f"{self.redact(url)} answered {said}, over max_body_size={cap:,} (conn_id "
            f"{self.conn_id!r}). Page through it with items()/pages() or raise max_body_size.",
            limit=cap,
            url=self.redact(url),
        )

    def _auth_failed(self, url: str, response: GraphResponse) -> PermissionDenied:
        error = status_error(401, response.headers, response.content, self.redact(url),
                             self.conn_id, self.redact)  # fmt: skip
        return PermissionDenied(
            f"{error} A fresh token was requested and refused too: the client secret may have "
            f"been rotated or the app's access revoked. Update conn_id {self.conn_id!r}.",
            code=401,
            target=self.redact(url),
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        max_body_size: int | None = None,
    ) -> Any:
        """Send one request; return the parsed JSON, the bytes of other content, or None.

        ``url`` is relative to the version (``users/{id}``) or absolute (on an allowed host).
        ``json_body`` is sent as JSON, ``data`` as is. Errors: ``NotFound``,
        ``PermissionDenied``, ``Throttled`` (after the retries), ``RemoteStatusError``,
        ``ResponseTooLarge``.
        """
        upper = checked_argument(_method, method, "method")
        cap = self.options["max_body_size"]
        if max_body_size is not None:
            cap = checked_argument(positive_int, max_body_size, "max_body_size")
        if json_body is not None and data is not None:
            raise UsageError("pass json_body or data, not both", argument="data")
        target = self.url(url, query)
        self._hosts.check(target, what="the request", error=HostRefused)
        send_headers = dict(headers or {})
        content = data
        if json_body is not None:
            content = json.dumps(json_body).encode()
            send_headers.setdefault("Content-Type", "application/json")
        retry = self.retry if upper in IDEMPOTENT else self._write_retry
        response = await self.call(
            self._send, upper, target, send_headers, content, cap, retry=retry, target=target
        )
        try:
            return response.value()
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            raise MalformedResponse(
                f"{self.redact(target)} answered {response.status} with a body that says it is "
                f"JSON ({response.headers.get('content-type')}) but is not (conn_id "
                f"{self.conn_id!r}).",
                url=self.redact(target),
            ) from None

    async def get(
        self,
        url: str,
        *,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        max_body_size: int | None = None,
    ) -> Any:
        """``GET url``: parsed JSON (a dict), or bytes for raw content such as ``.../$value``."""
        return await self.request(
            "GET", url, query=query, headers=headers, max_body_size=max_body_size
        )

    # -- pagination ------------------------------------------------------------------------

    async def _fetch_page(self, request: PageRequest) -> GraphResponse:
        url = request.url
        if request.params:
            url += ("&" if urlsplit(url).query else "?") + encode_query(request.params)
        return await self.call(
            self._send,
            "GET",
            url,
            dict(request.headers),
            None,
            self.options["max_body_size"],
            target=url,
        )

    def _first(
        self, url: str, query: Mapping[str, Any] | None, headers: Mapping[str, str] | None
    ) -> PageRequest:
        self._require_open()
        return PageRequest(url=self.url(url), params=dict(query or {}), headers=dict(headers or {}))

    def pages(
        self,
        url: str,
        *,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Unpack[PageOptions],
    ) -> PageStream[Any]:
        """The pages of a Graph collection, following ``@odata.nextLink``.

        ``query`` (``$select``, ``$filter``, ``$top``, ``$count``, ...) goes on the first request;
        the next links carry it on. ``headers`` (``ConsistencyLevel: eventual``, ``Prefer``) go
        on every page, and the token of the same scopes. ``options``: ``max_pages``,
        ``max_items``, ``cursor`` (``page.cursor``, JSON-safe: pass the same headers again),
        ``allowed_hosts``, ``prefetch`` (needs ``async with``).
        """
        return PageStream(
            self._fetch_page,
            lambda: self._first(url, query, headers),
            ODATA_PAGES,
            hosts=self._hosts,
            **options,
        )

    def items(
        self,
        url: str,
        *,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Unpack[PageOptions],
    ) -> ItemStream[Any]:
        """The items (``value`` entries) of every page (see :meth:`pages`), in bounded memory."""
        return ItemStream(self.pages(url, query=query, headers=headers, **options))

    def delta(
        self,
        url: str,
        delta_link: str | None = None,
        *,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        page_size: int | None = None,
        **options: Unpack[PageOptions],
    ) -> DeltaStream:
        """The changes of a delta query (``users/delta``): a stream, then ``.delta_link``.

        Without ``delta_link`` the first round lists everything; with one (from an earlier
        round, stored in XCom or a trigger's state) only what changed since, removals as
        entries with ``@removed``. When the stream is exhausted, ``stream.delta_link`` holds the
        link to store for the next round. ``page_size`` asks for ``odata.maxpagesize``.
        """
        send = dict(headers or {})
        if page_size is not None:
            size = checked_argument(positive_int, page_size, "page_size")
            send["Prefer"] = f"odata.maxpagesize={size}"
        start = delta_link if delta_link is not None else url
        return DeltaStream(
            lambda strategy: PageStream(
                self._fetch_page,
                lambda: self._first(start, None if delta_link else query, send),
                strategy,
                hosts=self._hosts,
                **options,
            )
        )

    async def batch(
        self,
        requests: Iterable[BatchRequest | str | Mapping[str, Any]],
        *,
        max_at_once: int = 4,
    ) -> list[Outcome[BatchRequest, Any]]:
        """Send any number of requests as ``$batch`` calls of at most 20; results in input order.

        A request is a :class:`BatchRequest`, a URL (a GET) or a dict of its fields. Each
        outcome holds the parsed body (bytes for raw content) or the error of that request;
        none is lost. Only throttled (429/503/504) and server-failed GET sub-requests are sent
        again, in the next ``$batch`` call, after the shared cool-down, within ``retry``.
        """
        limit = checked_argument(positive_int, max_at_once, "max_at_once")
        self._require_client()
        return await run_batch(self, requests, limit)

    # -- probing ---------------------------------------------------------------------------

    async def _probe(self) -> str:
        body = await self.get("organization", query={"$select": "id,displayName"})
        names = [org.get("displayName") for org in body.get("value", []) if isinstance(org, dict)]
        shown = ", ".join(str(name) for name in names if name) or "no organization"
        return f"GET {self.url('organization')} -> 200 ({shown})"

    def __repr__(self) -> str:
        base = self._client.settings.base_url if self._client is not None else ""
        shown = f" {self.redact(base)}" if base else ""
        return f"<MSGraphAdapter conn_id={self.conn_id!r} state={self._state}{shown}>"


def _method(value: Any) -> str:
    if not isinstance(value, str) or not value.isalpha():
        raise ValueError(f"must be an HTTP method such as 'GET', got {value!r}.")
    return value.upper()
