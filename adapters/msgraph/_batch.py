"""JSON batching: any number of requests as ``$batch`` calls of 20, each request accounted for.

msgraph-core 1.5 has ``BatchRequestContent``/``BatchRequestItem``, but their JSON does not fit
Graph: they write ``depends_on`` where Graph reads ``dependsOn`` (dependencies are silently
dropped), and their version-stripping pattern (``/\\/(v1.0|beta)/``) does not match ``/v1.0/``,
so sub-request URLs keep the version and Graph answers 400. The body is four keys per request:
it is written here. ``BatchRequestBuilder.post`` would also send through kiota's retry handler
and raise on a 429 without its Retry-After.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio

from hookbridge import HookBridgeError, MalformedResponse, Outcome, Throttled, UsageError

from ._translate import THROTTLING, status_error

if TYPE_CHECKING:
    from ._adapter import MSGraphAdapter

__all__ = ["IDEMPOTENT", "MAX_BATCH", "BatchRequest", "batch_answers", "run_batch", "settle"]

#: Graph's limit of requests in one ``$batch`` call.
MAX_BATCH = 20
#: Methods whose repetition changes nothing more: retried like reads.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch. ``url`` is relative to the version: ``users/{id}?$select=id``.

    ``id`` names it for ``depends_on`` (ids of earlier requests of the same call): Graph runs it
    after those and answers 424 when one of them failed.
    """

    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    id: str | None = None
    depends_on: tuple[str, ...] = ()

    @classmethod
    def of(cls, value: BatchRequest | str | Mapping[str, Any], index: int) -> BatchRequest:
        if isinstance(value, BatchRequest):
            return _normalized(value, index)
        if isinstance(value, str):
            return _normalized(cls(url=value), index)
        if isinstance(value, Mapping):
            try:
                request = cls(**value)
            except TypeError as exc:
                raise UsageError(
                    f"batch request #{index} {dict(value)!r:.120}: {exc}; the fields are url, "
                    "method, headers, body, id and depends_on",
                    argument="requests",
                ) from None
            return _normalized(request, index)
        raise UsageError(
            f"batch request #{index} must be a BatchRequest, a URL or a dict, got "
            f"{type(value).__name__}",
            argument="requests",
        )


def _normalized(request: BatchRequest, index: int) -> BatchRequest:
    if not isinstance(request.url, str) or not request.url:
        raise UsageError(
            f"batch request #{index} needs a URL such as 'users/{{id}}', got {request.url!r}",
            argument="requests",
        )
    if not isinstance(request.method, str) or not request.method.isalpha():
        raise UsageError(
            f"batch request #{index}: {request.method!r} is not an HTTP method",
            argument="requests",
        )
    depends = request.depends_on
    if isinstance(depends, str):
        depends = (depends,)
    return BatchRequest(
        request.url, request.method.upper(), dict(request.headers), request.body, request.id,
        tuple(depends),
    )  # fmt: skip


def _relative(url: str, base_url: str, index: int) -> str:
    if urlsplit(url).scheme:
        if not url.startswith(base_url):
            raise UsageError(
                f"batch request #{index}: {url!r} is not under {base_url}; a $batch request URL "
                "is relative to the version, such as 'users/{id}'",
                argument="requests",
            )
        url = url[len(base_url) :]
    return "/" + url.lstrip("/")


@dataclass
class _Chunk:
    """The requests of one ``$batch`` call and what is still to be answered."""

    entries: dict[int, dict[str, Any]]  # input index -> the request's JSON entry
    requests: dict[int, BatchRequest]
    pending: list[int]
    values: dict[int, Any] = field(default_factory=dict)
    errors: dict[int, Exception] = field(default_factory=dict)

    @property
    def idempotent(self) -> bool:
        return all(self.requests[i].method.upper() in IDEMPOTENT for i in self.pending)


