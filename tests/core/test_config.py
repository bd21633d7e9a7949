"""The connection extra's "hookbridge" key: validation names the conn_id and the key."""

from __future__ import annotations

import pytest

from hookbridge import ConfigurationError
from hookbridge._config import read_settings

POOL_KEYS = {"max_size": int}
ADAPTER_KEYS = {"timeout": (int, float)}


def settings(raw: object):  # type: ignore[no-untyped-def]
    return read_settings(
        {"hookbridge": raw}, conn_id="api", pool_keys=POOL_KEYS, adapter_keys=ADAPTER_KEYS
    )


def test_empty_extra_gives_no_overrides() -> None:
    s = read_settings({}, conn_id="api")
    assert s.limits is None and s.retry is None and s.pool == {} and s.adapter_options == {}


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
    assert s.pool == {"max_size": 3}
    assert s.adapter_options == {"timeout": 2.5}


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
        ({"pool": {"max_size": "big"}}, "hookbridge.pool.max_size", "int"),
        ({"pool": {"max_size": True}}, "hookbridge.pool.max_size", "int"),
        ({"timeout": "slow"}, "hookbridge.timeout", "int/float"),
        ([1, 2], "hookbridge", "JSON object"),
        ("{not json", "hookbridge", "not JSON"),
    ],
)
def test_bad_values_name_conn_id_and_key(raw: object, field: str, hint: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings(raw)
    message = str(info.value)
    assert "conn_id 'api'" in message
    assert info.value.field is not None and info.value.field.startswith(field)
    assert hint in message
