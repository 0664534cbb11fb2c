"""Paginators: one class per kind of pagination, behind one small interface, each knowing when to stop.

A :class:`Paginator` says three things (after dlt's ``BasePaginator``, written for our pages):

* :meth:`~Paginator.next_request`: the request after a page, or ``None`` when that page was the
  last one (an empty page, ``has_more`` false, the total reached, no next cursor or link);
* :meth:`~Paginator.planned_requests`: every following request at once, when the first page
  tells how many there are (a total in the body or in a header such as ``X-Total-Count``, a
  ``rel="last"`` link), so they are fetched in parallel; :meth:`~Paginator.confirms_plan` then
  says whether the pages fetched are the ones the API meant (a Link header plan is a guess,
  checked against each page's own next link; a plan that does not hold is read again one page
  after the other);
* :meth:`~Paginator.expected_records`: the number of records the API announced, checked at the
  end (a total not reached is an error, or a warning with ``on_incomplete: warn``).

:func:`paginate` drives any paginator and keeps the rules that hold for every kind: the start
URL counts as seen; a request that was already sent (a repeated cursor or next URL) or a page
identical to the previous one stops with an error; ``max_pages`` caps the number of pages.

Write your own by subclassing :class:`Paginator` and pass an instance as ``pagination``::

    class EveryOtherDay(Paginator):
        def next_request(self, page, request):
            if page.frame.height == 0:
                return None
            return request.with_params(day=int(request.params["day"]) + 2)
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import IngestionError
from data_pipeline.core.secrets import redact_url

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextURLPaginator",
    "OffsetPaginator",
    "Page",
    "PageNumberPaginator",
    "PageRequest",
    "PaginationConfig",
    "Paginator",
    "SinglePagePaginator",
    "paginate",
    "query_value",
]

#: pages read at most unless ``max_pages`` says otherwise
DEFAULT_MAX_PAGES = 1000


@dataclass(frozen=True)
class PageRequest:
    """What to ask for: a URL, query parameters (merged into the URL's own) and a JSON body."""

    url: str
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None

    def with_params(self, **params: Any) -> PageRequest:
        return replace(self, params={**self.params, **params})

    def with_json(self, **values: Any) -> PageRequest:
        return replace(self, json={**(self.json or {}), **values})

    def key(self) -> str:
        """The request as one canonical text: the same key means the same request."""
        import httpx

        url = httpx.URL(self.url)
        merged = url.params.merge({k: query_value(v) for k, v in self.params.items()})
        query: list[tuple[str, Any]] = sorted(merged.multi_items())
        text = str(url.copy_with(query=None).copy_merge_params(query))
        if self.json is not None:
            text += " " + json.dumps(self.json, sort_keys=True, default=str)
        return text


@dataclass
class Page:
    """One response: its records as a frame, the parsed body (or None), headers, URL, digest,
    and the request it answers (set by :func:`paginate`)."""

    frame: pl.DataFrame
    body: Any
    headers: Mapping[str, str]
    url: str
    digest: bytes = b""
    request: PageRequest | None = None

    def value(self, path: str | None) -> Any:
        """The value at a dotted ``path`` of the body, or None."""
        return body_value(self.body, path)


def body_value(body: Any, path: str | None) -> Any:
    from data_pipeline.ingestion._common import FrameBody, select_path

    if body is None or not path:
        return None
    if isinstance(body, FrameBody):
        try:
            return body.get(path)
        except KeyError:
            return None
    try:
        return select_path(body, path)
    except KeyError:
        return None


def query_value(value: Any) -> Any:
    """A parameter value as a query string holds it (``true``/``false``, ``""`` for None)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return value


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- the interface --------------------------------------------------------------------------


class Paginator:
    """The base of every pagination kind: one page, nothing after it.

    Attributes a subclass may use: ``total_path`` / ``total_header`` (the number of records,
    in the body or a header) and ``has_more_path`` (a flag in the body, false on the last page).
    """

    kind: ClassVar[str] = "single"

    def __init__(
        self,
        *,
        total_path: str | None = None,
        total_header: str | None = None,
        has_more_path: str | None = None,
    ) -> None:
        self.total_path = total_path
        self.total_header = total_header
        self.has_more_path = has_more_path

    def first_request(self, request: PageRequest) -> PageRequest:
        """The first request (e.g. with the page size added)."""
        return request

    def next_request(self, page: Page, request: PageRequest) -> PageRequest | None:
        """The request after ``page`` (which answered ``request``), or None if it was the last."""
        return None

    def planned_requests(self, first: Page, request: PageRequest) -> list[PageRequest] | None:
        """Every request after the first, when the first page tells how many; else None."""
        return None

    def confirms_plan(self, pages: list[Page]) -> bool:
        """Whether ``pages`` (the first page and the planned ones, each with its ``request``)
        are the API's pages in order; False makes :func:`paginate` read them again one after
        the other. The planned requests of a total are exact: True."""
        return True

    def expected_records(self, first: Page) -> int | None:
        """The number of records the API announced (in the body or a header), or None."""
        value = first.value(self.total_path) if self.total_path else None
        if value is None and self.total_header:
            value = first.headers.get(self.total_header)
        return _int(value)

    def is_last(self, page: Page) -> bool:
        """True when ``page`` says it is the last one (empty, or ``has_more`` false)."""
        if page.frame.height == 0:
            return True
        if self.has_more_path:
            more = page.value(self.has_more_path)
            if isinstance(more, str):
                return more.strip().lower() in ("false", "0", "no", "")
            return not more
        return False

    def describe(self) -> str:
        """How this paginator moves (named in errors)."""
        return f"{self.kind} pagination"


class SinglePagePaginator(Paginator):
    """No pagination: one request."""


class _Numbered(Paginator):
    """Shared by offset and page number: a number in a query parameter that grows."""

    param: str
    limit: int | None
    limit_param: str | None

    def _size(self, first: Page) -> int:
        return int(self.limit or first.frame.height or 1)

    def _planned_count(self, first: Page) -> int | None:
        """How many pages there are in all (from a total), or None."""
        total = self.expected_records(first)
        if total is None:
            return None
        return max(1, math.ceil(total / self._size(first)))


class OffsetPaginator(_Numbered):
    """``?offset=0&limit=100``, then ``offset=100``, ... until an empty page or the total.

    The first offset is ``start``, else the ``offset_param`` value of the request's params,
    else 0. A total announced by the API counts from offset 0: reading from offset 50 of 100
    expects 50 records.

    Example:
        >>> OffsetPaginator(limit=100, total_header="X-Total-Count").describe()
        "offset pagination ('offset', 100 a page)"
    """

    kind = "offset"

    def __init__(
        self,
        *,
        limit: int = 100,
        offset_param: str = "offset",
        limit_param: str = "limit",
        start: int | None = None,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.limit, self.param, self.limit_param, self.start = (
            limit,
            offset_param,
            limit_param,
            start,
        )

    def first_request(self, request: PageRequest) -> PageRequest:
        offset = self.start
        if offset is None:
            offset = _int(request.params.get(self.param)) or 0
        return request.with_params(**{self.param: offset, str(self.limit_param): self.limit})

    def _total(self, page: Page) -> int | None:
        """The announced total: the end offset, as it counts from offset 0."""
        return super().expected_records(page)

    def next_request(self, page: Page, request: PageRequest) -> PageRequest | None:
        if self.is_last(page):
            return None
        offset = int(request.params[self.param]) + page.frame.height
        total = self._total(page)
        if total is not None and offset >= total:
            return None
        return request.with_params(**{self.param: offset})

    def planned_requests(self, first: Page, request: PageRequest) -> list[PageRequest] | None:
        total = self._total(first)
        if total is None:
            return None
        offset = int(request.params[self.param])
        size = self._size(first)
        return [request.with_params(**{self.param: o}) for o in range(offset + size, total, size)]

    def expected_records(self, first: Page) -> int | None:
        total = self._total(first)
        if total is None:
            return None
        offset = _int(first.request.params.get(self.param)) if first.request else None
        if offset is None:
            offset = self.start or 0
        return max(0, total - offset)

    def describe(self) -> str:
        return f"offset pagination ({self.param!r}, {self.limit} a page)"


class PageNumberPaginator(_Numbered):
    """``?page=1``, ``page=2``, ... until an empty page, ``has_more`` false, or the total.

    Example:
        >>> PageNumberPaginator(limit=50, limit_param="per_page").first_request(
        ...     PageRequest("https://api.example.com/items")).params
        {'page': 1, 'per_page': 50}
    """

    kind = "page"

    def __init__(
        self,
        *,
        page_param: str = "page",
        start: int = 1,
        limit: int | None = None,
        limit_param: str | None = "per_page",
        total_pages_path: str | None = None,
        total_pages_header: str | None = None,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.param, self.start = page_param, start
        self.limit, self.limit_param = limit, limit_param
        self.total_pages_path, self.total_pages_header = total_pages_path, total_pages_header

    def first_request(self, request: PageRequest) -> PageRequest:
        first = _int(request.params.get(self.param))
        extra: dict[str, Any] = {self.param: first if first is not None else self.start}
        if self.limit and self.limit_param:
            extra[self.limit_param] = self.limit
        return request.with_params(**extra)

    def _pages(self, first: Page) -> int | None:
        value = first.value(self.total_pages_path) if self.total_pages_path else None
        if value is None and self.total_pages_header:
            value = first.headers.get(self.total_pages_header)
        pages = _int(value)
        return pages if pages is not None else self._planned_count(first)

    def next_request(self, page: Page, request: PageRequest) -> PageRequest | None:
        if self.is_last(page):
            return None
        number = int(request.params[self.param])
        pages = self._pages(page)
        if pages is not None and number - self.start + 1 >= pages:
            return None
        return request.with_params(**{self.param: number + 1})

    def planned_requests(self, first: Page, request: PageRequest) -> list[PageRequest] | None:
        pages = self._pages(first)
        if pages is None:
            return None
        number = int(request.params[self.param])
        return [request.with_params(**{self.param: number + i}) for i in range(1, pages)]

    def describe(self) -> str:
        return f"page-number pagination ({self.param!r})"


class CursorPaginator(Paginator):
    """The next cursor from the body (``cursor_path``) sent as ``cursor_param``; stops without one.

    Example:
        >>> CursorPaginator(cursor_path="paging.next", limit=200).first_request(
        ...     PageRequest("https://api.example.com/events")).params
        {'limit': 200}
    """

    kind = "cursor"

    def __init__(
        self,
        *,
        cursor_path: str,
        cursor_param: str = "cursor",
        cursor_in: Literal["params", "body"] = "params",
        limit: int | None = None,
        limit_param: str = "limit",
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.cursor_path, self.cursor_param, self.cursor_in = cursor_path, cursor_param, cursor_in
        self.limit, self.limit_param = limit, limit_param

    def first_request(self, request: PageRequest) -> PageRequest:
        if not self.limit:
            return request
        if self.cursor_in == "body":
            return request.with_json(**{self.limit_param: self.limit})
        return request.with_params(**{self.limit_param: self.limit})

    def next_request(self, page: Page, request: PageRequest) -> PageRequest | None:
        if self.is_last(page):
            return None
        cursor = page.value(self.cursor_path)
        if cursor is None or cursor == "":
            return None
        if self.cursor_in == "body":
            return request.with_json(**{self.cursor_param: cursor})
        return request.with_params(**{self.cursor_param: cursor})

    def describe(self) -> str:
        return f"cursor pagination ({self.cursor_path!r})"


class _Linked(Paginator):
    """Shared by next URL and Link header: the next page is a URL the server gives."""

    limit: int | None
    limit_param: str

    def first_request(self, request: PageRequest) -> PageRequest:
        if self.limit:
            return request.with_params(**{self.limit_param: self.limit})
        return request

    def _target(self, page: Page) -> str | None:
        raise NotImplementedError

    def next_request(self, page: Page, request: PageRequest) -> PageRequest | None:
        if self.is_last(page):
            return None
        target = self._target(page)
        if not target:
            return None
        import httpx

        # the next URL carries its own query (page size included); the JSON body stays
        return PageRequest(str(httpx.URL(page.url).join(str(target))), {}, request.json)


class NextURLPaginator(_Linked):
    """The next page's URL from the body (``next_url_path``, default ``next``).

    Example:
        >>> NextURLPaginator(next_url_path="links.next").describe()
        "next-URL pagination ('links.next')"
    """

    kind = "next_url"

    def __init__(
        self,
        *,
        next_url_path: str = "next",
        limit: int | None = None,
        limit_param: str = "per_page",
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.next_url_path, self.limit, self.limit_param = next_url_path, limit, limit_param

    def _target(self, page: Page) -> str | None:
        value = page.value(self.next_url_path)
        return str(value) if value else None

    def describe(self) -> str:
        return f"next-URL pagination ({self.next_url_path!r})"


class LinkHeaderPaginator(_Linked):
    """The RFC 8288 ``Link`` header's ``rel="next"`` target (as GitHub's API sends).

    Example:
        >>> LinkHeaderPaginator(limit=100).first_request(
        ...     PageRequest("https://api.example.com/issues")).params
        {'per_page': 100}
    """

    kind = "link_header"

    def __init__(
        self,
        *,
        rel: str = "next",
        limit: int | None = None,
        limit_param: str = "per_page",
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.rel, self.limit, self.limit_param = rel, limit, limit_param

    def _links(self, page: Page) -> dict[Any, Any]:
        import httpx

        header = page.headers.get("Link")
        if not header:
            return {}
        return dict(httpx.Response(200, headers={"Link": header}).links)

    def _target(self, page: Page) -> str | None:
        link = self._links(page).get(self.rel)
        return link.get("url") if link else None

    def planned_requests(self, first: Page, request: PageRequest) -> list[PageRequest] | None:
        """The pages between the ``next`` link and the ``last`` link (or as many as a total
        in the body or a header gives), when the two URLs differ in one integer parameter
        (``?page=2`` ... ``?page=9``, GitHub's form): fetched in parallel, then checked by
        :meth:`confirms_plan`. Otherwise None (each page's link is followed)."""
        import httpx

        if self.rel != "next" or self.is_last(first):
            return None
        links = self._links(first)
        nxt = links.get("next", {}).get("url")
        if not nxt:
            return None
        here = httpx.URL(first.url)
        nxt_url = here.join(nxt)
        last = links.get("last", {}).get("url")
        if last:
            moving = _one_number(nxt_url, here.join(last))
            if moving is None:
                return None
            name, from_next, m = moving
            n = from_next if from_next is not None else m  # (absent only with absent_ok)
            step = _step(here, name, n)
            if step is None or m < n or (m - n) % step:
                return None
            count = (m - n) // step + 1
        else:
            total = self.expected_records(first)
            moving = _one_number(here, nxt_url, absent_ok=True)
            if total is None or moving is None:
                return None
            name, _, n = moving
            step = _step(here, name, n)
            if step is None:
                return None
            count = math.ceil(total / first.frame.height) - 1
        if count <= 0 or count > _MAX_PLANNED:
            return None
        return [
            PageRequest(str(nxt_url.copy_set_param(name, str(n + i * step))), {}, request.json)
            for i in range(count)
        ]

    def confirms_plan(self, pages: list[Page]) -> bool:
        """Each page's own next link is the following page's URL and the last page has none
        (a guessed plan that does not hold, e.g. links moving by an offset, or pages added
        while reading, is read again link by link)."""
        for page, following in itertools.pairwise(pages):
            if page.request is None or following.request is None:
                return False
            nxt = self.next_request(page, page.request)
            if nxt is None or nxt.key() != following.request.key():
                return False
        return self._target(pages[-1]) is None

    def describe(self) -> str:
        return f'Link-header pagination (rel="{self.rel}")'


_MAX_PLANNED = 100_000  # more planned pages than this: follow the links (max_pages stops it)


def _numbers(url: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in url.params.multi_items():
        out.setdefault(key, []).append(value)
    return out


def _one_number(a: Any, b: Any, *, absent_ok: bool = False) -> tuple[str, int | None, int] | None:
    """The one query parameter in which URLs ``a`` and ``b`` differ, with integer values (in
    ``a`` it may be absent when ``absent_ok``): ``(name, value in a, value in b)``; else None."""
    if a.copy_with(query=None) != b.copy_with(query=None):
        return None
    pa, pb = _numbers(a), _numbers(b)
    differ = [k for k in {*pa, *pb} if pa.get(k) != pb.get(k)]
    if len(differ) != 1:
        return None
    name = differ[0]
    va, vb = pa.get(name), pb.get(name)
    if vb is None or len(vb) != 1 or (va is not None and len(va) != 1):
        return None
    if va is None and not absent_ok:
        return None
    na = _int(va[0]) if va is not None else None
    nb = _int(vb[0])
    if nb is None or (va is not None and na is None):
        return None
    return name, na, nb


def _step(here: Any, name: str, nxt: int) -> int | None:
    """How far the moving parameter goes per page: from this page's value to the next link's
    (a first URL without it: 1, as page numbers do; a wrong guess is caught by the check)."""
    current = _numbers(here).get(name)
    value = _int(current[0]) if current and len(current) == 1 else None
    step = nxt - value if value is not None else 1
    return step if step > 0 else None


# -- the configs (a plain dict in a source's config builds one of the classes above) --------


class _PaginationBase(ConfigModel):
    total_path: str | None = None
    """Path in the body to the total number of records."""
    total_header: str | None = None
    """Response header with the total number of records (``X-Total-Count``)."""
    has_more_path: str | None = None
    """Path in the body to a flag that is false on the last page."""

    def _common(self) -> dict[str, Any]:
        return {
            "total_path": self.total_path,
            "total_header": self.total_header,
            "has_more_path": self.has_more_path,
        }


class OffsetConfig(_PaginationBase):
    """``{"type": "offset", "limit": 100, "total_path": "meta.total"}``."""

    type: Literal["offset"]
    """``offset``: ``?offset=0&limit=100``, then ``offset=100``, ... until an empty page,
    ``has_more_path`` false, or the total."""
    limit: int | None = Field(default=None, ge=1)
    """Page size, sent as ``limit_param`` (default 100, or the value in ``params``)."""
    offset_param: str = "offset"
    """The query parameter carrying the offset of the first record of a page."""
    limit_param: str = "limit"
    """The query parameter carrying the page size."""
    start: int | None = Field(default=None, ge=0)
    """The offset of the first page; absent: the ``offset_param`` value in ``params``, else 0.
    A total announced by the API counts from offset 0: from offset 50 of a total of 100, 50
    records are expected."""

    def build(self, params: Mapping[str, Any]) -> Paginator:
        size = self.limit or _int(params.get(self.limit_param)) or 100
        return OffsetPaginator(
            limit=size,
            offset_param=self.offset_param,
            limit_param=self.limit_param,
            start=self.start,
            **self._common(),
        )


class PageConfig(_PaginationBase):
    """``{"type": "page", "limit": 50, "limit_param": "per_page", "total_pages_path": "pages"}``."""

    type: Literal["page"]
    """``page``: ``?page=1``, ``page=2``, ... until an empty page, ``has_more_path`` false,
    or the number of pages (given, or the total divided by the page size)."""
    page_param: str = "page"
    """The query parameter carrying the page number."""
    start: int | None = None
    """The number of the first page; absent: the ``page_param`` value in ``params``, else 1
    (use 0 for zero-based APIs)."""
    limit: int | None = Field(default=None, ge=1)
    """Page size, sent as ``limit_param``."""
    limit_param: str = Field(default="per_page", alias="page_size_param")
    """The query parameter carrying ``limit`` (only sent when ``limit`` is set)."""
    total_pages_path: str | None = None
    """Path in the body of the first page to the number of pages; then the others are
    fetched concurrently (``max_concurrency``)."""
    total_pages_header: str | None = None
    """Response header with the number of pages (``X-Total-Pages``), used when
    ``total_pages_path`` gives none."""

    def build(self, params: Mapping[str, Any]) -> Paginator:
        return PageNumberPaginator(
            page_param=self.page_param,
            start=self.start if self.start is not None else _int(params.get(self.page_param)) or 1,
            limit=self.limit or _int(params.get(self.limit_param)),
            limit_param=self.limit_param,
            total_pages_path=self.total_pages_path,
            total_pages_header=self.total_pages_header,
            **self._common(),
        )


class CursorConfig(_PaginationBase):
    """``{"type": "cursor", "cursor_path": "paging.next", "cursor_param": "after"}``."""

    type: Literal["cursor"]
    """``cursor``: each page's ``cursor_path`` value is sent as ``cursor_param`` to get the
    next page; an absent or empty cursor (or an empty page) ends the read."""
    cursor_path: str
    """Path in the body to the next cursor."""
    cursor_param: str = "cursor"
    """The query parameter (or JSON body key) that receives the next cursor."""
    cursor_in: Literal["params", "body"] = "params"
    """Where the cursor and ``limit`` go: ``params`` (the query string) or ``body`` (keys of the
    JSON body, for APIs paged by POST)."""
    limit: int | None = Field(default=None, ge=1)
    """Page size, sent as ``limit_param`` with every request; absent: not sent (the API's
    default)."""
    limit_param: str = "limit"
    """The query parameter (or JSON body key) carrying ``limit``."""

    def build(self, params: Mapping[str, Any]) -> Paginator:
        return CursorPaginator(
            cursor_path=self.cursor_path,
            cursor_param=self.cursor_param,
            cursor_in=self.cursor_in,
            limit=self.limit,
            limit_param=self.limit_param,
            **self._common(),
        )


class NextURLConfig(_PaginationBase):
    """``{"type": "next_url", "next_url_path": "links.next", "limit": 100}``."""

    type: Literal["next_url"]
    """``next_url``: each page's body holds the URL of the next page; none (or an empty
    page) ends the read."""
    next_url_path: str = "next"
    """Dotted path in the body to the next page's URL (absolute or relative to the page's
    URL). A URL on another origin needs ``redirects.cross_origin: allow``."""
    limit: int | None = Field(default=None, ge=1)
    """Page size, sent as ``limit_param`` with the first request (next URLs carry their own)."""
    limit_param: str = "per_page"
    """The query parameter carrying ``limit`` in the first request."""

    def build(self, params: Mapping[str, Any]) -> Paginator:
        return NextURLPaginator(
            next_url_path=self.next_url_path,
            limit=self.limit,
            limit_param=self.limit_param,
            **self._common(),
        )


class LinkHeaderConfig(_PaginationBase):
    """``{"type": "link_header", "limit": 100}`` (sent as ``per_page`` with the first request)."""

    type: Literal["link_header"]
    """``link_header``: the next page is the RFC 8288 ``Link`` header's target (as GitHub's
    API sends); no such link (or an empty page) ends the read."""
    rel: str = "next"
    """The ``rel`` of the link to follow."""
    limit: int | None = Field(default=None, ge=1)
    """Page size, sent as ``limit_param`` with the first request (next links carry their own)."""
    limit_param: str = "per_page"
    """The query parameter carrying ``limit`` in the first request."""

    def build(self, params: Mapping[str, Any]) -> Paginator:
        return LinkHeaderPaginator(
            rel=self.rel, limit=self.limit, limit_param=self.limit_param, **self._common()
        )


PaginationConfig = Annotated[
    OffsetConfig | PageConfig | CursorConfig | NextURLConfig | LinkHeaderConfig,
    Field(discriminator="type"),
]


# -- the driver -----------------------------------------------------------------------------


def paginate(
    paginator: Paginator,
    start: PageRequest,
    fetch: Callable[[PageRequest], Page],
    fetch_many: Callable[[list[PageRequest]], list[Page]],
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
    on_incomplete: Literal["error", "warn"] = "error",
    component: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Page]:
    """Every page of a paginated read, in order; the rules of the module docstring hold."""

    def incomplete(message: str, hint: str) -> None:
        if on_incomplete == "error" or warn is None:
            raise IngestionError(
                message,
                component=component,
                hint=hint + "; or set on_incomplete: warn to keep what was read",
            )
        warn(message)

    def identical(number: int) -> IngestionError:
        return IngestionError(
            f"page {number} is identical to page {number - 1} ({paginator.describe()}): "
            "the server seems to ignore the pagination parameters",
            component=component,
            hint="check the pagination config (parameter names, type) against the API's docs",
        )

    request = paginator.first_request(start)
    seen = {request.key()}
    page = fetch(request)
    page.request = request
    pages = [page]
    planned = paginator.planned_requests(page, request)
    sequential = planned is None
    if planned:
        if 1 + len(planned) > max_pages:
            incomplete(
                f"the API has {1 + len(planned):,} pages, more than max_pages ({max_pages:,})",
                "raise max_pages",
            )
            planned = planned[: max_pages - 1]
        rest = fetch_many(planned)
        for nxt, asked in zip(rest, planned, strict=True):
            nxt.request = asked
        if paginator.confirms_plan([page, *rest]):
            for i, nxt in enumerate(rest):
                if nxt.frame.height and nxt.digest == pages[-1].digest:
                    raise identical(i + 2)
                pages.append(nxt)
        else:  # a guessed plan that did not hold: the links, one page after the other
            sequential = True
    if sequential:
        while True:
            nxt_request = paginator.next_request(page, request)
            if nxt_request is None:
                break
            if len(pages) >= max_pages:
                incomplete(
                    f"max_pages ({max_pages:,}) reached and the API has more pages "
                    f"({paginator.describe()})",
                    "raise max_pages",
                )
                break
            key = nxt_request.key()
            if key in seen:
                raise IngestionError(
                    f"page {len(pages) + 1} would ask for {redact_url(key)} again "
                    f"({paginator.describe()}): the API's pages loop",
                    component=component,
                    hint="the API returned a next cursor or URL that was already read; "
                    "check the pagination config",
                )
            seen.add(key)
            nxt = fetch(nxt_request)
            nxt.request = nxt_request
            if nxt.frame.height and nxt.digest == page.digest:
                raise identical(len(pages) + 1)
            pages.append(nxt)
            page, request = nxt, nxt_request
    expected = paginator.expected_records(pages[0])
    got = sum(p.frame.height for p in pages)
    if expected is not None and got < expected:
        incomplete(
            f"the API announced {expected:,} records and {got:,} were read in {len(pages):,} "
            f"pages ({paginator.describe()})",
            "the data changed while it was read, or the server caps the page size below "
            "'limit'; read again, or lower 'limit'",
        )
    return pages
