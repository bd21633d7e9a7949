"""Fuzzing the Graph adapter's parsers of remote data: only declared hookbridge errors come out.

- OData pages: the adapter's ``@odata.nextLink``/``value`` strategy and the delta strategy
  (``@odata.deltaLink``) on any body (bytes that may not be JSON, any JSON), and whole delta
  streams over hostile pages, host policy on;
- ``$batch`` answers: ``batch_answers`` and ``settle`` on any body, and on Graph-shaped answers
  whose entries have any id (asked, stray, repeated), status, headers and body: every request of
  the call ends as a value, an error or pending again, exactly once;
- error answers: ``status_error`` (Graph's error shape, Retry-After) on any status, headers, body;
- a response's value: only ValueError or RecursionError (which ``request`` reports as
  MalformedResponse).

Examples per test: the ``hookbridge-fuzz`` profile (conftest.py): 60 derandomized in CI,
``HOOKBRIDGE_FUZZ=long`` for 5,000.
"""

from __future__ import annotations

import contextlib
import json
import string
from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from hookbridge import (
    HookBridgeError,
    HostPolicy,
    MalformedResponse,
    NextLink,
    PageRequest,
    RemoteStatusError,
    Throttled,
)
from hookbridge.adapter import PageStream, redact
from hookbridge.adapters.msgraph import DeltaStream
from hookbridge.adapters.msgraph._batch import _prepare, batch_answers, settle
from hookbridge.adapters.msgraph._client import GraphResponse
from hookbridge.adapters.msgraph._delta import _DeltaLinks
from hookbridge.adapters.msgraph._translate import status_error

FUZZ = settings.get_profile("hookbridge-fuzz")
BASE = "https://graph.microsoft.com/v1.0/"
SECRET = "fuzz-client-secret"

# -- what Graph answers look like -----------------------------------------------------------------

LINKS = st.text(alphabet=string.printable, max_size=40) | st.sampled_from(
    [
        f"{BASE}users?$skiptoken=X",
        "users?$skiptoken=Y",
        "https://evil.example/v1.0/users",
        "http://[::1",
        "https://graph.microsoft.com:99999/v1.0/",
        "//evil.example/x",
        "",
    ]
)
KEYS = st.sampled_from(
    ["value", "@odata.nextLink", "@odata.deltaLink", "@odata.context", "@odata.count", "error",
     "responses", "id", "status", "headers", "body", "code", "message", "@removed"]
) | st.text(max_size=6)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | LINKS
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=25,
)
RAW = st.binary(max_size=60) | st.sampled_from(
    [b'{"value": [1, 2', b"<html>Sign in</html>", b"[" * 5000 + b"]" * 5000, b"\xff\xfe{}", b""]
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/html", "image/jpeg", ""]
)


def _content(body: Any) -> bytes:
    return json.dumps(body).encode()


def _response(content: bytes, content_type: str, url: str = f"{BASE}users") -> GraphResponse:
    return GraphResponse(200, url, {"content-type": content_type}, content)


PAGE_BODIES = JSON.map(_content) | RAW
PAGE_LIKE = st.fixed_dictionaries(
    {"value": st.lists(SCALARS, max_size=3)},
    optional={"@odata.nextLink": LINKS, "@odata.deltaLink": LINKS},
).map(_content)

# -- OData pages ------------------------------------------------------------------------------


@FUZZ
@given(content=PAGE_BODIES | PAGE_LIKE, content_type=CONTENT_TYPES, delta=st.booleans())
def test_an_odata_page_gives_items_and_a_next_request_or_malformed_response(
    content: bytes, content_type: str, delta: bool
) -> None:
    strategy: Any = _DeltaLinks() if delta else NextLink(link="@odata.nextLink", items="value")
    response = _response(content, content_type)
    request = PageRequest(f"{BASE}users", params={"$top": 5})
    try:
        items = strategy.page_items(response)
        following = strategy.next_request(request, response, items)
    except MalformedResponse:
        return
    assert isinstance(items, list)
    assert following is None or isinstance(following, PageRequest)
    if delta and strategy.delta_link is not None:
        assert isinstance(strategy.delta_link, str)


