"""Helpers for the transformation tests: an independent DuckDB SQL oracle and comparison."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import to_polars

LAZY_ENGINES = {"polars-lazy", "duckdb", "pyspark"}


def oracle(sql: str, **tables: pl.DataFrame) -> pl.DataFrame:
    """Run ``sql`` in a fresh DuckDB connection over the given polars frames (by name)."""
    import duckdb

    con = duckdb.connect()
    try:
        for name, frame in tables.items():
            con.register(name, frame.to_arrow())
        return con.sql(sql).pl()
    finally:
        con.close()


def normalize(frame: pl.DataFrame, sort_by: str | None = "id") -> pl.DataFrame:
    """NaN -> null in float columns (pandas cannot tell them apart), rows sorted by ``sort_by``."""
    frame = frame.with_columns(
        [pl.col(c).fill_nan(None) for c, t in frame.schema.items() if t.is_float()]
    )
    if sort_by is not None and sort_by in frame.columns:
        frame = frame.sort(sort_by)
    return frame


def assert_same(
    result: Any, expected: pl.DataFrame, *, sort_by: str | None = "id", **kw: Any
) -> None:
    """The engine's result (any native type) equals the oracle's frame, values not dtypes."""
    got = normalize(to_polars(result), sort_by)
    want = normalize(expected, sort_by)
    kw.setdefault("check_dtypes", False)
    assert_frame_equal(got, want, **kw)


@pytest.fixture
def check_type() -> Any:
    def check(data: Any, result: Any) -> None:
        assert type(result) is type(data), f"{type(result)} is not {type(data)}"

    return check
