"""The page loop (``paginate``), flattening to items, and prefetching in an owned task."""

from __future__ import annotations

from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Mapping,
)
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._checks import is_count
from .._errors import (
    ConfigurationError,
    MalformedResponse,
    redact,
)
from .._groups import owned_task_group
from ._hosts import HostPolicy
from ._json import _MISSING
from ._request import Page, PageRequest, PageResponse, _parse_cursor
from ._strategies import Strategy, _url

__all__ = ["iter_items", "paginate", "prefetch"]

T = TypeVar("T")

# Closing a page source runs under a shield; a source that hangs in its cleanup is abandoned.
_CLOSE_TIMEOUT = 5.0
# Page requests remembered to detect a next link back to an earlier page (a loop A -> B -> A).
# Bounded, so a stream of millions of pages keeps constant memory; a loop longer than this is
# left to max_pages.
_RECENT_PAGES = 64

# --------------------------------------------------------------------------------------------
# The page stream


class _CachedResponse:
    """Decodes the body once for both strategy calls; everything else goes to the response."""

    def __init__(self, response: PageResponse) -> None:
        self._response = response
        self._body: Any = _MISSING

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def url(self) -> str:
        return self._response.url

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    def json(self) -> Any:
        if self._body is _MISSING:
            self._body = self._response.json()
        return self._body

    def __getattr__(self, name: str) -> Any:
        # A pagination_function written for requests.Response reads status_code, text, ...
        return getattr(self._response, name)


def _check_limit(value: int | None, name: str) -> None:
    if value is not None and not is_count(value):
        raise ConfigurationError(f"{name} must be a positive integer or None, got {value!r}")


async def paginate(
    fetch: Callable[[PageRequest], Awaitable[PageResponse]],
    first: PageRequest,
    strategy: Strategy,
    *,
    max_pages: int | None = None,
    max_items: int | None = None,
    allowed_hosts: Collection[str] | None = None,
    cursor: Mapping[str, Any] | None = None,
    hosts: HostPolicy | None = None,
) -> AsyncGenerator[Page[Any], None]:
    """Fetch pages one at a time (no background task) and yield them with their cursors.

    ``cursor`` (a ``Page.cursor``) resumes right after that page; ``first`` is still needed: its
    origin is where links may lead (plus ``allowed_hosts``: names, or ``host:port``), and its
    headers are sent again (a cursor holds none). Every URL is checked before it is fetched, by
    ``hosts`` (the adapter's :class:`HostPolicy`) or else one built from ``first``'s origin.
    ``max_items`` cuts the last page (its cursor then resumes inside it); ``max_pages`` stops
    after that many pages.
    """
    pager = _pager(
        fetch,
        first,
        strategy,
        max_pages=max_pages,
        max_items=max_items,
        allowed_hosts=allowed_hosts,
        cursor=cursor,
        hosts=hosts,
    )
    while (page := await pager.next()) is not None:
        yield page


async def _pages(make: Callable[[], _Pager]) -> AsyncGenerator[Page[Any], None]:
    """``paginate`` for a page loop that ``make`` builds (and checks) when iteration starts."""
    pager = make()
    while (page := await pager.next()) is not None:
        yield page


def _pager(
    fetch: Callable[[PageRequest], Awaitable[PageResponse]],
    first: PageRequest,
    strategy: Strategy,
    *,
    max_pages: int | None,
    max_items: int | None,
    allowed_hosts: Collection[str] | None,
    cursor: Mapping[str, Any] | None,
    hosts: HostPolicy | None,
) -> _Pager:
    """Check ``paginate``'s arguments and return its page loop, at the first page."""
    _check_limit(max_pages, "max_pages")
    _check_limit(max_items, "max_items")
    if isinstance(allowed_hosts, str):
        raise ConfigurationError(
            f"allowed_hosts must be a list of host names, got the string {allowed_hosts!r}; "
            f"write allowed_hosts=[{allowed_hosts!r}]",
            field="allowed_hosts",
        )
    guard = HostPolicy(first.url, allowed_hosts) if hosts is None else hosts.extend(allowed_hosts)
    if cursor is None:
        request, skip = strategy.prepare(first), 0
    else:
        request, skip = _parse_cursor(cursor)
        own = {name.lower() for name in request.headers}
        headers = {k: v for k, v in first.headers.items() if k.lower() not in own}
        request = replace(request, headers={**headers, **request.headers})
    return _Pager(fetch, request, skip, strategy, guard, max_pages, max_items)


