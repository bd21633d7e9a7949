"""A hostile Microsoft Graph impostor on 127.0.0.1: the answers a broken or malicious Graph gives.

Kept apart from the emulator (``_graph_server``), which behaves like Graph: this one behaves like a
proxy, a captive portal or an attacker standing where Graph should be. A connection reaches it with
the emulator's real token endpoint (so the adapter gets a token) and ``host`` set to this server;
it never checks the token (an attacker would not). Every request is counted by path.

Resources under ``/{version}/hostile/`` (any method):

- ``malformed-json``: 200, ``application/json``, a truncated body;
- ``html``: 200, ``text/html`` (a sign-in page where a JSON page should be);
- ``loop?page=N&pages=P&back=B``: pages 1..P whose last next link leads back to page B;
- ``foreign?host=H``: a page whose ``@odata.nextLink`` leads to another host (``&echo=1``: with
  the request's bearer token in it);
- ``delta-foreign?host=H``: a delta page whose ``@odata.deltaLink`` leads to another host;
- ``status?status=S&retry_after=R``: status S in Graph's error shape, ``Retry-After: R``;
- ``echo``: 400 whose error message repeats the request's ``Authorization`` header and URL (some
  gateways echo what they were sent);
- ``big?size=N``: 200, a JSON string of N bytes, with its Content-Length;
- ``forever``: 200 ``application/json`` chunks without end (no Content-Length).

``POST /{version}/$batch`` answers each sub-request ``{"id": <its url>}`` with 200, broken as
``batch_mode`` says: ``missing`` (the first request gets no answer), ``duplicate`` (the first
request answered twice, 200 and 500), ``unknown`` (an answer for an id never sent),
``no-responses`` (no ``responses`` list), ``bad-status`` (a status that is not a number),
``bad-headers`` (headers that are not an object), ``not-an-object`` (an answer that is a string),
``not-json`` (a truncated body), or ``ok``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Literal

from aiohttp import web

from ._app_server import AppServer

__all__ = ["BatchMode", "HostileGraphServer"]

BatchMode = Literal[
    "ok",
    "missing",
    "duplicate",
    "unknown",
    "no-responses",
    "bad-status",
    "bad-headers",
    "not-an-object",
    "not-json",
]


class HostileGraphServer(AppServer):
    """``async with HostileGraphServer() as hostile:``, then ``hostile.port``, ``count(path)``."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_mode: BatchMode = "ok"
        self.requests: Counter[str] = Counter()
        """Requests per path (with the version: ``/v1.0/hostile/loop``)."""

    async def _bind(self) -> None:
        app = web.Application()
        app.router.add_post("/{version}/$batch", self._batch)
        app.router.add_route("*", "/{version}/hostile/{kind}", self._hostile)
        await self._listen("hostile", app)

    @property
    def port(self) -> int:
        return self._port("hostile")

    def count(self, path: str) -> int:
        return self.requests[path]

    def _base(self, request: web.Request) -> str:
        return f"http://127.0.0.1:{self.port}/{request.match_info['version']}"

    async def _hostile(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path] += 1
        kind, query = request.match_info["kind"], request.query
        if kind == "malformed-json":
            return web.Response(body=b'{"value": [1, 2', content_type="application/json")
        if kind == "html":
            return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")
        if kind == "loop":
            page, pages, back = (int(query.get(k, d)) for k, d in (("page", 1), ("pages", 2),
                                                                   ("back", 1)))  # fmt: skip
            following = page + 1 if page < pages else back
            link = f"{self._base(request)}/hostile/loop?page={following}&pages={pages}&back={back}"
            return web.json_response({"value": [page], "@odata.nextLink": link})
        if kind == "foreign":
            # echo=1: the link carries the request's bearer token, as a careless gateway's might.
            steal = request.headers.get("Authorization", "").partition(" ")[2]
            token = steal if query.get("echo") else "steal"
            link = f"https://{query.get('host', 'evil.example')}/v1.0/users?$skiptoken={token}"
            return web.json_response({"value": [1], "@odata.nextLink": link})
        if kind == "delta-foreign":
            link = f"https://{query.get('host', 'evil.example')}/v1.0/users/delta?$deltatoken=x"
            return web.json_response({"value": [1], "@odata.deltaLink": link})
        if kind == "status":
            status = int(query.get("status", "429"))
            headers = {"Retry-After": query["retry_after"]} if "retry_after" in query else {}
            error = {"code": "TooManyRequests", "message": "Slow down."}
            return web.json_response({"error": error}, status=status, headers=headers)
        if kind == "echo":
            said = f"{request.headers.get('Authorization', '')} for {request.url}"
            error = {"code": "BadRequest", "message": f"Cannot process request: {said}"}
            return web.json_response({"error": error}, status=400)
        if kind == "big":
            size = int(query.get("size", "1000000"))
            body = b'"' + b"x" * max(0, size - 2) + b'"'  # a JSON string of N bytes
            return web.Response(body=body, content_type="application/json")
        if kind == "forever":
            return await self._forever(request)
        return web.json_response({"error": {"code": "NotFound", "message": kind}}, status=404)

    async def _forever(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"value": [')
        chunk = b'"' + b"x" * 16_000 + b'",'
        try:
            while True:
                await response.write(chunk)
                await asyncio.sleep(0)
        except ConnectionError:
            # The client hung up: what a server streaming forever waits for.
            pass
        return response

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path] += 1
        body = await request.json()
        asked = [item for item in body.get("requests", []) if isinstance(item, dict)]
        responses: list[Any] = [
            {
                "id": item["id"],
                "status": 200,
                "headers": {"Content-Type": "application/json"},
                "body": {"id": item.get("url")},
            }
            for item in asked
        ]
        mode = self.batch_mode
        if mode == "not-json":
            return web.Response(body=b'{"responses": [', content_type="application/json")
        if mode == "no-responses":
            return web.json_response({"value": responses})
        first = responses[0]
        if mode == "missing":
            responses = responses[1:]
        elif mode == "duplicate":
            failed = {"code": "generalException", "message": "Failed."}
            responses.append({"id": first["id"], "status": 500, "body": {"error": failed}})
        elif mode == "unknown":
            responses.append({"id": "999", "status": 200, "body": {"id": "stray"}})
        elif mode == "bad-status":
            first["status"] = "two hundred"
        elif mode == "bad-headers":
            first["status"] = 503
            first["headers"] = ["Retry-After", "1"]
        elif mode == "not-an-object":
            responses[0] = "200 OK"
        return web.json_response({"responses": responses})
