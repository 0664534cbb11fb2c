"""Paginator arithmetic on hand-made pages (the HTTP side is in tests/integration/test_rest_source.py)."""

from __future__ import annotations

import polars as pl

from data_pipeline.ingestion.http.paginators import OffsetPaginator, Page, PageRequest


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
