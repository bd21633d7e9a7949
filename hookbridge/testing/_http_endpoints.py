"""The HTTP test server's endpoints: items, every pagination style, bytes, auth, status, redirects.

A mixin of :class:`~hookbridge.testing._http_server.HTTPTestServer` (which documents the
endpoints), with the helpers that build their bodies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import math
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from aiohttp import hdrs, web

__all__ = ["Endpoints", "expected_sha256", "pattern_bytes"]

_BLOCK = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
_CHUNK_SIZE = 64 * 1024
# A whole number of blocks, so every full chunk of any body is this same object.
_CHUNK = _BLOCK * (_CHUNK_SIZE // len(_BLOCK))
# Above this size the checksum header costs noticeable CPU, so it is sent only on ?checksum=1.
_CHECKSUM_HEADER_LIMIT = 16 * 1024 * 1024
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def pattern_bytes(n: int) -> bytes:
    """The first ``n`` bytes that ``GET /bytes/{n}`` sends (builds them in memory: small ``n``)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    full, rest = divmod(n, len(_BLOCK))
    return _BLOCK * full + _BLOCK[:rest]


@lru_cache(maxsize=64)
def expected_sha256(n: int) -> str:
    """Hex SHA-256 of the body of ``GET /bytes/{n}``, computed chunk by chunk without the body."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    digest = hashlib.sha256()
    full, rest = divmod(n, _CHUNK_SIZE)
    for _ in range(full):
        digest.update(_CHUNK)
    digest.update(_CHUNK[:rest])
    return digest.hexdigest()


def _json_error(cls: type[web.HTTPException], message: str, **extra: Any) -> web.HTTPException:
    body = {"error": message, "status": cls.status_code, **extra}
    return cls(text=json.dumps(body), content_type="application/json")


def _int_arg(
    request: web.Request, name: str, default: int, *, minimum: int = 0, raw: str | None = None
) -> int:
    text = request.query.get(name) if raw is None else raw
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise _json_error(web.HTTPBadRequest, f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise _json_error(web.HTTPBadRequest, f"{name} must be >= {minimum}, got {value}")
    return value


def _float_arg(request: web.Request, name: str, default: float) -> float:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise _json_error(web.HTTPBadRequest, f"{name} must be a finite number >= 0, got {text!r}")
    return value


def _items(start: int, stop: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"item-{i}"} for i in range(start, stop)]


def _safe_headers(request: web.BaseRequest) -> dict[str, str]:
    return {
        name.lower(): "<present>" if name.lower() in _SECRET_HEADERS else value
        for name, value in request.headers.items()
    }


def _basic_credentials(header: str) -> tuple[str, str] | None:
    # Parsed here: aiohttp 3.14 deprecates BasicAuth (a warning, an error under our test settings).
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except binascii.Error:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    user, colon, password = text.partition(":")
    return (user, password) if colon else None


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "offset":
            raise ValueError(text)
        offset = int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _json_error(
            web.HTTPBadRequest, f"cursor {token!r} is not a token we issued"
        ) from None
    if offset < 0:
        raise _json_error(web.HTTPBadRequest, f"cursor {token!r} is not a token we issued")
    return offset


class Endpoints:
    """The request handlers; the server provides ``items``, ``user``, ``password`` and ``url``."""

    items: int
    user: str
    password: str
    item_delay: float

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    async def _storm_endpoint(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError  # the fault schedule serves it (_http_faults.Storm)

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        add = router.add_route
        add("GET", "/", self._index)
        add("*", "/items/{id}", self._item)
        add("GET", "/paged/nextlink", self._paged_nextlink)
        add("GET", "/paged/link", self._paged_link)
        add("GET", "/paged/page", self._paged_page)
        add("GET", "/paged/offset", self._paged_offset)
        add("GET", "/paged/cursor", self._paged_cursor)
        add("GET", "/slow", self._slow)
        add("GET", "/slow/stream", self._slow_stream)
        add("GET", "/bytes/{n}", self._bytes)
        add("*", "/drop", self._drop_after)
        add("GET", "/auth/basic", self._auth_basic)
        add("GET", "/auth/echo", self._auth_echo)
        add("*", "/status/{code}", self._status)
        add("GET", "/headers", self._headers)
        add("*", "/redirect", self._redirect)
        add("*", "/redirect/loop", self._redirect_loop)
        add("*", "/storm/{id}", self._storm_endpoint)
        add("GET", "/hostile/{kind}", self._hostile)

    def _total(self, request: web.Request) -> int:
        return _int_arg(request, "total", self.items)

    def _link(self, request: web.Request, **changes: int) -> str:
        query = dict(request.query)
        query.update({name: str(value) for name, value in changes.items()})
        target = f"{request.path}?{urlencode(query)}"
        if query.get("relative") == "1":
            return target
        host = query.get("host")
        if host == "other":
            return f"http://localhost:{self.port}{target}"
        if host:
            return f"http://{host}{target}"
        return self.url + target

    async def _item(self, request: web.Request) -> web.StreamResponse:
        item_id = _int_arg(request, "id", 0, minimum=-(2**63), raw=request.match_info["id"])
        if request.method in ("GET", "HEAD"):
            if not 0 <= item_id < self._total(request):
                raise _json_error(web.HTTPNotFound, f"no item {item_id}", id=item_id)
            if self.item_delay:
                await asyncio.sleep(self.item_delay)
            return web.json_response({"id": item_id, "name": f"item-{item_id}"})
        body = await request.read()
        payload: Any = None
        data: str | None = None
        if body and request.content_type == "application/json":
            try:
                payload = json.loads(body)
            except ValueError:
                raise _json_error(web.HTTPBadRequest, "the body is not valid JSON") from None
        elif body:
            data = body.decode("utf-8", "replace")
        return web.json_response(
            {
                "method": request.method,
                "id": item_id,
                "json": payload,
                "data": data,
                "size": len(body),
                "query": dict(request.query),
                "headers": _safe_headers(request),
            }
        )

    async def _paged_nextlink(self, request: web.Request) -> web.StreamResponse:
        total = self._total(request)
        size = _int_arg(request, "size", 100, minimum=1)
        skip = _int_arg(request, "skip", 0)
        body: dict[str, Any] = {"value": _items(skip, min(skip + size, total))}
        if skip + size < total:
            body["@odata.nextLink"] = self._link(request, skip=skip + size)
        return web.json_response(body)

    async def _paged_link(self, request: web.Request) -> web.StreamResponse:
        total = self._total(request)
        size = _int_arg(request, "size", 100, minimum=1)
        page = _int_arg(request, "page", 1, minimum=1)
        pages = max(1, -(-total // size))
        start = (page - 1) * size
        links = []
        if page < pages:
            links.append(f'<{self._link(request, page=page + 1)}>; rel="next"')
        links.append(f'<{self._link(request, page=pages)}>; rel="last"')
        return web.json_response(
            _items(start, min(start + size, total)), headers={hdrs.LINK: ", ".join(links)}
        )

    async def _paged_page(self, request: web.Request) -> web.StreamResponse:
        total = self._total(request)
        size = _int_arg(request, "size", 100, minimum=1)
        page = _int_arg(request, "page", 1, minimum=1)
        start = (page - 1) * size
        return web.json_response(
            {
                "items": _items(start, min(start + size, total)),
                "page": page,
                "total_pages": -(-total // size),
            }
        )

    async def _paged_offset(self, request: web.Request) -> web.StreamResponse:
        total = self._total(request)
        limit = _int_arg(request, "limit", 100, minimum=1)
        offset = _int_arg(request, "offset", 0)
        return web.json_response(
            {"items": _items(offset, min(offset + limit, total)), "total": total}
        )

    async def _paged_cursor(self, request: web.Request) -> web.StreamResponse:
        total = self._total(request)
        size = _int_arg(request, "size", 100, minimum=1)
        token = request.query.get("cursor")
        offset = _decode_cursor(token) if token else 0
        end = min(offset + size, total)
        return web.json_response(
            {
                "items": _items(offset, end),
                "next_cursor": _encode_cursor(end) if end < total else None,
            }
        )

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        delay = _float_arg(request, "delay", 1.0)
        await asyncio.sleep(delay)
        return web.json_response({"delay": delay})

    async def _slow_stream(self, request: web.Request) -> web.StreamResponse:
        chunks = _int_arg(request, "chunks", 5)
        interval = _float_arg(request, "interval", 0.1)
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for index in range(chunks):
                if index:
                    await asyncio.sleep(interval)
                await response.write(f"chunk {index}\n".encode())
            await response.write_eof()
        except ConnectionError:
            pass  # the client left; aiohttp settles the connection
        return response

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        size = _int_arg(request, "n", 0, raw=request.match_info["n"])
        headers: dict[str, str] = {hdrs.CONTENT_TYPE: "application/octet-stream"}
        if size <= _CHECKSUM_HEADER_LIMIT:
            headers["X-Checksum-Sha256"] = expected_sha256(size)
        elif request.query.get("checksum") == "1":
            headers["X-Checksum-Sha256"] = await asyncio.to_thread(expected_sha256, size)
        response = web.StreamResponse(headers=headers)
        response.content_length = size
        await response.prepare(request)
        try:
            await _write_pattern(response, size)
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    async def _drop_after(self, request: web.Request) -> web.StreamResponse:
        after = _int_arg(request, "after_bytes", 0)
        declared = _int_arg(request, "declared", after + _CHUNK_SIZE)
        if declared <= after:
            raise _json_error(
                web.HTTPBadRequest, f"declared ({declared}) must exceed after_bytes ({after})"
            )
        if request.body_exists:
            await request.read()
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "application/octet-stream"})
        response.content_length = declared
        await response.prepare(request)
        try:
            await _write_pattern(response, after)
        except ConnectionError:
            return response
        if request.transport is not None:
            # close() (not abort()) so the bytes already written still reach the client.
            request.transport.close()
        return response

    async def _auth_basic(self, request: web.Request) -> web.StreamResponse:
        credentials = _basic_credentials(request.headers.get(hdrs.AUTHORIZATION, ""))
        if credentials is None or not (
            hmac.compare_digest(credentials[0].encode(), self.user.encode())
            & hmac.compare_digest(credentials[1].encode(), self.password.encode())
        ):
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": "basic credentials missing or wrong", "status": 401}),
                content_type="application/json",
                headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="hookbridge"'},
            )
        return web.json_response({"authenticated": True, "user": credentials[0]})

    async def _auth_echo(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"authorization": hdrs.AUTHORIZATION in request.headers})

    async def _status(self, request: web.Request) -> web.StreamResponse:
        code = _int_arg(request, "code", 0, raw=request.match_info["code"])
        if not 200 <= code <= 599:
            raise _json_error(web.HTTPBadRequest, f"status must be 200..599, got {code}")
        headers = {}
        if "retry_after" in request.query:
            headers[hdrs.RETRY_AFTER] = request.query["retry_after"]
        if code in (204, 304):
            return web.Response(status=code, headers=headers)
        body: dict[str, Any] = {"status": code, "method": request.method}
        body_size = _int_arg(request, "body_size", 0)
        if body_size:
            body["padding"] = "x" * body_size
        return web.json_response(body, status=code, headers=headers)

    async def _hostile(self, request: web.Request) -> web.Response:
        """Pages a hostile API sends: ``malformed-json``, ``html`` (200 text/html), and
        ``loop?page=&pages=&back=`` (NextLink pages whose last page links back to page ``back``).
        """
        kind = request.match_info["kind"]
        if kind == "malformed-json":
            return web.Response(body=b'{"value": [1, 2,', content_type="application/json")
        if kind == "html":
            return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")
        if kind != "loop":
            raise _json_error(web.HTTPNotFound, f"no hostile page {kind!r}")
        page = _int_arg(request, "page", 1, minimum=1)
        pages = _int_arg(request, "pages", 3, minimum=1)
        back = _int_arg(request, "back", 1, minimum=1)
        following = page + 1 if page < pages else back
        return web.json_response(
            {"value": [page], "@odata.nextLink": self._link(request, page=following)}
        )

    async def _index(self, request: web.Request) -> web.Response:
        """The base URL answers, as a real API's root does (``hookbridge check`` probes it)."""
        return web.json_response({"service": "hookbridge test API", "items": self.items})

    async def _redirect(self, request: web.Request) -> web.Response:
        """``?to=URL&status=302``: answer that redirect (to another origin too)."""
        status = int(request.query.get("status", "302"))
        if status not in (301, 302, 303, 307, 308):
            raise web.HTTPBadRequest(text="status must be a redirect status")
        return web.Response(status=status, headers={"Location": request.query.get("to", "/")})

    async def _redirect_loop(self, request: web.Request) -> web.Response:
        """A redirect to itself, forever."""
        return web.Response(status=302, headers={"Location": "/redirect/loop"})

    async def _headers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"headers": _safe_headers(request)})


async def _write_pattern(response: web.StreamResponse, size: int) -> None:
    full, rest = divmod(size, _CHUNK_SIZE)
    for _ in range(full):
        await response.write(_CHUNK)
    if rest:
        await response.write(_CHUNK[:rest])
