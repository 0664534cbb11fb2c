"""BatchProcessor: batches from files, iterators and frames; partial aggregates merged exactly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline.core.errors import InputNotFoundError, UnsupportedOperationError
from data_pipeline.processing import (
    BatchProcessor,
    DataAggregator,
    DataEnricher,
    DataFilter,
    ProcessingPipeline,
    WindowedAggregator,
)
from tests.conftest import to_polars
from tests.unit.processing.oracle import assert_same, duck

AGG_SQL = """select date, product_id, coalesce(sum(quantity * price), 0) as revenue, avg(price) as price,
    min(price) as price_min, count(price) as price_count, stddev_samp(price) as price_std,
    max(quantity) as quantity_max, count(*) as "count"
    from {src} where quantity > 1 group by all order by date nulls last, product_id nulls last"""


def sales(n: int, seed: int = 7) -> pl.DataFrame:
    """Deterministic sales rows with nulls in keys and values."""
    i = pl.int_range(0, n, eager=True)
    return pl.DataFrame(
        {
            "date": [
                dt.date(2024, 1, 1) + dt.timedelta(days=(k * 7 + seed) % 20) for k in range(n)
            ],
            "product_id": [None if k % 97 == 0 else (k * 13 + seed) % 11 for k in range(n)],
            "quantity": [None if k % 31 == 0 else (k * 5 + seed) % 9 for k in range(n)],
            "price": [
                None if k % 53 == 0 else round(((k * 37 + seed) % 1000) / 10 + 0.25, 2)
                for k in range(n)
            ],
        }
    ).with_columns(i.alias("row"))


def pipeline() -> ProcessingPipeline:
    p = ProcessingPipeline("p")
    p.add_processor(DataFilter(name="f", config={"condition": "quantity > 1"}))
    p.add_processor(DataEnricher(name="e", config={"derived": ["revenue = quantity * price"]}))
    p.add_processor(
        DataAggregator(
            name="a",
            config={
                "group_by": ["date", "product_id"],
                "aggregations": {
                    "revenue": "sum",
                    "price": ["mean", "min", "count", "std"],
                    "quantity": {"agg": "max", "as": "quantity_max"},
                    "*": "count",
                },
            },
        )
    )
    return p


def fix_names(df: Any) -> pl.DataFrame:
    return to_polars(df).rename({"price_mean": "price"})


def test_parquet_larger_than_batches_matches_duckdb(tmp_path: Path) -> None:
    data = sales(20_000)
    path = tmp_path / "sales.parquet"
    data.write_parquet(path, row_group_size=3000)
    seen: list[dict[str, Any]] = []
    runner = BatchProcessor(
        name="b", config={"batch_size": 1500}, pipeline=pipeline(), on_progress=seen.append
    )
    result = runner.process(str(path))
    assert isinstance(result, pl.DataFrame)
    expected = duck(AGG_SQL.format(src=f"read_parquet('{path}')"))
    assert_same(fix_names(result), expected, ordered=True, rel_tol=1e-7)
    meta = runner.get_metadata()
    assert meta["status"] == "succeeded"
    assert meta["rows_in"] == 20_000
    progress = meta["details"]["progress"]
    assert progress["batches"] >= 14 and progress["total_rows"] == 20_000
    assert seen[-1]["rows_in"] == 20_000 and len(seen) == progress["batches"]


def test_csv_glob(tmp_path: Path) -> None:
    data = sales(3_000)
    for k in range(3):
        data.slice(k * 1000, 1000).write_csv(tmp_path / f"part{k}.csv")
    runner = BatchProcessor(name="c", config={"batch_size": 400}, pipeline=pipeline())
    result = runner.process(str(tmp_path / "part*.csv"))
    expected = duck(AGG_SQL.format(src="t"), t=data)
    assert_same(fix_names(result), expected, ordered=True, rel_tol=1e-7)


def test_iterator_of_frames_on_every_engine(make_frame: Any) -> None:
    data = sales(2_000)
    chunks = [make_frame(data.slice(k, 300)) for k in range(0, 2_000, 300)]
    result = BatchProcessor(name="it", pipeline=pipeline()).process(iter(chunks))
    expected = duck(AGG_SQL.format(src="t"), t=data)
    assert_same(fix_names(result), expected, ordered=True, rel_tol=1e-7)


def test_frame_input_native_output(make_frame: Any, engine: str) -> None:
    data = sales(1_000)
    native = make_frame(data)
    runner = BatchProcessor(
        name="fr", config={"batch_size": 128, "output": "native"}, pipeline=pipeline()
    )
    result = runner.process(native)
    assert type(result) is type(native)
    expected = duck(AGG_SQL.format(src="t"), t=data)
    assert_same(fix_names(result), expected, ordered=True, rel_tol=1e-7)


def test_first_last_follow_batch_order() -> None:
    data = sales(1_000)
    p = ProcessingPipeline("fl").add_processor(
        DataAggregator(
            name="a",
            config={"group_by": "product_id", "aggregations": {"price": ["first", "last"]}},
        )
    )
    result = BatchProcessor(name="fl", config={"batch_size": 64}, pipeline=p).process(data)
    expected = duck(
        "select product_id, first(price order by row) as price_first, last(price order by row) as price_last "
        "from t group by 1 order by 1 nulls last",
        t=data,
    )
    assert_same(result, expected, ordered=True)


def test_windowed_aggregation_in_batches() -> None:
    n = 2_000
    t0 = dt.datetime(2024, 1, 1)
    events = pl.DataFrame(
        {
            "ts": [t0 + dt.timedelta(minutes=7 * k) for k in range(n)],
            "amount": [float(k % 17) for k in range(n)],
        }
    )
    p = ProcessingPipeline("w").add_processor(
        WindowedAggregator(
            name="w",
            config={
                "time_column": "ts",
                "window": "1d",
                "slide": "6h",
                "aggregations": {"amount": ["sum", "mean"]},
            },
        )
    )
    batched = BatchProcessor(name="wb", config={"batch_size": 333}, pipeline=p).process(events)
    in_memory = p.process(events)
    assert_same(batched, in_memory, ordered=True, rel_tol=1e-9)


def test_no_aggregation_writes_each_batch(tmp_path: Path) -> None:
    warehouse = pytest.importorskip("data_pipeline.storage.warehouse")
    storage = warehouse.DataWarehouseStorage(
        name="wh", config={"database": str(tmp_path / "wh.duckdb")}
    )
    data = sales(1_000)
    p = ProcessingPipeline("rows").add_processor(
        DataFilter(name="f", config={"condition": "quantity > 5"})
    )
    runner = BatchProcessor(
        name="w",
        config={"batch_size": 100, "table": "big_sales", "if_exists": "replace"},
        pipeline=p,
        storage=storage,
    )
    result = runner.process(data)
    stored = to_polars(storage.retrieve("big_sales"))
    expected = duck("select * from t where quantity > 5", t=data)
    assert_same(result, expected)
    assert_same(stored, expected)
    runner.process(data)  # replace again on the first batch, then append
    assert to_polars(storage.retrieve("big_sales")).height == expected.height


def test_median_is_refused_with_hint() -> None:
    p = ProcessingPipeline("m").add_processor(
        DataAggregator(
            name="a", config={"group_by": "product_id", "aggregations": {"price": "median"}}
        )
    )
    with pytest.raises(
        UnsupportedOperationError, match="'median' of 'price' cannot be combined"
    ) as info:
        BatchProcessor(name="m", pipeline=p).process(sales(10))
    assert "polars_streaming" in str(info.value)


def test_missing_file_and_empty_iterator(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match=r"nope\.parquet"):
        BatchProcessor(name="x", pipeline=pipeline()).process(str(tmp_path / "nope.parquet"))
    with pytest.raises(InputNotFoundError, match="matches no file"):
        BatchProcessor(name="x", pipeline=pipeline()).process(str(tmp_path / "*.parquet"))
    empty = BatchProcessor(name="x", pipeline=pipeline()).process(iter([]))
    assert empty.height == 0
    assert empty.columns[:2] == ["date", "product_id"]


def test_batch_processor_as_a_pipeline_step() -> None:
    data = sales(500)
    inner = pipeline()
    outer = ProcessingPipeline("outer").add_processor(
        BatchProcessor(name="in_batches", config={"batch_size": 64}, pipeline=inner)
    )
    assert outer.check(data.columns)[:2] == ["date", "product_id"]
    result = outer.process(data.to_pandas())
    assert type(result).__module__.startswith("pandas")
    expected = duck(AGG_SQL.format(src="t"), t=data)
    assert_same(fix_names(result), expected, ordered=True, rel_tol=1e-7)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    batch_size=st.integers(min_value=1, max_value=120), rows=st.integers(min_value=0, max_value=300)
)
def test_any_batch_size_gives_the_in_memory_answer(batch_size: int, rows: int) -> None:
    data = sales(rows, seed=rows)
    in_memory = pipeline().process(data)
    batched = BatchProcessor(
        name="h", config={"batch_size": batch_size}, pipeline=pipeline()
    ).process(data)
    assert_same(batched, to_polars(in_memory), ordered=True, rel_tol=1e-7)


def test_polars_streaming_mode_handles_median(tmp_path: Path) -> None:
    data = sales(5_000)
    path = tmp_path / "sales.parquet"
    data.write_parquet(path)
    p = ProcessingPipeline("med").add_processor(
        DataFilter(name="f", config={"condition": "quantity > 1"})
    )
    p.add_processor(
        DataAggregator(
            name="a",
            config={
                "group_by": ["product_id"],
                "aggregations": {"price": ["median", "mean"], "date": "n_unique"},
            },
        )
    )
    runner = BatchProcessor(name="s", config={"mode": "polars_streaming"}, pipeline=p)
    result = runner.process(str(path))
    expected = duck(
        f"select product_id, median(price) as price_median, avg(price) as price_mean, "
        f"count(distinct date) as date from read_parquet('{path}') where quantity > 1 "
        "group by 1 order by 1 nulls last"
    )
    assert_same(result, expected, ordered=True)
    assert runner.get_metadata()["details"]["mode"] == "polars_streaming"
