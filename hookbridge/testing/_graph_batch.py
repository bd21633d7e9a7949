"""The Graph emulator's throttling faults and the shape of JSON batches ($batch).

A fault answers 429/503/504 with ``Retry-After`` to the next matching requests (or, with
``in_batch``, to matching sub-requests inside batches), or to every request in a time window.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any

from ._graph_directory import GraphError
from ._graph_resources import Answer

__all__ = ["MAX_BATCH", "Fault", "batch_entry", "make_fault", "parse_batch", "throttled"]

MAX_BATCH = 20


@dataclass(slots=True)
class Fault:
    """One scheduled throttling answer (or a window of them)."""

    remaining: int | None  # None: until ``until``
    status: int
    retry_after: str | None
    path_prefix: str | None  # a resource path without the version: "/users"
    method: str | None
    in_batch: bool
    until: float = math.inf  # loop time

    def matches(self, method: str, resource: str, in_batch: bool) -> bool:
        return (
            self.in_batch == in_batch
            and (self.method is None or self.method == method)
            and (self.path_prefix is None or resource.startswith(self.path_prefix))
        )


def make_fault(
    count: int | None,
    status: int,
    retry_after: float | str | None,
    path_prefix: str | None,
    method: str | None,
    in_batch: bool,
) -> Fault:
    """A validated fault; a float ``retry_after`` that is whole is sent as an integer."""
    if status not in (429, 503, 504):
        raise ValueError(f"status must be 429, 503 or 504 (throttling), got {status}")
    if isinstance(retry_after, float) and retry_after.is_integer():
        retry_after = int(retry_after)
    header = None if retry_after is None else str(retry_after)
    return Fault(count, status, header, path_prefix, method and method.upper(), in_batch)


def throttled(fault: Fault) -> Answer:
    """The 429 or 503 answer of ``fault``, in Graph's error shape."""
    headers = {} if fault.retry_after is None else {"Retry-After": fault.retry_after}
    if fault.status == 429:
        error = {"code": "TooManyRequests", "message": "Too many requests. Retry after a while."}
    else:
        error = {
            "code": "serviceNotAvailable",
            "message": "The service is temporarily unavailable.",
        }
    return Answer(fault.status, {"error": error}, headers)


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    """The requests of a ``$batch`` body, or a 400 saying what is wrong with it."""
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        payload = None
    requests = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(requests, list) or not requests:
        raise GraphError(400, "BadRequest", 'A batch body is {"requests": [...]}, not empty.')
    if len(requests) > MAX_BATCH:
        raise GraphError(
            400,
            "BadRequest",
            f"Number of batch requests {len(requests)} exceeds the limit of {MAX_BATCH}.",
        )
    seen: set[str] = set()
    for item in requests:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise GraphError(400, "BadRequest", "Every batch request needs a string 'id'.")
        if item["id"] in seen:
            raise GraphError(400, "BadRequest", f"Batch request id '{item['id']}' is repeated.")
        for dependency in item.get("dependsOn") or []:
            if dependency not in seen:
                raise GraphError(
                    400,
                    "BadRequest",
                    f"Batch request '{item['id']}' depends on '{dependency}',"
                    " which is not an earlier request of this batch.",
                )
        seen.add(item["id"])
    return requests


def batch_entry(request_id: str, answer: Answer) -> dict[str, Any]:
    """One entry of a batch's ``responses``: bytes ride base64-encoded, as Graph sends them."""
    entry: dict[str, Any] = {
        "id": request_id,
        "status": answer.status,
        "headers": answer.headers,
    }
    if isinstance(answer.body, bytes):
        entry["body"] = base64.b64encode(answer.body).decode()
    elif answer.body is not None:
        entry["body"] = answer.body
        entry["headers"] = {"Content-Type": "application/json", **answer.headers}
    return entry