@FUZZ
@given(pages=st.lists(PAGE_LIKE | PAGE_BODIES, min_size=1, max_size=6))
def test_a_delta_stream_over_hostile_pages_ends_or_raises_a_hookbridge_error(
    pages: list[bytes],
) -> None:
    served = 0

    async def fetch(request: PageRequest) -> GraphResponse:
        nonlocal served
        content = pages[served % len(pages)]
        served += 1
        return _response(content, "application/json", request.url)

    hosts = HostPolicy(BASE)

    def make(strategy: Any) -> PageStream[Any]:
        return PageStream(
            fetch, lambda: PageRequest(f"{BASE}users/delta"), strategy, hosts=hosts, max_pages=20
        )

    async def run() -> None:
        stream = DeltaStream(make)
        async for _ in stream:
            pass
        # A round read to its end offers a link on this host, or none.
        if stream.delta_link is not None:
            assert isinstance(stream.delta_link, str)

    with contextlib.suppress(HookBridgeError):
        anyio.run(run)
    assert served <= 20


# -- $batch answers -------------------------------------------------------------------------------

ASKED = 4


def _chunk() -> Any:
    requests: list[Any] = [f"users/u-{i:06d}" for i in range(ASKED - 1)]
    requests.append({"url": "users", "method": "POST", "body": {"displayName": "x"}})
    _, chunks = _prepare(requests, BASE)
    return chunks[0]


ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from([str(i) for i in range(ASKED)] + ["99", ""])
        | st.integers(-2, ASKED)
        | JSON,
        "status": st.sampled_from([200, 201, 204, 400, 404, 424, 429, 500, 502, 503, 504])
        | SCALARS,
        "headers": st.dictionaries(
            st.sampled_from(["Retry-After", "Content-Type", "retry-after", "X"]),
            st.sampled_from(["0", "-1", "nan", "9" * 400, "image/jpeg", "Wed, 99 Foo"])
            | st.text(max_size=10),
            max_size=3,
        )
        | JSON,
        "body": JSON | st.text(max_size=20),
    },
)
BATCH_BODIES = (
    st.fixed_dictionaries({"responses": st.lists(ENTRY | JSON, max_size=8)})
    | JSON
    | st.lists(ENTRY, max_size=3).map(lambda entries: {"value": entries})
)


@FUZZ
@given(body=BATCH_BODIES)
def test_a_batch_answer_accounts_for_every_request_or_is_malformed(body: Any) -> None:
    chunk = _chunk()
    asked = list(chunk.pending)
    try:
        throttled = settle(chunk, body, f"{BASE}$batch", "fuzz", lambda text: text)
    except MalformedResponse:
        return
    for index in asked:
        # Each request ends exactly one way: a value, or an error (pending again: retried).
        assert (index in chunk.values) != (index in chunk.errors), index
        if index in chunk.errors:
            assert isinstance(chunk.errors[index], HookBridgeError)
    assert set(chunk.pending) <= set(asked)
    assert all(isinstance(error, Throttled) for error in throttled)
    assert all(index in chunk.errors for index in chunk.pending)


@FUZZ
@given(body=BATCH_BODIES)
def test_batch_answers_maps_ids_to_entries_or_is_malformed(body: Any) -> None:
    try:
        answers = batch_answers(body, f"{BASE}$batch")
    except MalformedResponse:
        return
    for key, answer in answers.items():
        assert isinstance(key, str)
        assert isinstance(answer, (dict, MalformedResponse))


# -- error answers and values -------------------------------------------------------------------


@FUZZ
@given(
    status=st.integers(400, 599),
    retry_after=st.none() | st.text(max_size=30) | st.sampled_from(["0", "-5", "9" * 400, "nan"]),
    body=JSON | RAW | st.text(max_size=40) | JSON.map(lambda e: {"error": e}),
    secret_in=st.booleans(),
)
def test_an_error_answer_becomes_a_declared_error_without_the_secret(
    status: int, retry_after: str | None, body: Any, secret_in: bool
) -> None:
    headers = {} if retry_after is None else {"retry-after": retry_after}
    if secret_in:  # a server echoing the secret, in the body as it came (bytes, text, JSON)
        if isinstance(body, bytes):
            body += f" echo {SECRET}".encode()
        elif isinstance(body, str):
            body += f" echo {SECRET}"
        else:
            body = {"error": {"code": "X", "message": f"echo {SECRET}"}, "raw": body}
    error = status_error(
        status, headers, body, f"{BASE}users", "fuzz", lambda text: redact(text, (SECRET,))
    )
    assert isinstance(error, (Throttled, RemoteStatusError))
    if isinstance(error, Throttled):
        assert error.retry_after is None or error.retry_after >= 0
    assert SECRET not in str(error)


@FUZZ
@given(content=RAW | PAGE_BODIES, content_type=CONTENT_TYPES)
def test_a_response_value_is_json_bytes_or_a_value_error(content: bytes, content_type: str) -> None:
    response = _response(content, content_type)
    try:
        value = response.value()
    except (ValueError, RecursionError):  # what request() reports as MalformedResponse
        assert response.is_json
        return
    if not response.is_json and content:
        assert value == content
