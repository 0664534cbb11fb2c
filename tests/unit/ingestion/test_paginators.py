"""Paginator arithmetic on hand-made pages (the HTTP side is in tests/integration/test_rest_source.py)."""

from __future__ import annotations

import polars as pl

from data_pipeline.ingestion.http.paginators import (
    LinkHeaderPaginator,
    OffsetPaginator,
    Page,
    PageRequest,
)


def page(rows: int, total: int, request: PageRequest | None = None) -> Page:
    frame = pl.DataFrame({"id": list(range(rows))})
    return Page(frame, {"meta": {"total": total}}, {}, "http://h/x", request=request)


def test_offset_next_request_compares_the_absolute_offset_with_the_total() -> None:
    """Read one by one (no total on the first page, one later), from start 10 of a total of 25:
    offset 24 is still inside the total (it was compared with 25 - 10 and the read stopped)."""
    pag = OffsetPaginator(limit=4, start=10, total_path="meta.total")
    nxt = pag.next_request(page(4, 25), PageRequest("http://h/x", {"offset": 20, "limit": 4}))
    assert nxt is not None and nxt.params["offset"] == 24
    assert pag.next_request(page(1, 25), PageRequest("http://h/x", {"offset": 24})) is None


def test_offset_expected_records_count_from_the_first_offset() -> None:
    first = PageRequest("http://h/x", {"offset": 50, "limit": 10})
    assert (
        OffsetPaginator(limit=10, total_path="meta.total").expected_records(page(10, 100, first))
        == 50
    )  # the offset in params
    assert (
        OffsetPaginator(limit=10, start=50, total_path="meta.total").expected_records(page(10, 100))
        == 50
    )  # a page without its request: start
    assert OffsetPaginator(limit=10, total_path="meta.total").expected_records(page(10, 30)) == 30


def linked(url: str, link: str, rows: int = 10, headers: dict[str, str] | None = None) -> Page:
    frame = pl.DataFrame({"id": list(range(rows))})
    return Page(frame, None, {"Link": link, **(headers or {})}, url, request=PageRequest(url))


def test_link_header_plans_from_the_last_link_or_a_total() -> None:
    """The URLs between rel="next" and rel="last" (one integer parameter moving), or as many as
    a total gives; anything else is not planned (each link is followed)."""
    pag = LinkHeaderPaginator()
    first = linked(
        "http://h/x?per_page=10",
        '<http://h/x?per_page=10&page=2>; rel="next", <http://h/x?per_page=10&page=4>; rel="last"',
    )
    planned = pag.planned_requests(first, PageRequest(first.url))
    assert [r.url for r in planned or []] == [f"http://h/x?per_page=10&page={n}" for n in (2, 3, 4)]
    by_total = LinkHeaderPaginator(total_header="X-Total-Count")
    first = linked("http://h/x?p=1", '</x?p=2>; rel="next"', headers={"X-Total-Count": "25"})
    planned = by_total.planned_requests(first, PageRequest(first.url))
    assert [r.url for r in planned or []] == ["http://h/x?p=2", "http://h/x?p=3"]
    for link in (
        '<http://h/x?after=abc>; rel="next", <http://h/x?after=xyz>; rel="last"',  # a cursor
        '<http://h/x?page=2&q=b>; rel="next", <http://h/x?page=4&q=c>; rel="last"',  # two move
        '<http://other/x?page=2>; rel="next", <http://h/x?page=4>; rel="last"',  # two places
        '<http://h/x?page=2>; rel="next"',  # no last link, no total
    ):
        assert pag.planned_requests(linked("http://h/x", link), PageRequest("http://h/x")) is None
