"""Loopback Microsoft Graph emulator for tests and benchmarks: OAuth2 login, OData, $batch, delta.

Two aiohttp servers on 127.0.0.1 and random ports, started together by :class:`GraphTestServer`:

- the *login* server, always TLS (a ``trustme`` certificate with SAN ``IP:127.0.0.1`` made at
  start), answers ``POST /{tenant}/oauth2/v2.0/token`` (client credentials, form body: what
  ``azure.identity.aio.ClientSecretCredential`` sends), checks tenant, client id, secret and a
  ``.default`` scope, and issues random bearer tokens that live ``token_lifetime`` seconds;
- the *Graph* server (plain HTTP unless ``graph_tls=True``) serves ``/v1.0`` and ``/beta``; every
  request needs a valid, unexpired, unrevoked bearer token (401 ``InvalidAuthenticationToken``).

Graph resources (``_graph_directory`` has the OData rules): ``GET/POST /users`` (``$top``,
``$select``, ``$filter``, ``$count``, ``$skiptoken``, ``@odata.nextLink``); ``GET/PATCH/DELETE
/users/{id}``; ``GET /users/{id}/photo/$value`` (raw bytes); ``GET /users/delta`` (page size from
``Prefer: odata.maxpagesize=N``; ends with ``@odata.deltaLink``; a later round gives only the
changes, removals as ``@removed``; ``$deltatoken=latest`` starts at now); ``GET /organization``;
``POST /$batch`` (JSON batching: at most 20 requests, ``dependsOn`` (424 when a dependency failed),
answers in a shuffled order as Graph may). ``GET /_emulator/stats`` (no token) gives the counters
to a benchmark that runs the emulator in its own process; ``POST /_emulator/latency?seconds=``
sets ``latency``, a wait before every Graph answer.

Faults are scheduled from the test: ``throttle(...)`` (429/503 with ``Retry-After`` for the next
matching requests, or for chosen sub-requests inside batches), ``throttle_for(seconds)`` (a window
of throttling), ``expire_tokens()``, ``revoke_tokens()``, ``login.client_secret`` (rotate it) and
``storm(seed, ...)`` (seeded drops, 500s, 503s and 429s on item reads and writes: ``_graph_storm``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import trustme
from aiohttp import hdrs, web

from ._app_server import AppServer, RequestLog
from ._graph_batch import Fault, batch_entry, make_fault, parse_batch, throttled
from ._graph_directory import GraphDirectory, GraphError
from ._graph_login import TokenIssuer, TokenRequest
from ._graph_resources import Answer, Call, GraphResources, LowerHeaders
from ._graph_storm import GraphStorm
from ._serve import serve_until_signalled

__all__ = ["GraphRequest", "GraphTestServer", "TokenRequest", "main", "serve_forever"]

_VERSIONS = frozenset({"v1.0", "beta"})
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class GraphRequest:
    """One Graph request (or one sub-request of a ``$batch``, ``batch_id`` set) the server got."""

    method: str
    path: str  # as received, with the version: "/v1.0/users"
    query: dict[str, str]  # decoded names: "$select", "$skiptoken"
    headers: dict[str, str]  # lower-case names, values as sent (the bearer token included)
    token: str | None  # the bearer token presented, whether valid or not
    time: float  # time.monotonic() on arrival
    loop_time: float
    batch_id: str | None = None
    status: int | None = None


class GraphTestServer(AppServer, RequestLog[GraphRequest], GraphStorm):
    """The emulator: ``async with GraphTestServer() as graph:``; asyncio only (aiohttp).

    ``graph.url`` is the Graph server (``http://127.0.0.1:PORT``), ``graph.authority`` the login
    server (``https://127.0.0.1:PORT``); ``airflow_connection()`` is a working msgraph connection.
    ``requests`` (and ``matching``, ``count``) are the Graph HTTP requests logged, paths with the
    version: not the token requests, not the sub-requests of a batch (``subrequests``). The
    connection counts (``open_connections``, ...) are of both servers.
    """

    def __init__(
        self,
        *,
        users: int = 1000,
        tenant: str = "hookbridge-tenant",
        client_id: str = "hookbridge-client",
        client_secret: str = "graph-test-client-secret",
        token_lifetime: int = 3599,
        graph_tls: bool = False,
        photo_size: int = 4096,
        batch_order: Literal["shuffled", "request"] = "shuffled",
        log_requests: bool = True,
        latency: float = 0.0,
        shutdown_timeout: float = 1.0,
    ) -> None:
        AppServer.__init__(self, shutdown_timeout=shutdown_timeout)
        self.login = TokenIssuer(tenant, client_id, client_secret, token_lifetime)
        """The token endpoint: ``login.client_secret`` and ``login.lifetime`` may be changed."""
        self.resources = GraphResources(GraphDirectory(users), photo_size)
        self.graph_tls = graph_tls
        self.batch_order = batch_order
        self.log_requests = log_requests
        self.latency = latency
        """Seconds every Graph request waits before its answer (a remote service's latency)."""
        self.link_origin: str | None = None
        """Origin of the next and delta links (``http://localhost:PORT``), to test refusals."""
        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert("127.0.0.1")
        self._ca_file: Path | None = None
        self._faults: list[Fault] = []
        self._random = random.Random(20240601)
        self._log = []
        self._batch_log: list[GraphRequest] = []
        self.request_count = 0
        """Graph HTTP requests (round trips) since start or ``clear()``, with or without a log."""
        self.subrequest_count = 0
        """Sub-requests served inside ``$batch`` calls since start or ``clear()``."""

    # -- lifecycle -------------------------------------------------------------------------------

    async def _bind(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        login = web.Application()
        login.router.add_post("/{tenant}/oauth2/v2.0/token", self.login.handle)
        await self._listen("login", login, ssl_context=context)
        graph = web.Application(middlewares=[self._middleware], client_max_size=16 << 20)
        graph.router.add_get("/_emulator/stats", self._stats)
        graph.router.add_post("/_emulator/latency", self._set_latency)
        graph.router.add_route("*", "/{version}/{resource:.*}", self._graph)
        await self._listen("graph", graph, ssl_context=context if self.graph_tls else None)

    async def stop(self) -> None:
        """Close both servers and every connection, and wait for them to be gone."""
        await super().stop()
        if self._ca_file is not None:
            self._ca_file.unlink(missing_ok=True)

    # -- addresses and connection ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Graph server, ``http://127.0.0.1:PORT`` (https with ``graph_tls``)."""
        return self._origin("https" if self.graph_tls else "http", "graph")

    @property
    def authority(self) -> str:
        """The login server, ``https://127.0.0.1:PORT`` (the connection's ``authority``)."""
        return self._origin("https", "login")

    @property
    def token_url(self) -> str:
        return f"{self.authority}/{self.login.tenant}/oauth2/v2.0/token"

    def url_for(self, path: str, version: str = "v1.0") -> str:
        """Absolute URL of a resource path such as ``/users``."""
        return f"{self.url}/{version}{path}"

    @property
    def ca_pem(self) -> bytes:
        """The certificate authority that signed both servers' certificate (PEM)."""
        return self._ca.cert_pem.bytes()

    def ca_file(self) -> str:
        """A PEM file of ``ca_pem`` (made once, removed at stop), for a ``verify`` path."""
        if self._ca_file is None:
            handle, name = tempfile.mkstemp(prefix="graph-ca-", suffix=".pem")
            with open(handle, "wb") as file:
                file.write(self.ca_pem)
            self._ca_file = Path(name)
        return str(self._ca_file)

    def airflow_connection(self, **extra: Any) -> dict[str, Any]:
        """A working msgraph connection (``AIRFLOW_CONN_<ID>`` as JSON); ``extra`` overrides."""
        return {
            "conn_type": "msgraph",
            # The hook ignores the connection's port field: the port rides in host.
            "host": f"127.0.0.1:{self._port('graph')}",
            "schema": "https" if self.graph_tls else "http",
            "login": self.login.client_id,
            "password": self.login.client_secret,
            "extra": {
                "tenant_id": self.login.tenant,
                "authority": self.authority,
                "verify": False,
                # No api_version: v1.0 is the default, and Airflow's secret masker warns about
                # every extra value shorter than 5 characters ("v1.0").
                # Bare host names: with a scheme or port the token is silently withheld.
                "allowed_hosts": "127.0.0.1",
                **extra,
            },
        }

    # -- logs and counters -----------------------------------------------------------------------

    @property
    def subrequests(self) -> list[GraphRequest]:
        """Sub-requests served inside batches, in the order executed."""
        return list(self._batch_log)

    @property
    def token_requests(self) -> list[TokenRequest]:
        """Requests to the token endpoint, oldest first (cleared by ``clear()``)."""
        return list(self.login.requests)

    @property
    def issued_tokens(self) -> list[str]:
        """Every bearer token issued so far, oldest first (for leak checks)."""
        return list(self.login.tokens)

    def clear(self) -> None:
        """Forget the logs and counters (tokens and faults stay)."""
        self._log.clear()
        self._batch_log.clear()
        self.login.requests.clear()
        self.request_count = 0
        self.subrequest_count = 0

    def stats(self) -> dict[str, int]:
        """The counters a benchmark reads (also at ``GET /_emulator/stats``)."""
        return {
            "requests": self.request_count,
            "subrequests": self.subrequest_count,
            "token_requests": len(self.login.requests),
            "open_connections": self.open_connections,
            "total_connections": self.total_connections,
        }

    # -- faults and tokens -----------------------------------------------------------------------

    def throttle(
        self,
        count: int = 1,
        status: int = 429,
        retry_after: float | str | None = 1,
        *,
        path_prefix: str | None = None,
        method: str | None = None,
        in_batch: bool = False,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` and ``Retry-After``.

        ``path_prefix`` is a resource path without the version (``"/users/u-000003"``,
        ``"/$batch"``); ``in_batch=True`` matches sub-requests inside ``$batch`` calls instead of
        HTTP requests. Faults apply in the order scheduled.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if count:
            self._faults.append(
                make_fault(count, status, retry_after, path_prefix, method, in_batch)
            )

    def throttle_for(
        self,
        seconds: float,
        status: int = 429,
        retry_after: float | str | None = None,
        *,
        path_prefix: str | None = None,
    ) -> None:
        """Throttle every matching HTTP request for ``seconds`` (loop time) from now.

        ``retry_after`` defaults to the window's length rounded up to whole seconds.
        """
        assert self._loop is not None, "start the server first"
        header = math.ceil(seconds) if retry_after is None else retry_after
        fault = make_fault(None, status, header, path_prefix, None, False)
        fault.until = self._loop.time() + seconds
        self._faults.append(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take_fault(self, method: str, resource: str, in_batch: bool) -> Fault | None:
        now = self._loop.time() if self._loop is not None else 0.0
        self._faults = [f for f in self._faults if f.until > now]
        for index, fault in enumerate(self._faults):
            if fault.matches(method, resource, in_batch):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        del self._faults[index]
                return fault
        return None

    def expire_tokens(self) -> None:
        """Make every token issued so far expired, as if its lifetime had passed."""
        self.login.expire()

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far (a later request with one gets 401)."""
        self.login.revoke()

    # -- Graph server ----------------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    async def _set_latency(self, request: web.Request) -> web.StreamResponse:
        # For a benchmark driving the emulator in another process: ?seconds=0.005
        self.latency = max(0.0, float(request.query.get("seconds", "0")))
        return web.json_response({"latency": self.latency})

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        self.request_count += 1
        record = None
        if self.log_requests:
            assert self._loop is not None
            authorization = request.headers.get(hdrs.AUTHORIZATION, "")
            record = GraphRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={name.lower(): value for name, value in request.headers.items()},
                token=authorization.partition(" ")[2] or None,
                time=time.monotonic(),
                loop_time=self._loop.time(),
            )
            self._log.append(record)
        response = await handler(request)
        if record is not None:
            record.status = response.status
        return response

    async def _graph(self, request: web.Request) -> web.StreamResponse:
        version = request.match_info["version"]
        resource = "/" + request.match_info["resource"]
        try:
            if version not in _VERSIONS:
                raise GraphError(400, "BadRequest", f"Invalid version: {version!r}.")
            token = self.login.check(request.headers.get(hdrs.AUTHORIZATION, ""))
            fault = self._take_fault(request.method, resource, False) if self._faults else None
            if fault is not None:
                answer = throttled(fault)
            else:
                if self.latency:
                    await asyncio.sleep(self.latency)
                body = await request.read()
                base = f"{self.link_origin or self.url}/{version}"
                call = Call(
                    request.method,
                    resource,
                    list(request.query.items()),
                    request.headers,
                    body,
                    base,
                )
                if resource == "/$batch" and request.method == "POST":
                    answer = self._batch(call, token)
                elif self.stormed(call):  # storm(): seeded faults on item reads and writes
                    return await self.storm_answer(
                        request, call, self.resources.dispatch, _to_response
                    )
                else:
                    answer = self.resources.dispatch(call)
        except GraphError as exc:
            answer = Answer(exc.status, exc.body(), exc.headers)
            if exc.status == 401:
                answer.headers[hdrs.WWW_AUTHENTICATE] = (
                    f'Bearer realm="", error="invalid_token", error_description="{exc.message}"'
                )
        return _to_response(answer)

    # -- $batch ----------------------------------------------------------------------------------

    def _batch(self, call: Call, token: str) -> Answer:
        requests = parse_batch(call.body)
        statuses: dict[str, int] = {}
        responses = []
        for item in requests:
            answer = self._subrequest(call, item, statuses, token)
            statuses[item["id"]] = answer.status
            responses.append(batch_entry(item["id"], answer))
        if self.batch_order == "shuffled":
            self._random.shuffle(responses)
        return Answer(200, {"responses": responses})

    def _subrequest(
        self, call: Call, item: Mapping[str, Any], statuses: Mapping[str, int], token: str
    ) -> Answer:
        method = str(item.get("method", "")).upper()
        url = str(item.get("url", ""))
        parts = urlsplit(url)
        headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
        resource = "/" + parts.path.lstrip("/")
        self.subrequest_count += 1
        if self.log_requests:
            assert self._loop is not None
            version_path = urlsplit(call.base).path
            record = GraphRequest(
                method,
                version_path + resource,
                dict(parse_qsl(parts.query)),
                headers,
                token,
                time.monotonic(),
                self._loop.time(),
                batch_id=str(item["id"]),
            )
            self._batch_log.append(record)
        answer = self._subrequest_answer(call, item, method, url, resource, headers, statuses)
        if self.log_requests:
            record.status = answer.status
        return answer

    def _subrequest_answer(
        self,
        call: Call,
        item: Mapping[str, Any],
        method: str,
        url: str,
        resource: str,
        headers: Mapping[str, str],
        statuses: Mapping[str, int],
    ) -> Answer:
        if not method or url.startswith(("http:", "https:")) or resource == "/$batch":
            message = "A batch request needs a method and a URL relative to the version."
            return Answer(400, GraphError(400, "BadRequest", message).body())
        failed = [d for d in item.get("dependsOn") or [] if statuses.get(d, 500) >= 400]
        if failed:
            message = f"Request depends on {failed}, which failed."
            return Answer(424, GraphError(424, "FailedDependency", message).body())
        fault = self._take_fault(method, resource, True) if self._faults else None
        if fault is not None:
            return throttled(fault)
        body = item.get("body")
        raw = json.dumps(body).encode() if body is not None else b""
        parts = urlsplit(url)
        sub = Call(
            method,
            resource,
            parse_qsl(parts.query, keep_blank_values=True),
            LowerHeaders(headers),
            raw,
            call.base,
        )
        return self.resources.dispatch(sub)


def _to_response(answer: Answer) -> web.Response:
    if answer.body is None:
        return web.Response(status=answer.status, headers=answer.headers)
    if isinstance(answer.body, bytes):
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
    return web.json_response(answer.body, status=answer.status, headers=answer.headers)


async def serve_forever(
    *, ready: Callable[[GraphTestServer], None] | None = None, **options: Any
) -> None:
    """Serve a ``GraphTestServer(**options)`` until SIGTERM or SIGINT (or cancellation).

    ``ready(server)`` is called once bound. Unlike the class, requests are not logged by default.
    """
    options.setdefault("log_requests", False)
    await serve_until_signalled(GraphTestServer(**options), ready)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print one JSON line (URLs and the Airflow connection), serve until a signal."""
    parser = argparse.ArgumentParser(
        prog="python -m hookbridge.testing._graph_server",
        description="Serve the hookbridge Microsoft Graph emulator until SIGTERM/SIGINT.",
    )
    parser.add_argument("--port", type=int, default=0, help="only 0 (random ports) is supported")
    parser.add_argument("--users", type=int, default=1000, help="users in the directory")
    parser.add_argument("--token-lifetime", type=int, default=3599, help="seconds")
    parser.add_argument("--log-requests", action="store_true", help="keep a request log")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per Graph request")
    args = parser.parse_args(argv)
    if args.port != 0:
        parser.error("--port must be 0: the emulator binds two random ports (login and Graph)")
    del args.port  # not an option of the server

    def ready(server: GraphTestServer) -> None:
        print(
            json.dumps(
                {
                    "url": server.url,
                    "authority": server.authority,
                    "token_url": server.token_url,
                    "stats_url": f"{server.url}/_emulator/stats",
                    "connection": server.airflow_connection(),
                }
            ),
            flush=True,
        )

    asyncio.run(serve_forever(ready=ready, **vars(args)))  # the other options are the server's
    return 0


if __name__ == "__main__":
    sys.exit(main())