def _prepare(
    requests: Iterable[BatchRequest | str | Mapping[str, Any]], base_url: str
) -> tuple[list[BatchRequest], list[_Chunk]]:
    parsed = [BatchRequest.of(value, index) for index, value in enumerate(requests)]
    by_id: dict[str, int] = {}
    group = list(range(len(parsed)))  # each request's group: the first request it depends on
    entries: dict[int, dict[str, Any]] = {}
    for index, request in enumerate(parsed):
        entry: dict[str, Any] = {
            "id": str(index),
            "method": request.method.upper(),
            "url": _relative(request.url, base_url, index),
        }
        if request.headers:
            entry["headers"] = dict(request.headers)
        if request.body is not None:
            entry["body"] = request.body
            entry.setdefault("headers", {}).setdefault("Content-Type", "application/json")
        if request.depends_on:
            missing = [d for d in request.depends_on if d not in by_id]
            if missing:
                raise UsageError(
                    f"batch request #{index} depends on {missing}, which name no earlier request "
                    "(give those requests id=...)",
                    argument="requests",
                )
            entry["dependsOn"] = [str(by_id[d]) for d in request.depends_on]
            group[index] = min(group[by_id[d]] for d in request.depends_on)
        if request.id is not None:
            if request.id in by_id:
                raise UsageError(
                    f"batch request id {request.id!r} is used twice", argument="requests"
                )
            by_id[request.id] = index
        entries[index] = entry
    # Requests that depend on each other travel in the same call; groups are packed in order.
    members: dict[int, list[int]] = {}
    for index in range(len(parsed)):
        root = group[index]
        while group[root] != root:
            root = group[root]
        members.setdefault(root, []).append(index)
    chunks: list[_Chunk] = []
    current: list[int] = []
    for indices in members.values():
        if len(indices) > MAX_BATCH:
            raise UsageError(
                f"{len(indices)} requests depend on each other; one $batch call holds at most "
                f"{MAX_BATCH}",
                argument="requests",
            )
        if len(current) + len(indices) > MAX_BATCH:
            chunks.append(_new_chunk(current, entries, parsed))
            current = []
        current.extend(indices)
    if current:
        chunks.append(_new_chunk(current, entries, parsed))
    return parsed, chunks


def _new_chunk(
    indices: list[int], entries: dict[int, dict[str, Any]], parsed: list[BatchRequest]
) -> _Chunk:
    ordered = sorted(indices)
    return _Chunk({i: entries[i] for i in ordered}, {i: parsed[i] for i in ordered}, list(ordered))


def _sub_headers(answer: Mapping[str, Any]) -> dict[str, str]:
    headers = answer.get("headers")
    # Headers that are not an object tell nothing (a broken gateway): the status still counts.
    if not isinstance(headers, Mapping):
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _sub_value(answer: Mapping[str, Any]) -> Any:
    body = answer.get("body")
    headers = _sub_headers(answer)
    if isinstance(body, str) and "json" not in headers.get("content-type", "json"):
        # Graph sends content that is not JSON (a photo's $value) base64-encoded.
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return body
    return body


def batch_answers(body: Any, url: str) -> dict[str, Mapping[str, Any] | MalformedResponse]:
    """The entries of a ``$batch`` answer by id; an id answered twice maps to its error.

    Raises MalformedResponse when the answer has no ``responses`` list. An entry that is not an
    object with an ``id`` answers nothing: the request it was meant for ends "no answer".
    """
    responses = body.get("responses") if isinstance(body, Mapping) else None
    if not isinstance(responses, list):
        raise MalformedResponse("the $batch answer has no responses list", url=url)
    answers: dict[str, Mapping[str, Any] | MalformedResponse] = {}
    for entry in responses:
        if not isinstance(entry, Mapping) or "id" not in entry:
            continue
        key = str(entry["id"])
        if key in answers:
            # Two answers to one request: neither can be trusted, and the request may have run
            # twice; it is reported, never guessed.
            answers[key] = MalformedResponse(
                f"Graph answered batch request id {key!r:.40} more than once", url=url
            )
        else:
            answers[key] = entry
    return answers


def _status(answer: Mapping[str, Any]) -> int | None:
    status = answer.get("status")
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return status
    return None


