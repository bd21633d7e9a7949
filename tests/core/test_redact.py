"""redact: a secret is removed in every form a client writes it in, and only the secret."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from yarl import URL

from hookbridge.adapter import redact
from hookbridge.testing import secret_forms

SECRETS = ["p@ss word+/x", "tok/9f8e+7d6c 5b4a", "sécret-ümlaut", "plain-token-123"]


@pytest.mark.parametrize("secret", SECRETS)
def test_every_listed_form_is_redacted(secret: str) -> None:
    for form in secret_forms(secret):
        assert redact(f"before {form} after", [secret]) == "before *** after", form


@pytest.mark.parametrize("secret", SECRETS)
def test_what_clients_really_write_is_redacted(secret: str) -> None:
    written = [
        str(URL("http://h/p").with_query(password=secret)),  # yarl (aiohttp): "@", "/" kept
        str(URL("http://h/").joinpath(secret)),  # yarl in a path
        "http://h/p?password=" + quote(secret, safe="@/"),  # another client's choice
        "http://h/p?password=" + quote(secret, safe="").lower(),  # lower-case escapes
    ]
    for text in written:
        shown = redact(text, [secret])
        assert "***" in shown, text
        for form in secret_forms(secret):
            assert form not in shown, (form, shown)


def test_url_credentials_and_short_words() -> None:
    assert redact("GET https://user:pw@host/x") == "GET https://***@host/x"
    # Two characters are not worth protecting: they would blank ordinary words.
    assert redact("an ox", ["ox"]) == "an ox"
    assert redact("nothing here", [None, ""]) == "nothing here"
