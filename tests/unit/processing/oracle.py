"""The independent oracle: the same query in DuckDB SQL on the same input."""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl
from polars.testing import assert_frame_equal

from tests.conftest import to_polars


def duck(sql: str, **tables: pl.DataFrame | dict[str, Any]) -> pl.DataFrame:
    """Run ``sql`` in a fresh DuckDB connection with each keyword registered as a table."""
    con = duckdb.connect()
    try:
        for name, data in tables.items():
            df = data if isinstance(data, pl.DataFrame) else pl.DataFrame(data, strict=False)
            con.register(name, df.to_arrow())
        return pl.from_arrow(con.sql(sql).to_arrow_table())  # type: ignore[return-value]
    finally:
        con.close()


def assert_same(
    result: Any, expected: pl.DataFrame, *, ordered: bool = False, rel_tol: float = 1e-9
) -> None:
    """Compare a native result with the oracle: same columns and values (sorted unless ordered)."""
    got = to_polars(result)
    assert got.columns == expected.columns, (got.columns, expected.columns)
    if not ordered and got.height:
        got = got.sort(got.columns, nulls_last=True)
        expected = expected.sort(expected.columns, nulls_last=True)
    got = _normalise(got)
    expected = _normalise(expected)
    assert_frame_equal(got, expected, check_dtypes=False, rel_tol=rel_tol, abs_tol=1e-9)


def _normalise(df: pl.DataFrame) -> pl.DataFrame:
    """NaN -> null (pandas stores missing floats as NaN) and integers -> Int64 for comparison."""
    exprs = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if dtype.is_float():
            exprs.append(pl.when(col.is_nan()).then(None).otherwise(col).alias(name))
        elif dtype.is_integer():
            exprs.append(col.cast(pl.Int64))
        else:
            exprs.append(col)
    return df.select(exprs) if exprs else df
