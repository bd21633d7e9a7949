"""Delta queries: the changes of one round as a stream, then the delta link of the next round."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

from hookbridge import NextLink, PageRequest, PageResponse
from hookbridge.adapter import PageStream, next_url

__all__ = ["DeltaStream"]


class _DeltaLinks:
    """``@odata.nextLink`` paging that also notes the round's closing ``@odata.deltaLink``."""

    def __init__(self) -> None:
        self._next = NextLink(link="@odata.nextLink", items="value")
        self.delta_link: str | None = None

    def prepare(self, request: PageRequest) -> PageRequest:
        return request

    def page_items(self, response: PageResponse) -> list[Any]:
        # The items first: NextLink turns a body that is not JSON into MalformedResponse, and
        # the parsed body is cached, so reading it again below cannot fail.
        items = self._next.page_items(response)
        body = response.json()
        link = body.get("@odata.deltaLink") if isinstance(body, dict) else None
        if isinstance(link, str) and link:
            # A link that is no URL ("http://[::1") is MalformedResponse, not a ValueError.
            self.delta_link = next_url(response.url, link, urljoin)
        return items

    def next_request(
        self, request: PageRequest, response: PageResponse, items: Sequence[Any]
    ) -> PageRequest | None:
        return self._next.next_request(request, response, items)


class DeltaStream:
    """The changes of a delta round: ``async for change in stream`` (or ``async with`` for
    prefetch); afterwards ``stream.delta_link`` is the link to store for the next round.

    ``delta_link`` stays None when the round did not end (an error, ``max_pages``, a consumer
    that stopped early): store it only once the stream was read to its end.
    """

    def __init__(self, make: Callable[[_DeltaLinks], PageStream[Any]]) -> None:
        self._strategy = _DeltaLinks()
        self._pages = make(self._strategy)
        self._iterator: AsyncGenerator[Any, None] | None = None
        self.delta_link: str | None = None

    async def _changes(self, pages: AsyncIterator[Any], owned: bool) -> AsyncGenerator[Any, None]:
        try:
            async for page in pages:
                for change in page.items:
                    yield change
            self.delta_link = self._strategy.delta_link
        finally:
            aclose = getattr(pages, "aclose", None)
            if owned and aclose is not None:
                await aclose()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._changes(self._pages.__aiter__(), owned=True)

    async def __aenter__(self) -> AsyncIterator[Any]:
        pages = await self._pages.__aenter__()
        self._iterator = self._changes(pages, owned=False)
        return self._iterator

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        iterator, self._iterator = self._iterator, None
        if iterator is not None:
            await iterator.aclose()
        return await self._pages.__aexit__(exc_type, exc, tb)
