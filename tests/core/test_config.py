"""The connection extra's "hookbridge" key: validation names the conn_id and the key."""

from __future__ import annotations

import pytest

from hookbridge import ConfigurationError
from hookbridge._config import read_settings
from hookbridge._options import resolve
from hookbridge.adapter import Option, positive_int, positive_seconds

OPTIONS = (
    Option("max_size", positive_int, default=4, section="pool"),
    Option("timeout", positive_seconds, default=30.0),
    Option("secret_only_in_code", positive_int, in_extra=False),
)


def settings(raw: object):  # type: ignore[no-untyped-def]
    s = read_settings({"hookbridge": raw}, conn_id="api", options=OPTIONS)
    # Values are parsed by the declared options, as the adapter base does.
    resolve(OPTIONS, {}, s.sections, conn_id="api")
    return s


def test_empty_extra_gives_no_overrides() -> None:
    s = read_settings({}, conn_id="api", options=OPTIONS)
    assert s.limits is None and s.retry is None
    values, sources = resolve(OPTIONS, {}, s.sections, conn_id="api")
    assert values == {"max_size": 4, "timeout": 30.0, "secret_only_in_code": None}
    assert set(sources.values()) == {"default"}


def test_argument_wins_over_extra_over_default() -> None:
    s = read_settings(
        {"hookbridge": {"pool": {"max_size": 9}, "timeout": 2}}, conn_id="api", options=OPTIONS
    )
    values, sources = resolve(OPTIONS, {"timeout": 5.0}, s.sections, conn_id="api")
    assert values["max_size"] == 9 and sources["max_size"] == "extra"
    assert values["timeout"] == 5.0 and sources["timeout"] == "argument"


def test_an_option_not_allowed_in_the_extra_is_an_unknown_key() -> None:
    with pytest.raises(ConfigurationError) as info:
        settings({"secret_only_in_code": 3})
    assert info.value.field == "hookbridge.secret_only_in_code"


def test_full_settings() -> None:
    s = settings(
        {
            "rate": "100/s",
            "burst": 5,
            "max_concurrency": 7,
            "retry": {"attempts": 4, "deadline": 30},
            "pool": {"max_size": 3},
            "timeout": 2.5,
        }
    )
    assert s.limits is not None and s.limits.max_concurrency == 7 and s.limits.burst == 5
    assert s.retry is not None and s.retry.attempts == 4 and s.retry.deadline == 30
    assert s.sections["pool"] == {"max_size": 3}
    assert s.sections[""] == {"timeout": 2.5}


def test_json_string_value_is_accepted() -> None:
    s = read_settings({"hookbridge": '{"rate": "10/min"}'}, conn_id="api")
    assert s.limits is not None


@pytest.mark.parametrize(
    ("raw", "field", "hint"),
    [
        ({"rate": "fast"}, "hookbridge.rate", "100/s"),
        ({"burst": 0, "rate": "1/s"}, "hookbridge.burst", "burst"),
        ({"nope": 1}, "hookbridge.nope", "valid keys"),
        ({"retry": {"attempts": 0}}, "hookbridge.retry.attempts", "attempts"),
        ({"retry": {"tries": 3}}, "hookbridge.retry.tries", "valid keys"),
        ({"retry": 3}, "hookbridge.retry", "JSON object"),
        ({"pool": {"max_size": "big"}}, "hookbridge.pool.max_size", "whole number"),
        ({"pool": {"max_size": True}}, "hookbridge.pool.max_size", "whole number"),
        ({"timeout": "slow"}, "hookbridge.timeout", "seconds"),
        ([1, 2], "hookbridge", "JSON object"),
        ("{not json", "hookbridge", "not JSON"),
    ],
)
def test_bad_values_name_conn_id_and_key(raw: object, field: str, hint: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings(raw)
    message = str(info.value)
    assert "conn_id 'api'" in message
    assert info.value.field == field
    assert hint in message
