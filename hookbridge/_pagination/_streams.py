"""What an adapter's ``pages()``/``items()`` return: a page or item stream with two forms.

``async for`` fetches one page at a time in the caller's task (no background work); ``async with``
is needed for ``prefetch > 0``, whose prefetching task belongs to the block. The keyword options
every adapter's ``pages()``/``items()`` take are declared once, in :class:`PageOptions`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from functools import partial
from typing import Any, Generic, TypedDict, TypeVar

from .._errors import UsageError
from ._hosts import HostPolicy
from ._paginate import _aclose, _Pager, _pager, _pages, _prefetch_pager, iter_items
from ._request import Page, PageRequest, PageResponse
from ._strategies import Strategy

__all__ = ["ItemStream", "PageOptions", "PageStream"]

T = TypeVar("T")


class PageOptions(TypedDict, total=False):
    """The keyword options of every adapter's ``pages()`` and ``items()``.

    - ``max_pages``, ``max_items``: stop after that many (``max_items`` cuts the last page; its
      cursor then resumes inside it);
    - ``cursor``: a ``Page.cursor`` to resume right after that page;
    - ``allowed_hosts``: hosts besides the adapter's own that next links may lead to;
    - ``prefetch``: pages fetched ahead in a background task (needs ``async with``).
    """

    max_pages: int | None
    max_items: int | None
    cursor: Mapping[str, Any] | None
    allowed_hosts: Collection[str] | None
    prefetch: int


class PageStream(Generic[T]):
    """The pages of a paginated resource: async-iterable, and an async context manager.

    ``fetch`` sends one :class:`PageRequest` (through the adapter's ``call``) and returns a
    :class:`PageResponse`; ``first`` builds the first request when iteration starts (so that a
    closed adapter is reported there); ``hosts`` is the adapter's :class:`HostPolicy`.
    """

    def __init__(
        self,
        fetch: Callable[[PageRequest], Awaitable[PageResponse]],
        first: Callable[[], PageRequest],
        strategy: Strategy,
        *,
        hosts: HostPolicy | None = None,
        max_pages: int | None = None,
        max_items: int | None = None,
        cursor: Mapping[str, Any] | None = None,
        allowed_hosts: Collection[str] | None = None,
        prefetch: int = 0,
    ) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise UsageError(
                f"prefetch must be an integer >= 0, got {prefetch!r}", argument="prefetch"
            )
        self._fetch = fetch
        self._first = first
        self._strategy = strategy
        self._hosts = hosts
        self._max_pages = max_pages
        self._max_items = max_items
        self._cursor = cursor
        self._allowed_hosts = allowed_hosts
        self._prefetch = prefetch
        self._entered: Any = None
        self._iterator: AsyncIterator[Page[T]] | None = None

    def _loop(self, first: PageRequest) -> _Pager:
        return _pager(
            self._fetch,
            first,
            self._strategy,
            max_pages=self._max_pages,
            max_items=self._max_items,
            allowed_hosts=self._allowed_hosts,
            cursor=self._cursor,
            hosts=self._hosts,
        )

    def _source(self) -> AsyncIterator[Page[T]]:
        first = self._first()
        return _pages(partial(self._loop, first))

    def __aiter__(self) -> AsyncIterator[Page[T]]:
        if self._prefetch:
            raise UsageError(
                "pages(..., prefetch=n) fetches in a background task, which needs a block: write "
                "`async with api.pages(..., prefetch=n) as pages: async for page in pages: ...`",
                argument="prefetch",
            )
        return self._source()

    async def __aenter__(self) -> AsyncIterator[Page[T]]:
        pages, _ = await self._enter(start_later=False)
        return pages

    async def _enter(
        self, *, start_later: bool
    ) -> tuple[AsyncIterator[Page[T]], Callable[[], None] | None]:
        """Enter the block: the pages, and what starts prefetching (None without prefetch).

        Page 1 is fetched by the first receive, in the caller's task; the prefetching task
        starts as it arrives, or with ``start_later`` when the returned function is called.
        """
        if self._entered is not None or self._iterator is not None:
            raise UsageError("this page stream was already entered; call pages() again")
        if not self._prefetch:
            self._iterator = self._source()
            return self._iterator, None
        manager = _prefetch_pager(
            lambda: self._loop(self._first()), self._prefetch, start_later=start_later
        )
        stream = await manager.__aenter__()
        self._entered = manager
        return aiter(stream), stream.start

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        if self._entered is not None:
            return await self._entered.__aexit__(*exc_info)  # type: ignore[no-any-return]
        iterator, self._iterator = self._iterator, None
        await _aclose(iterator)
        return None


class ItemStream(Generic[T]):
    """The items of a :class:`PageStream`, flattened; the same two forms.

    Memory does not grow with the number of pages: about two pages at the peak (``prefetch``
    more with prefetch), so it can feed a fan-out over millions of items.
    """

    def __init__(self, pages: PageStream[T]) -> None:
        self._pages = pages
        self._iterator: AsyncIterator[T] | None = None

    def __aiter__(self) -> AsyncIterator[T]:
        return iter_items(self._pages.__aiter__())

    async def __aenter__(self) -> AsyncIterator[T]:
        pages, start_prefetching = await self._pages._enter(start_later=True)
        self._iterator = _flatten(pages, start_prefetching)
        return self._iterator

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        iterator, self._iterator = self._iterator, None
        await _aclose(iterator)
        return await self._pages.__aexit__(*exc_info)


async def _flatten(
    pages: AsyncIterator[Page[T]], start_prefetching: Callable[[], None] | None
) -> AsyncIterator[T]:
    # Unlike iter_items, does not close ``pages``: the PageStream block owns it.
    async for page in pages:
        for item in page.items:
            yield item
            if start_prefetching is not None:
                # The first item is out: starting the prefetching task was not part of its wait.
                start_prefetching()
                start_prefetching = None