def _redacted(error: MalformedResponse, guard: HostPolicy) -> MalformedResponse:
    """``error`` with the adapter's secrets taken out of its reason and URL."""
    secrets = guard.secrets
    if not secrets:
        return error
    # A server may echo a credential into a link: the core strategies do not know the adapter's
    # secrets, so the error is redacted here (and not chained to the original).
    url = None if error.url is None else redact(error.url, secrets)
    redacted = MalformedResponse(redact(error.reason, secrets), url=url)
    redacted.__suppress_context__ = True
    return redacted


class _After:
    """What follows a fetched page: its next request, worked out once, when first wanted.

    Wanted by the page loop when the next page is asked for, or by ``page.cursor``; never before
    the page is handed over, so the first item does not wait for the next link to be read,
    resolved and checked. Once worked out, the page's response is let go.
    """

    __slots__ = ("_error", "_request", "_work", "page_request")

    def __init__(
        self,
        strategy: Strategy,
        request: PageRequest,
        response: PageResponse,
        items: list[Any],
        guard: HostPolicy,
    ) -> None:
        self._work: tuple[Strategy, PageResponse, list[Any], HostPolicy] | None = (
            strategy,
            response,
            items,
            guard,
        )
        self._request: PageRequest | None = None
        self._error: MalformedResponse | None = None
        #: The request of the page this follows (the loop check remembers it).
        self.page_request = request

    def request(self) -> PageRequest | None:
        """The next page's request, None after the last page; MalformedResponse for a bad link."""
        work, self._work = self._work, None
        if work is not None:
            strategy, response, items, guard = work
            try:
                self._request = strategy.next_request(self.page_request, response, items)
            except MalformedResponse as error:
                self._error = _redacted(error, guard)
        if self._error is not None:
            raise self._error
        return self._request

    def cursor(self) -> dict[str, Any] | None:
        following = self.request()
        return None if following is None else following.to_cursor()


