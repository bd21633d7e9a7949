"""Graph secrets never show: the client secret and the bearer tokens the adapter was issued.

Beside test_secrets.py (every subject): the Graph-specific ways a secret comes back, in every
form of ``secret_forms``: a gateway that echoes the request's ``Authorization: Bearer`` header
and URL in its error message (in the error's message and its body excerpt) or puts the token in
a next link to another host (in the refusal), a secret rotated
under the adapter (the token endpoint refuses it), tokens revoked mid-run (a fresh one is fetched
and refused too), all at DEBUG, with every error's whole traceback text.
"""

from __future__ import annotations

import json
import logging
import traceback

# Imported first: importing Airflow configures logging (root level INFO), which would otherwise
# undo caplog's DEBUG level in the middle of the test.
import airflow.providers.microsoft.azure.hooks.msgraph  # noqa: F401
import anyio
import pytest
from reliability_subjects import Subject
from subject_msgraph import graph_subject  # noqa: F401 -- the fixture

from hookbridge import (
    HookBridgeError,
    PaginationRefused,
    PermissionDenied,
    RemoteStatusError,
    Retry,
)
from hookbridge.testing._graph_hostile import HostileGraphServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True),
    pytest.mark.timeout(60),
]


def _shown(error: BaseException) -> list[str]:
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    return texts + [str(value) for value in vars(error).values()]


@pytest.fixture
def graph(graph_subject: Subject) -> Subject:  # noqa: F811 -- the fixture imported above
    return graph_subject


async def test_a_gateway_echoing_the_bearer_token_does_not_leak_it(
    graph: Subject, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    texts: list[str] = []
    with anyio.fail_after(30):
        async with HostileGraphServer() as hostile:
            conn_id = graph.connect_to("127.0.0.1", hostile.port)
            async with graph.adapter(conn_id, retry=Retry.none()) as api:
                for _ in range(2):
                    with pytest.raises(RemoteStatusError) as info:
                        await api.get("hostile/echo")
                    errors.append(info.value)
                with pytest.raises(PaginationRefused) as refused:
                    [_ async for _ in api.items("hostile/foreign?echo=1")]
                errors.append(refused.value)
                texts += [json.dumps(api.spec()), repr(api), repr(api.statistics())]
    tokens = graph.server.issued_tokens
    assert tokens, "no token was issued: the test would prove nothing"
    assert "Bearer ***" in str(errors[0])  # the echo came back, and was redacted
    for error in errors:
        texts += _shown(error)
    texts += [caplog.text, *(repr(record.args) for record in caplog.records)]
    forms = graph.secret_forms()
    assert len(forms) >= 3 * (1 + len(tokens))
    leaks = [(form, text[:300]) for text in texts for form in forms if form in text]
    assert not leaks


async def test_a_rotated_secret_and_revoked_tokens_show_no_secret(
    graph: Subject, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = graph.server
    errors: list[BaseException] = []
    with anyio.fail_after(30):
        async with graph.adapter(graph.conn_id, retry=Retry.none()) as api:
            assert await graph.read(api, 3) == 3
            server.revoke_tokens()
            server.login.accepting = False  # the fresh token is refused as well
            with pytest.raises(PermissionDenied) as info:
                await graph.read(api, 4)
            errors.append(info.value)
            server.login.accepting = True
            old_secret = server.login.client_secret
            server.login.client_secret = "rotated-" + old_secret
            server.revoke_tokens()
            with pytest.raises(HookBridgeError) as info:
                await graph.read(api, 5)
            errors.append(info.value)
            checked = str(await api.check())
    assert "AADSTS7000215" in str(errors[1]) or "AADSTS7000215" in checked
    texts = [checked, caplog.text, *(repr(record.args) for record in caplog.records)]
    for error in errors:
        texts += _shown(error)
    # The secret the adapter holds (the old one) and every token issued: none may show.
    forms = [*graph.secret_forms(), *(f for f in _forms_of(old_secret))]
    leaks = [(form, text[:300]) for text in texts for form in forms if form in text]
    assert not leaks


def _forms_of(secret: str) -> tuple[str, ...]:
    from hookbridge.testing import secret_forms

    return secret_forms(secret)
