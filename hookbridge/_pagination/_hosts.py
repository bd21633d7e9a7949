"""The host policy: which hosts may receive credentials, redirects and next-page requests."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .._errors import ConfigurationError, HostRefused, PaginationRefused, redact

__all__ = ["HostPolicy"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int | None

    def __str__(self) -> str:
        return f"{self.scheme}://{_host_port(self.host, self.port, self.scheme)}"


def _host_port(host: str, port: int | None, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{shown}:{port}"


class HostPolicy:
    """Which URLs may receive a request carrying the connection's credentials.

    One rule for every way a URL reaches an adapter: an absolute URL the caller passes, a
    redirect, a next-page link. Allowed: the base URL's origin (scheme, host and port, default
    ports filled in), and the hosts in ``allowed_hosts`` (``"host"`` for any port,
    ``"host:port"`` for one). A move from https to plain http is never allowed (it would send
    the credentials in clear).
    """

    def __init__(
        self,
        first_url: str,
        allowed_hosts: Collection[str] | None = (),
        *,
        secrets: Sequence[str] = (),
    ) -> None:
        #: The connection's secrets: URLs in refusals (and page errors) are redacted with them.
        self.secrets = tuple(secrets)
        parts = urlsplit(first_url)
        scheme, host = parts.scheme.lower(), parts.hostname
        if not scheme or not host:
            raise ConfigurationError(
                f"the first page URL must be absolute, got {redact(first_url)!r}", field="url"
            )
        try:
            port = parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError as exc:
            raise ConfigurationError(f"bad port in {redact(first_url)!r}", field="url") from exc
        self.origin = _Origin(scheme, host, port)
        self.any_port: set[str] = set()
        self.with_port: set[tuple[str, int]] = set()
        if isinstance(allowed_hosts, str):
            raise ConfigurationError(
                f"allowed_hosts must be a list of host names, got the string {allowed_hosts!r}; "
                f"write allowed_hosts=[{allowed_hosts!r}]",
                field="allowed_hosts",
            )
        for entry in allowed_hosts or ():
            self._allow(entry)

    def _allow(self, entry: Any) -> None:
        problem = f"not a host or host:port: {entry!r}"
        if not isinstance(entry, str) or not entry or any(c in entry for c in "/@?# "):
            raise ConfigurationError(problem, field="allowed_hosts")
        try:
            parts = urlsplit("//" + entry)
            host, port = parts.hostname, parts.port
        except ValueError:
            raise ConfigurationError(problem, field="allowed_hosts") from None
        if not host:
            raise ConfigurationError(problem, field="allowed_hosts")
        if port is None:
            self.any_port.add(host)
        else:
            self.with_port.add((host, port))

    def extend(self, allowed_hosts: Collection[str] | None) -> HostPolicy:
        """A policy that also allows ``allowed_hosts`` (for one call's extra hosts)."""
        if not allowed_hosts:
            return self
        policy = HostPolicy(str(self.origin), allowed_hosts, secrets=self.secrets)
        policy.any_port |= self.any_port
        policy.with_port |= self.with_port
        return policy

    def problem(self, url: str, *, what: str = "the request") -> str | None:
        """Why ``url`` may not receive the credentials, or None when it may."""
        try:
            self.check(url, what=what)
        except HostRefused as refused:
            return str(refused)
        return None

    def allows(self, url: str) -> bool:
        """Whether ``url`` may receive the connection's credentials."""
        return self.problem(url) is None

    def _shown(self, url: str) -> str:
        return redact(url, self.secrets)

    def check(
        self,
        url: str,
        *,
        what: str = "the next page",
        error: type[HostRefused] = PaginationRefused,
    ) -> None:
        """Raise ``error`` (a :class:`~hookbridge.HostRefused`) unless ``url`` is allowed."""
        origin = self.origin
        try:
            parts = urlsplit(url)
            scheme, host = parts.scheme.lower(), parts.hostname
            port = parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError:
            raise error(
                f"Refusing to fetch {what}: {self._shown(url)!r} is not a valid URL",
                url=self._shown(url),
            ) from None
        if origin.scheme == "https" and scheme != "https":
            raise error(
                f"Refusing to fetch {what} at {self._shown(url)}: {origin} is https and "
                f"this URL switches to {scheme or 'no scheme'}. hookbridge never follows a link "
                "that drops TLS; if the API really does this, report it to its provider.",
                url=self._shown(url),
            )
        if scheme not in (origin.scheme, "https") or not host:
            raise error(
                f"Refusing to fetch {what} at {self._shown(url)}: only {origin.scheme} URLs "
                "are followed.",
                url=self._shown(url),
            )
        if _Origin(scheme, host, port) == origin or host in self.any_port:
            return
        if port is not None and (host, port) in self.with_port:
            return
        suggestion = _host_port(host, port, scheme)
        raise error(
            f"Refusing to fetch {what} at {self._shown(url)}: it is not on {origin}, the "
            "connection's origin, and the connection's credentials go with every request. If "
            f"you trust that host, pass allowed_hosts=[{suggestion!r}].",
            url=self._shown(url),
        )