class _Pager:
    """The page loop: each ``next()`` fetches one page, None once the stream has ended.

    A plain object rather than a generator, so that its pages may be fetched by different tasks
    one after the other: a ``PageStream`` with prefetch fetches the first page in the consumer's
    task (no handoff before the first item) and the rest in its prefetching task, from the same
    state (page numbers, limits, the loop check).
    """

    def __init__(
        self,
        fetch: Callable[[PageRequest], Awaitable[PageResponse]],
        request: PageRequest,
        skip: int,
        strategy: Strategy,
        guard: HostPolicy,
        max_pages: int | None,
        max_items: int | None,
    ) -> None:
        self._fetch = fetch
        #: The next page's request when known; None once the stream has ended.
        self._request: PageRequest | None = request
        #: The page before the next one, whose next request is not worked out yet.
        self._after: _After | None = None
        self._skip = skip
        self._strategy = strategy
        self._guard = guard
        self._max_pages = max_pages
        self._max_items = max_items
        self._number = self._delivered = 0
        self._page_url = ""
        # (page number, identity) of the most recent requests, newest last.
        self._recent: deque[tuple[int, tuple[Any, ...]]] = deque(maxlen=_RECENT_PAGES)

    def more(self) -> bool:
        """Whether ``next()`` may fetch another page (works out a pending next link to know).

        A next link that is no good counts as more: ``next()`` raises its error.
        """
        after = self._after
        if after is not None:
            try:
                if after.request() is None:
                    self._after = None
            except MalformedResponse:
                return True
        return self._request is not None or self._after is not None

    def __aiter__(self) -> _Pager:
        return self

    async def __anext__(self) -> Page[Any]:
        page = await self.next()
        if page is None:
            raise StopAsyncIteration
        return page

    async def next(self) -> Page[Any] | None:
        """The next page, or None after the last; an error (or a cancellation) ends the stream."""
        request, self._request = self._request, None
        after, self._after = self._after, None
        if after is not None:
            request = after.request()
            if request is None:
                return None
            self._recent.append((self._number, after.page_request._identity()))
        if request is None:
            return None
        try:
            return await self._page(request)
        except MalformedResponse as error:
            redacted = _redacted(error, self._guard)
            if redacted is error:
                raise  # no secrets to take out: the error as raised, with its cause
            raise redacted from None

    async def _page(self, request: PageRequest) -> Page[Any]:
        number = self._number
        if number:
            # Checked when the page is asked for, so that the page before it was delivered.
            identity = request._identity()
            for earlier, seen in self._recent:
                if seen == identity:
                    again = "as the next one" if earlier == number else f"of page {earlier}"
                    raise MalformedResponse(
                        f"the server sent the same page request {again} again after page "
                        f"{number} (a pagination loop); stopping instead of looping forever "
                        "(check the pagination strategy, or use max_pages)",
                        url=self._page_url,
                    )
        self._guard.check(request.url)
        response = _CachedResponse(await self._fetch(request))
        strategy = self._strategy
        items = strategy.page_items(response)
        after = _After(strategy, request, response, items, self._guard)
        self._number = number = number + 1
        start, self._skip = self._skip, 0
        shown = items[start:]
        page_url = _url(response) or request.url
        delivered, max_items = self._delivered, self._max_items
        if max_items is not None and delivered + len(shown) >= max_items:
            take = max_items - delivered
            if take < len(shown):
                # Cut inside this page: resuming refetches it and skips what was delivered.
                cut = partial(request.to_cursor, skip=start + take)
                return Page(number, shown[:take], response.status, page_url, position=cut)
            return Page(number, shown, response.status, page_url, position=after.cursor)
        self._delivered = delivered + len(shown)
        if self._max_pages is None or number < self._max_pages:
            self._after = after
            self._page_url = page_url
        return Page(number, shown, response.status, page_url, position=after.cursor)


async def iter_items(pages: AsyncIterable[Page[T]]) -> AsyncGenerator[T, None]:
    """Yield the items of every page; closing this iterator closes ``pages``."""
    try:
        async for page in pages:
            for item in page.items:
                yield item
    finally:
        await _aclose(pages)


async def _aclose(source: object) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await aclose()


class _Failure:
    """What the producer hands to the consumer: the error that ended the page stream."""

    error: BaseException | None = None


class _PageStream(ObjectReceiveStream[T]):
    """The receiving end of ``prefetch``: after the last page, raises the producer's error."""

    def __init__(self, inner: MemoryObjectReceiveStream[T], failure: _Failure) -> None:
        self._inner = inner
        self._failure = failure

    async def receive(self) -> T:
        try:
            return await self._inner.receive()
        except anyio.EndOfStream:
            error, self._failure.error = self._failure.error, None
            if error is None:
                raise
        # Raised outside the except block, so the error does not chain to EndOfStream.
        raise error

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _produce(
    pages: AsyncIterator[Page[T]] | Callable[[], AsyncIterator[Page[T]]],
    send: MemoryObjectSendStream[Page[T]],
    failure: _Failure,
) -> None:
    # The source is iterated and closed only in this task: an async generator must not
    # straddle the task group boundary.
    source = pages() if callable(pages) else pages
    try:
        with send:
            async for page in source:
                try:
                    await send.send(page)
                except anyio.BrokenResourceError:
                    return  # the consumer closed its end: nobody wants more pages
                # Let the consumer start on the page before this task spends CPU on the
                # next request (building one costs a millisecond in some clients): the
                # first item then comes one page's latency after the start, not later.
                await anyio.lowlevel.checkpoint()
    except Exception as exc:
        failure.error = exc
    finally:
        await _aclose(source)


