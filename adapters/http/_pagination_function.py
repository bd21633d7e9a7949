"""``PaginationFunction``: HttpOperator's ``pagination_function`` as a pagination strategy.

HTTP's alone (it joins endpoints with HttpHook's URL rule), so it lives with the HTTP adapter,
built from the SDK's public pieces like any third-party strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

from hookbridge import ConfigurationError, PageRequest, PageResponse
from hookbridge.adapter import ItemsAt, JsonPath, check_path, is_credential_header, next_url

__all__ = ["PaginationFunction"]

_FUNCTION_KEYS = frozenset({"endpoint", "data", "json", "headers", "params"})


@dataclass(frozen=True)
class PaginationFunction(ItemsAt):
    """A callable like Airflow ``HttpOperator``'s ``pagination_function(response) -> dict | None``.

    The dict may hold ``endpoint``, ``params``, ``data``, ``json`` and ``headers``, merged into
    the previous request as ``HttpOperator`` does: ``endpoint`` replaces the URL (joined to
    ``base_url`` the way HttpHook joins it, or resolved against the page URL when ``base_url`` is
    None); mappings are merged with ``dict.update``; for a GET, ``data`` is the query, as in
    HttpHook. A falsy result ends the stream. ``cursor_headers`` names headers the function sets
    that must survive in a cursor (credential-like names are refused).
    """

    fn: Callable[[Any], Any]
    _: KW_ONLY
    items: JsonPath | None = None
    base_url: str | None = None
    cursor_headers: Collection[str] = ()

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConfigurationError("fn must be callable", field="pagination_function")
        object.__setattr__(self, "items", check_path(self.items, "items", optional=True))
        if isinstance(self.cursor_headers, str):
            raise ConfigurationError(
                "cursor_headers must be a list of names", field="cursor_headers"
            )
        names = frozenset(str(name).lower() for name in self.cursor_headers)
        secret = sorted(name for name in names if is_credential_header(name))
        if secret:
            raise ConfigurationError(
                f"{secret} look like credentials and never go into a cursor; the adapter "
                "sends credentials with every request",
                field="cursor_headers",
            )
        object.__setattr__(self, "cursor_headers", names)

    def next_request(
        self, request: PageRequest, response: PageResponse, items: Sequence[Any]
    ) -> PageRequest | None:
        result = self.fn(response)
        if not result:
            return None
        if not isinstance(result, Mapping):
            raise ConfigurationError(
                f"the pagination function must return a dict or None, got {type(result).__name__}",
                field="pagination_function",
            )
        unknown = set(result) - _FUNCTION_KEYS
        if unknown:
            raise ConfigurationError(
                f"the pagination function returned unsupported keys {sorted(map(str, unknown))}; "
                f"supported: {sorted(_FUNCTION_KEYS)} (set transport options on the adapter)",
                field="pagination_function",
            )
        url = request.url
        endpoint = result.get("endpoint")
        if endpoint:
            if not isinstance(endpoint, str):
                raise _bad_result("endpoint", endpoint)
            url = next_url(request.url, endpoint, self._join)
        params = dict(request.params)
        params.update(_mapping(result, "params"))
        data, json = request.data, request.json
        new_data = result.get("data")
        if new_data and request.method == "GET" and isinstance(new_data, Mapping):
            params.update(new_data)  # HttpHook sends a GET's data as its query
        elif isinstance(new_data, Mapping) and isinstance(data, Mapping):
            data = {**data, **new_data}
        elif new_data:
            data = new_data
        new_json = result.get("json")
        if isinstance(new_json, Mapping) and isinstance(json, Mapping):
            json = {**json, **new_json}
        elif new_json is not None:
            json = new_json
        new_headers = _mapping(result, "headers")
        if not all(isinstance(value, str) for value in new_headers.values()):
            raise _bad_result("headers", new_headers)
        headers = {**request.headers, **new_headers}
        keep = request.cursor_headers | {
            name.lower() for name in new_headers if name.lower() in self.cursor_headers
        }
        return replace(
            request,
            url=url,
            params=params,
            headers=headers,
            data=data,
            json=json,
            cursor_headers=frozenset(keep),
        )

    def _join(self, current: str, endpoint: str) -> str:
        if urlsplit(endpoint).scheme or self.base_url is None:
            return urljoin(current, endpoint)
        # HttpHook's rule: base URL + "/" + endpoint unless one of them has the slash already.
        if self.base_url and not self.base_url.endswith("/") and not endpoint.startswith("/"):
            return f"{self.base_url}/{endpoint}"
        return self.base_url + endpoint


def _mapping(result: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = result.get(key) or {}
    if not isinstance(value, Mapping) or not all(isinstance(name, str) for name in value):
        raise _bad_result(key, value)
    return value


def _bad_result(key: str, value: Any) -> ConfigurationError:
    return ConfigurationError(
        f"the pagination function returned {key}={value!r:.80}, which is not usable here",
        field="pagination_function",
    )
