"""The layer's example runs, and its answer equals DuckDB SQL on the same data."""

from __future__ import annotations

import polars as pl
import pytest

from data_pipeline.processing import example
from tests.unit.processing.oracle import assert_same, duck


def test_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    result = example.main()
    out = capsys.readouterr().out
    assert "same result = True" in out
    assert "hourly windows emitted" in out
    sales = example._sales()
    expected = duck(
        "select date, product_id, sum(quantity) as quantity, avg(price) as price, "
        "sum(quantity * price) as revenue from t where region in ('north', 'south') "
        "group by all order by date, product_id",
        t=sales,
    )
    assert isinstance(result, pl.DataFrame)
    assert_same(result, expected, ordered=True)