def _check_prefetch(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ConfigurationError(f"prefetch must be an integer >= 0, got {n!r}", field="prefetch")


@asynccontextmanager
async def prefetch(
    pages: AsyncIterator[Page[T]] | Callable[[], AsyncIterator[Page[T]]], n: int
) -> AsyncIterator[ObjectReceiveStream[Page[T]]]:
    """Fetch up to ``n`` pages ahead of the consumer in a task this context manager owns.

    At most ``n + 1`` fetched pages wait for the consumer (``n`` buffered, one being handed
    over). An error that ends the stream is raised, unchanged, by the receive that follows the
    last good page; a consumer that stops early never sees errors of pages it did not ask for.
    Leaving the block cancels the producer and closes the page source.
    """
    _check_prefetch(n)
    send, receive = anyio.create_memory_object_stream[Page[T]](max_buffer_size=n)
    failure = _Failure()
    with send, receive:
        async with owned_task_group() as tg:
            tg.start_soon(_produce, pages, send, failure)
            yield _PageStream(receive, failure)


class _PrefetchingPages(ObjectReceiveStream[Page[Any]]):
    """The receiving end of ``_prefetch_pager``: the first receive fetches page 1 itself.

    Page 1 comes in the consumer's own task, with no task start and no handoff before it: the
    first item costs what one page costs. The producer then fetches the pages after it from
    the same page loop (numbers, limits and the loop check carry on) while the consumer works
    on page 1. It starts as page 1 arrives, before it is returned; or, with ``start_later``,
    when ``start()`` is called (an item stream calls it once the first item is handed over, so
    that starting a task is not part of the first item's wait) or at the next receive.
    """

    def __init__(
        self, make: Callable[[], _Pager], n: int, tg: TaskGroup, *, start_later: bool
    ) -> None:
        self._make: Callable[[], _Pager] | None = make
        self._n = n
        self._tg = tg
        self._start_later = start_later
        self._pager: _Pager | None = None  # fetched page 1; its producer is not started yet
        self._send: MemoryObjectSendStream[Page[Any]] | None = None
        self._receive: MemoryObjectReceiveStream[Page[Any]] | None = None
        self._rest: _PageStream[Page[Any]] | None = None
        self._closed = False

    async def receive(self) -> Page[Any]:
        if self._pager is not None:
            self.start()
        if self._rest is not None:
            return await self._rest.receive()
        if self._closed:
            raise anyio.ClosedResourceError
        make, self._make = self._make, None
        if make is None:
            raise anyio.EndOfStream  # page 1 was the last one, or it failed
        try:
            pager = make()
            page = await pager.next()
        except anyio.get_cancelled_exc_class():
            # As when the producer fetched page 1: a cancelled receive loses no page.
            self._make = make
            raise
        if page is None:  # pragma: no cover - a page loop always has a first page
            raise anyio.EndOfStream
        self._pager = pager
        if not self._start_later:
            self.start()
        return page

    def start(self) -> None:
        """Start fetching the pages after page 1 (once page 1 has been received)."""
        pager, self._pager = self._pager, None
        if pager is None or self._closed or not pager.more():
            return  # a one-page stream starts no task
        self._send, self._receive = anyio.create_memory_object_stream[Page[Any]](self._n)
        failure = _Failure()
        self._rest = _PageStream(self._receive, failure)
        self._tg.start_soon(_produce, pager, self._send, failure)

    def close(self) -> None:
        self._closed, self._make, self._pager = True, None, None
        for stream in (self._send, self._receive):
            if stream is not None:
                stream.close()

    async def aclose(self) -> None:
        self.close()


@asynccontextmanager
async def _prefetch_pager(
    make: Callable[[], _Pager], n: int, *, start_later: bool = False
) -> AsyncIterator[_PrefetchingPages]:
    """``prefetch`` for a page loop that ``make`` builds at the first receive (``PageStream``).

    Errors and limits as ``prefetch``; unlike it, page 1 is fetched in the consumer's task.
    ``start_later``: see :class:`_PrefetchingPages`.
    """
    _check_prefetch(n)
    stream: _PrefetchingPages | None = None
    try:
        async with owned_task_group() as tg:
            stream = _PrefetchingPages(make, n, tg, start_later=start_later)
            yield stream
    finally:
        if stream is not None:
            stream.close()
