"""Pagination: strategies that find the next page, resumable cursors, page and item streams.

Transport-agnostic: an adapter passes a ``fetch`` coroutine function that sends one
``PageRequest`` and returns something satisfying ``PageResponse``; the adapter's ``HostPolicy``
decides which next links may be followed.
"""

from ._hosts import HostPolicy
from ._json import check_path, parse_link_header
from ._paginate import iter_items, paginate, prefetch
from ._request import JsonPath, Page, PageRequest, PageResponse, is_credential_header
from ._strategies import (
    CursorToken,
    ItemsAt,
    LinkHeader,
    NextLink,
    OffsetLimit,
    PageNumber,
    Strategy,
    items_at,
    next_url,
)
from ._streams import ItemStream, PageOptions, PageStream

__all__ = [
    "CursorToken",
    "HostPolicy",
    "ItemStream",
    "ItemsAt",
    "JsonPath",
    "LinkHeader",
    "NextLink",
    "OffsetLimit",
    "Page",
    "PageNumber",
    "PageOptions",
    "PageRequest",
    "PageResponse",
    "PageStream",
    "Strategy",
    "check_path",
    "is_credential_header",
    "items_at",
    "iter_items",
    "next_url",
    "paginate",
    "parse_link_header",
    "prefetch",
]
