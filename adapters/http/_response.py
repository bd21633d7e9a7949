"""The HTTP adapter's response objects: a read-only buffered ``Response`` and a streamed body."""

from __future__ import annotations

import json as _json
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from hookbridge import HookBridgeError
from hookbridge.adapter import redact

from ._translate import FOREIGN_ERRORS, translate_error

__all__ = ["Response", "StreamedResponse"]


class Response:
    """A complete HTTP response, read before its connection went back to the pool.

    Read-only. Mirrors the parts of ``requests.Response`` that are cheap to mirror (``status_code``,
    ``content``, ``text``, ``json()``, ``ok``, ``raise_for_status()``), so code written for
    ``HttpHook`` ports easily; ``headers`` is case-insensitive (a multidict: repeated headers keep
    every value, ``headers.getall("Link")``).
    """

    __slots__ = (
        "_content",
        "_headers",
        "_json",
        "_method",
        "_reason",
        "_secrets",
        "_status",
        "_text",
        "_url",
    )

    _NO_JSON: Any = object()

    def __init__(
        self,
        *,
        status: int,
        reason: str | None,
        headers: CIMultiDictProxy[str],
        url: str | URL,
        content: bytes,
        method: str,
        secrets: Sequence[str | None] = (),
    ) -> None:
        self._status = status
        self._reason = reason
        self._headers = headers
        self._url: str | URL = url  # str() on first use: most callers never read it
        self._content = content
        self._method = method
        self._secrets = secrets
        self._text: str | None = None
        self._json: Any = Response._NO_JSON

    @property
    def status(self) -> int:
        return self._status

    @property
    def status_code(self) -> int:
        """Alias of :attr:`status` (requests' name)."""
        return self._status

    @property
    def reason(self) -> str | None:
        return self._reason

    @property
    def ok(self) -> bool:
        return self._status < 400

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self._headers

    @property
    def url(self) -> str:
        """The final URL (after redirects)."""
        url = self._url
        if not isinstance(url, str):
            url = self._url = str(url)
        return url

    @property
    def method(self) -> str:
        return self._method

    @property
    def content(self) -> bytes:
        """The body as bytes."""
        return self._content

    @property
    def encoding(self) -> str:
        """The charset from Content-Type, else utf-8 (JSON's encoding)."""
        content_type = self._headers.get("Content-Type", "")
        for part in content_type.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip("\"' ")
        return "utf-8"

    @property
    def text(self) -> str:
        """The body decoded with :attr:`encoding` (undecodable bytes replaced), like requests."""
        if self._text is None:
            try:
                self._text = self._content.decode(self.encoding, errors="replace")
            except (LookupError, ValueError):
                # An unknown charset name in Content-Type, or a codec that refuses
                # errors="replace" (idna, punycode, undefined): the server's label is unusable.
                self._text = self._content.decode("utf-8", errors="replace")
        return self._text

    def json(self) -> Any:
        """The body parsed as JSON (parsed once; later calls return the same object).

        Raises ``json.JSONDecodeError`` (a ``ValueError``) when the body is not JSON.
        """
        if self._json is Response._NO_JSON:
            self._json = _json.loads(self._content)
        return self._json

    def raise_for_status(self) -> None:
        """Raise :class:`~hookbridge.RemoteStatusError` for a status >= 400 (requests' name)."""
        if self._status >= 400:
            from ._translate import status_error

            raise status_error(
                self._status,
                self._reason,
                self._method,
                self.url,
                self._headers,
                self._content,
                self._secrets,
            )

    def __bool__(self) -> bool:
        """Like requests: a response is truthy when its status is below 400."""
        return self._status < 400

    def __repr__(self) -> str:
        return f"<Response {self._status} {self._method} {_path(self.url, self._secrets)}>"


def _path(url: str, secrets: Sequence[str | None]) -> str:
    # The path only (a query string often carries a token), and redacted: a repr ends up in logs.
    return redact(urlsplit(url).path or "/", secrets)


class _Chunks:
    """``async for chunk in body.iter_chunks(size)``: a class, not an async generator, so that
    breaking out of the loop leaves nothing to finalize."""

    __slots__ = ("_owner", "_size")

    def __init__(self, owner: StreamedResponse, size: int) -> None:
        self._owner = owner
        self._size = size

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        owner = self._owner
        owner._check_open()
        try:
            chunk = await owner._response.content.read(self._size)
        except FOREIGN_ERRORS as exc:
            raise translate_error(exc, owner.method, owner.url, owner._secrets) from exc
        if not chunk:
            raise StopAsyncIteration
        owner.bytes_read += len(chunk)
        return chunk


class StreamedResponse:
    """A response whose body is read piece by piece inside ``async with adapter.stream(...)``.

    Valid only inside that block: leaving it (normally, by an error or by cancellation) releases
    the connection, or closes it when the body was not read to the end.
    """

    __slots__ = ("_closed", "_response", "_secrets", "bytes_read", "method")

    def __init__(
        self, response: aiohttp.ClientResponse, method: str, secrets: Sequence[str | None]
    ) -> None:
        self._response = response
        self._secrets = secrets
        self._closed = False
        self.method = method
        #: Body bytes handed out so far.
        self.bytes_read = 0

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def status_code(self) -> int:
        return self._response.status

    @property
    def reason(self) -> str | None:
        return self._response.reason

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self._response.headers

    @property
    def url(self) -> str:
        return str(self._response.url)

    @property
    def content_length(self) -> int | None:
        return self._response.content_length

    def iter_chunks(self, size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """Chunks of at most ``size`` bytes, as they arrive, until the end of the body."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        return _Chunks(self, size)

    async def read(self) -> bytes:
        """The rest of the body in memory; prefer :meth:`iter_chunks` for large bodies."""
        parts = [chunk async for chunk in self.iter_chunks()]
        return b"".join(parts)

    def _check_open(self) -> None:
        if self._closed:
            raise HookBridgeError(
                "the streamed body was used after its `async with adapter.stream(...)` block "
                "ended; read it inside the block."
            )

    def _release(self) -> None:
        self._closed = True
        # release() keeps the connection only when the body was read to the end; otherwise
        # aiohttp closes it, so no half-read socket goes back to the pool.
        self._response.release()

    def _abort(self) -> None:
        self._closed = True
        self._response.close()

    def __repr__(self) -> str:
        return (
            f"<StreamedResponse {self.status} {self.method} "
            f"{_path(self.url, self._secrets)} read={self.bytes_read}>"
        )