def settle(
    chunk: _Chunk, body: Any, url: str, conn_id: str, redact: Callable[[str], str]
) -> list[Throttled]:
    """Record the answers of one ``$batch`` call in ``chunk``; leave in ``pending`` what to re-send.

    Returns the throttling errors among those to re-send. Every pending request ends with a
    value, an error, or pending again: none is lost, whatever the answer holds.
    """
    answers = batch_answers(body, url)
    again: list[int] = []
    throttled: list[Throttled] = []
    for index in chunk.pending:
        request = chunk.requests[index]
        target = f"{request.method.upper()} {chunk.entries[index]['url']} (batch request #{index})"
        answer = answers.get(str(index))
        if answer is None:
            chunk.errors[index] = MalformedResponse(f"Graph sent no answer for {target}", url=url)
            continue
        if isinstance(answer, MalformedResponse):
            chunk.errors[index] = answer
            continue
        status = _status(answer)
        if status is None:
            chunk.errors[index] = MalformedResponse(
                f"Graph answered {target} with the status {answer.get('status')!r:.40}, "
                "not an HTTP status",
                url=url,
            )
            continue
        if 200 <= status < 300:
            chunk.values[index] = _sub_value(answer)
            chunk.errors.pop(index, None)
            continue
        error = status_error(
            status, _sub_headers(answer), answer.get("body"), redact(target), conn_id, redact
        )
        chunk.errors[index] = error
        depends = [int(d) for d in chunk.entries[index].get("dependsOn", ())]
        if (
            status in THROTTLING
            or (status in (500, 502) and request.method.upper() in IDEMPOTENT)
            or (status == 424 and any(d in again for d in depends))
        ):
            again.append(index)
            if isinstance(error, Throttled):
                throttled.append(error)
    chunk.pending = again
    return throttled


async def _attempt(adapter: MSGraphAdapter, chunk: _Chunk) -> None:
    """One ``$batch`` call for the chunk's pending requests; raises if some must be re-sent."""
    payload = {"requests": [chunk.entries[i] for i in chunk.pending]}
    url = adapter.url("$batch")
    response = await adapter._send(
        "POST",
        url,
        {"Content-Type": "application/json"},
        json.dumps(payload).encode(),
        adapter.options["max_body_size"],
    )
    try:
        body = response.json()
    except (ValueError, RecursionError):
        raise MalformedResponse("the $batch answer is not JSON", url=url) from None
    throttled = settle(chunk, body, url, adapter.conn_id, adapter.redact)
    if not chunk.pending:
        return
    if throttled:
        # The longest Retry-After: the engine makes every caller of the adapter wait it out.
        raise max(throttled, key=lambda e: -1.0 if e.retry_after is None else e.retry_after)
    raise chunk.errors[chunk.pending[0]]


async def run_batch(
    adapter: MSGraphAdapter,
    requests: Iterable[BatchRequest | str | Mapping[str, Any]],
    max_at_once: int,
) -> list[Outcome[BatchRequest, Any]]:
    parsed, chunks = _prepare(requests, adapter.base_url)
    limiter = anyio.CapacityLimiter(max_at_once)

    async def run(chunk: _Chunk) -> None:
        async with limiter:
            retry = adapter.retry if chunk.idempotent else adapter._write_retry
            try:
                await adapter.call(_attempt, adapter, chunk, retry=retry, target="$batch")
            except HookBridgeError as exc:
                # The call itself failed (or retries ran out): every unanswered request gets its
                # own last error, or the call's.
                for index in chunk.pending:
                    chunk.errors.setdefault(index, exc)

    async with anyio.create_task_group() as tg:
        for chunk in chunks:
            tg.start_soon(run, chunk)
    outcomes: list[Outcome[BatchRequest, Any]] = []
    found: dict[int, Outcome[BatchRequest, Any]] = {}
    for chunk in chunks:
        for index, request in chunk.requests.items():
            if index in chunk.errors:
                found[index] = Outcome(index=index, item=request, error=chunk.errors[index])
            else:
                found[index] = Outcome(index=index, item=request, value=chunk.values.get(index))
    outcomes = [found[index] for index in range(len(parsed))]
    return outcomes
