"""One HTTP attempt: send, follow redirects under the host policy, read the body within its cap.

Foreign errors are left to the adapter's error boundary (``_translate``, applied once per attempt
by ``Adapter.call``); this module raises hookbridge errors only for what it decides itself: an
error status, a body over the cap, a redirect it refuses.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from yarl import URL

from hookbridge import (
    AdapterClosed,
    HookBridgeError,
    HostPolicy,
    HostRefused,
    RemoteStatusError,
    ResponseTooLarge,
    Retry,
    Throttled,
)
from hookbridge.adapter import redact

from ._response import Response
from ._session import SessionSettings
from ._translate import FOREIGN_ERRORS, status_error, translate_error

__all__ = ["HttpTransport"]

log = logging.getLogger("hookbridge.http")
_debug = functools.partial(log.isEnabledFor, logging.DEBUG)

# An error body is read only for its excerpt: no point holding megabytes of an HTML error page.
ERROR_BODY_LIMIT = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class HttpTransport:
    """The sending half of :class:`~hookbridge.adapters.http.HttpAdapter`."""

    _session: aiohttp.ClientSession | None
    _settings: SessionSettings
    _hosts: HostPolicy
    _secrets: tuple[str, ...]
    _max_body_size: int
    retry: Retry

    def _closed_error(self) -> AdapterClosed:
        # aclose() ran (in another task) between this call's admission and its attempt.
        return AdapterClosed(f"{self!r} was closed while a request was starting.")

    def _next_hop(
        self,
        method: str,
        url: URL,
        resp: aiohttp.ClientResponse,
        hops: int,
        body: tuple[Any, Any],
    ) -> tuple[str, URL, tuple[Any, Any]] | None:
        """Where a redirect leads (method, URL, body), or None when it is not followed."""
        location = resp.headers.get("Location")
        if not location or not self._settings.follow_redirects:
            return None
        shown = redact(str(url), self._secrets)
        if hops >= self._settings.max_redirects:
            raise RemoteStatusError(
                f"{method} {shown}: more than {self._settings.max_redirects} redirects in a row "
                "(a redirect loop?). Fix the endpoint, or raise the connection extra's "
                "max_redirects if the API really needs more.",
                status=resp.status,
                url=shown,
            )
        target = resp.url.join(URL(location))
        problem = self._hosts.problem(str(target), what="a redirect")
        if problem is not None:
            raise HostRefused(
                f"{method} {shown} was redirected ({resp.status}) and not followed: {problem}",
                url=redact(str(target), self._secrets),
            )
        if resp.status == 303 or (resp.status in (301, 302) and method not in ("GET", "HEAD")):
            return "GET", target, (None, None)  # the body is not sent again, as browsers do
        return method, target, body

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
        hops = 0
        asked = url
        try:
            while True:
                async with session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=data,
                    headers=headers,
                    timeout=client_timeout or self._settings.timeout,
                    allow_redirects=False,
                    **self._settings.request_options,
                ) as resp:
                    status = resp.status
                    resp_headers = resp.headers
                    if status in _REDIRECTS:
                        hop = self._next_hop(method, url, resp, hops, (json, data))
                        if hop is not None:
                            method, url, (json, data) = hop
                            params, hops = None, hops + 1
                            continue
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
                        body = await self._read_body(resp, method, ERROR_BODY_LIMIT, truncate=True)
                    else:
                        body = await self._read_body(resp, method, self._max_body_size)
                    final_url = resp.url
                    reason = resp.reason
                break
        except FOREIGN_ERRORS as exc:
            if not hops:
                raise  # the adapter's boundary translates it, naming the URL asked for
            raise self._redirect_error(exc, method, url, asked) from exc
        if _debug():
            log.debug(
                "%s %s -> %d (%d bytes)",
                method,
                redact(str(final_url), self._secrets),
                status,
                len(body),
            )
        if status >= 400:
            self._on_error_status(resp, method, body, check)
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
        self, resp: aiohttp.ClientResponse, method: str, body: bytes, check: bool
    ) -> None:
        status, reason, url, headers = resp.status, resp.reason, str(resp.url), resp.headers
        if check:
            raise status_error(status, reason, method, url, headers, body, self._secrets)
        if status in (429, 503):
            # Not raising, but the server still asked everyone to slow down.
            error = status_error(status, reason, method, url, headers, b"")
            wait = error.retry_after if isinstance(error, Throttled) else None
            if wait is not None and wait <= self.retry.max_retry_after:
                self._slow_down(wait)

    def _redirect_error(
        self, exc: BaseException, method: str, url: URL, asked: URL
    ) -> HookBridgeError:
        """A failure after a redirect is the target's: name it, and the URL asked for."""
        return translate_error(exc, method, str(url), self._secrets, redirected_from=str(asked))

    def _slow_down(self, seconds: float) -> None:
        raise NotImplementedError  # the adapter starts its limits' cool-down

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
        """One attempt at a streamed response: up to its status line and headers."""
        session = self._session
        if session is None:
            raise self._closed_error()
        hops = 0
        asked = url
        try:
            while True:
                resp = await session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=data,
                    headers=headers,
                    timeout=client_timeout,
                    allow_redirects=False,
                    **self._settings.request_options,
                )
                if resp.status in _REDIRECTS:
                    try:
                        hop = self._next_hop(method, url, resp, hops, (json, data))
                    except BaseException:
                        resp.release()
                        raise
                    if hop is not None:
                        resp.release()
                        method, url, (json, data) = hop
                        params, hops = None, hops + 1
                        continue
                break
        except FOREIGN_ERRORS as exc:
            if not hops:
                raise
            raise self._redirect_error(exc, method, url, asked) from exc
        if resp.status < 400 or not check:
            return resp
        try:
            body = await self._read_body(resp, method, ERROR_BODY_LIMIT, truncate=True)
        except BaseException:
            resp.close()
            raise
        resp.release()
        raise status_error(
            resp.status, resp.reason, method, str(resp.url), resp.headers, body, self._secrets
        )
