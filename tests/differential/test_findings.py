"""The issue's findings in the aggregation, missing-value and outlier code, one test each, on
every engine, against answers written out by hand (each value says where it comes from)."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import statistics
from typing import Any

import narwhals as nw
import polars as pl
import pytest

from data_pipeline.processing import (
    BatchProcessor,
    DataAggregator,
    ProcessingPipeline,
    WindowedAggregator,
)
from tests.differential.harness import ENGINES, Expected, check, to_engine

D = decimal.Decimal
UTC = dt.timezone.utc


def batched(step: Any, batch_size: int) -> Any:
    pipeline = ProcessingPipeline("p").add_processor(step)
    return BatchProcessor(name="b", config={"batch_size": batch_size}, pipeline=pipeline).process


# -- first/last with order_by and null group keys ----------------------------------------------

KEYS = pl.DataFrame(
    {
        "k": [1, None, 1, None, 2],
        "g": ["a", None, "a", None, None],
        "t": [3, 1, 2, 4, 5],
        "v": [10.0, 20.0, 30.0, 40.0, 50.0],
    }
)
FIRST_LAST = {
    "group_by": ["k", "g"],
    "aggregations": {
        "v": [{"agg": "first", "order_by": "t"}, {"agg": "last", "order_by": "t"}, "sum"]
    },
}
# by t: group (1, a) is t=2 (30) then t=3 (10); (None, None) is t=1 (20) then t=4 (40); (2, None)
# is t=5 (50). pandas gave duplicated groups with NaN values here.
FIRST_LAST_ROWS = [
    (1, "a", 30.0, 10.0, 40.0),
    (2, None, 50.0, 50.0, 50.0),
    (None, None, 20.0, 40.0, 60.0),
]
FIRST_LAST_SCHEMA = {
    "k": nw.Int64(),
    "g": nw.String(),
    "v_first": nw.Float64(),
    "v_last": nw.Float64(),
    "v_sum": nw.Float64(),
}


@pytest.mark.parametrize("engine", ENGINES)
def test_first_last_by_order_with_null_keys(engine: str, request: pytest.FixtureRequest) -> None:
    expected = Expected(rows=FIRST_LAST_ROWS, schema=FIRST_LAST_SCHEMA)
    native = to_engine(KEYS, engine, request)
    check(engine, DataAggregator(name="a", config=FIRST_LAST).process, native, expected)
    # BatchProcessor gives the same (it raised on Spark): batches of 2 rows split every group
    batches = batched(DataAggregator(name="a", config=FIRST_LAST), 2)
    check(engine, batches, to_engine(KEYS, engine, request), expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_windowed_first_last_with_null_keys(engine: str, request: pytest.FixtureRequest) -> None:
    start = dt.datetime(2024, 1, 1, 10)
    data = KEYS.with_columns(ts=pl.lit(start) + pl.duration(minutes=pl.col("t")))
    config = {**FIRST_LAST, "time_column": "ts", "window": "1h"}
    end = start + dt.timedelta(hours=1)
    rows = [(k, g, start, end, *rest) for k, g, *rest in FIRST_LAST_ROWS]
    schema = {
        "k": nw.Int64(),
        "g": nw.String(),
        "window_start": nw.Datetime("us"),
        "window_end": nw.Datetime("us"),
        **{c: t for c, t in FIRST_LAST_SCHEMA.items() if c.startswith("v_")},
    }
    native = to_engine(data, engine, request)
    check(
        engine,
        WindowedAggregator(name="w", config=config).process,
        native,
        Expected(rows=rows, schema=schema, ordered=False),
    )


# -- decimals -----------------------------------------------------------------------------------

PRICES = [D(f"{(i * 7919) % 30000 / 100:.2f}") for i in range(1, 60)]


@pytest.mark.parametrize("engine", ENGINES)
def test_std_of_a_decimal_batched_is_exact(engine: str, request: pytest.FixtureRequest) -> None:
    """BatchProcessor's std of a Decimal was 59.6254 against an exact 59.6235 (DuckDB, PyArrow)."""
    data = pl.DataFrame({"p": PRICES}, schema={"p": pl.Decimal(10, 2)})
    exact = float(statistics.stdev(PRICES))  # decimal arithmetic, 28 digits
    expected = Expected(rows=[(exact,)], schema={"p": nw.Float64()})
    config = {"aggregations": {"p": "std"}}
    check(
        engine,
        DataAggregator(name="a", config=config).process,
        to_engine(data, engine, request),
        expected,
    )
    batches = batched(DataAggregator(name="a", config=config), 7)
    check(engine, batches, to_engine(data, engine, request), expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_median_of_a_decimal_keeps_its_digits(engine: str, request: pytest.FixtureRequest) -> None:
    """DuckDB rounded the median to the column's scale: 6.50 instead of 6.505."""
    data = pl.DataFrame({"p": [D("6.50"), D("6.51")]}, schema={"p": pl.Decimal(10, 2)})
    config = {"aggregations": {"p": ["median", "mean", "sum", "min"]}}
    expected = Expected(
        rows=[(6.505, 6.505, D("13.01"), D("6.50"))],
        schema={
            "p_median": nw.Float64(),
            "p_mean": nw.Float64(),
            "p_sum": nw.Decimal(38, 2),
            "p_min": nw.Decimal(10, 2),
        },
    )
    check(
        engine,
        DataAggregator(name="a", config=config).process,
        to_engine(data, engine, request),
        expected,
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_first_last_of_decimal_and_all_null_columns(
    engine: str, request: pytest.FixtureRequest
) -> None:
    """PyArrow had no first/last for a Decimal or an all-null column."""
    data = pl.DataFrame(
        {"t": [2, 1, 3], "d": [D("1.50"), D("2.25"), None], "n": [None, None, None]},
        schema={"t": pl.Int64, "d": pl.Decimal(10, 2), "n": pl.Int64},
    )
    config = {
        "aggregations": {"d": ["first", "last"], "n": ["first", "last"]},
        "order_by": "t",
    }
    expected = Expected(
        rows=[(D("2.25"), None, None, None)],  # by t: 1 -> 2.25 first, 3 -> None last
        schema={
            "d_first": nw.Decimal(10, 2),
            "d_last": nw.Decimal(10, 2),
            "n_first": nw.Int64(),
            "n_last": nw.Int64(),
        },
    )
    check(
        engine,
        DataAggregator(name="a", config=config).process,
        to_engine(data, engine, request),
        expected,
    )


# -- empty inputs --------------------------------------------------------------------------------

EMPTY = pl.DataFrame(schema={"k": pl.String, "i": pl.Int64, "f": pl.Float64})
GLOBAL = {"aggregations": {"i": ["sum", "count", "n_unique", "mean", "max"], "*": "count"}}
# one row: a count of no rows is 0, a sum of no values 0, the rest null
GLOBAL_EMPTY = Expected(
    rows=[(0, 0, 0, None, None, 0)],
    schema={
        "i_sum": nw.Int64(),
        "i_count": nw.Int64(),
        "i_n_unique": nw.Int64(),
        "i_mean": nw.Float64(),
        "i_max": nw.Int64(),
        "count": nw.Int64(),
    },
)
# the same without n_unique, which batches cannot merge
BATCHED = {"aggregations": {"i": ["sum", "count", "mean", "max"], "*": "count"}}
BATCHED_EMPTY = Expected(
    rows=[(0, 0, None, None, 0)],
    schema={c: t for c, t in GLOBAL_EMPTY.schema.items() if c != "i_n_unique"},
)


@pytest.mark.parametrize("engine", ENGINES)
def test_global_aggregation_of_an_empty_input(engine: str, request: pytest.FixtureRequest) -> None:
    """n_unique was NULL on DuckDB; BatchProcessor gave 0 rows with Null types."""
    agg = DataAggregator(name="a", config=GLOBAL)
    check(engine, agg.process, to_engine(EMPTY, engine, request), GLOBAL_EMPTY)
    batches = batched(DataAggregator(name="a", config=BATCHED), 3)
    check(engine, batches, to_engine(EMPTY, engine, request), BATCHED_EMPTY)


def test_global_aggregation_of_an_empty_iterator() -> None:
    """No batch at all: no types to go by, but still the one row of a global aggregation
    (counts 0, the rest null: a sum's type is not known)."""
    result = batched(DataAggregator(name="a", config=BATCHED), 3)(iter([]))
    assert result.rows() == [(None, 0, None, None, 0)]
    assert result.columns == list(BATCHED_EMPTY.schema)


@pytest.mark.parametrize("engine", ENGINES)
def test_grouped_aggregation_of_an_empty_input(engine: str, request: pytest.FixtureRequest) -> None:
    expected = Expected(rows=[], schema={"k": nw.String(), **GLOBAL_EMPTY.schema})
    agg = DataAggregator(name="a", config={"group_by": "k", **GLOBAL})
    check(engine, agg.process, to_engine(EMPTY, engine, request), expected)
    expected = Expected(rows=[], schema={"k": nw.String(), **BATCHED_EMPTY.schema})
    batches = batched(DataAggregator(name="a", config={"group_by": "k", **BATCHED}), 3)
    check(engine, batches, to_engine(EMPTY, engine, request), expected)


# -- timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_min_of_utc_timestamps_when_a_batch_is_all_null(
    engine: str, request: pytest.FixtureRequest
) -> None:
    """pandas failed: its all-null batch's min had another unit and no zone."""
    t1, t2 = dt.datetime(2024, 1, 2, tzinfo=UTC), dt.datetime(2024, 1, 1, tzinfo=UTC)
    data = pl.DataFrame({"t": [None, None, t1, t2]}, schema={"t": pl.Datetime("us", "UTC")})
    config = {"aggregations": {"t": ["min", "max", "count"]}}
    expected = Expected(
        rows=[(t2, t1, 2)],
        schema={
            "t_min": nw.Datetime("us", "UTC"),
            "t_max": nw.Datetime("us", "UTC"),
            "t_count": nw.Int64(),
        },
    )
    agg = DataAggregator(name="a", config=config)
    check(engine, batched(agg, 2), to_engine(data, engine, request), expected)
    check(engine, agg.process, to_engine(data, engine, request), expected)


# -- NaN -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_nan_in_min_max_and_median(engine: str, request: pytest.FixtureRequest) -> None:
    """min/max ignore NaN unless every value is NaN; NaN sorts above every number for the
    median; the median of an even count is the mean of the two middle values."""
    nan, inf = math.nan, math.inf
    data = pl.DataFrame(
        {
            "g": [1, 1, 1, 2, 2, 3, 3],
            "x": [1.0, nan, 3.0, nan, nan, -inf, 2.0],
        }
    )
    config = {"group_by": "g", "aggregations": {"x": ["min", "max", "median"]}}
    # group 1: min 1, max 3, median of [1, 3, NaN] is 3; group 2: only NaN; group 3: min -inf,
    # max 2, median (-inf + 2) / 2 = -inf
    rows = [(1, 1.0, 3.0, 3.0), (2, nan, nan, nan), (3, -inf, 2.0, -inf)]
    if engine == "pandas":  # numpy has one missing value: NaN is null there
        rows = [(1, 1.0, 3.0, 2.0), (2, None, None, None), (3, -inf, 2.0, -inf)]
    schema = {
        "g": nw.Int64(),
        "x_min": nw.Float64(),
        "x_max": nw.Float64(),
        "x_median": nw.Float64(),
    }
    check(
        engine,
        DataAggregator(name="a", config=config).process,
        to_engine(data, engine, request),
        Expected(rows=rows, schema=schema),
    )


# -- outliers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_infinities_do_not_drop_the_bounds(engine: str, request: pytest.FixtureRequest) -> None:
    """pandas: one ±inf made a quantile NaN and then both bounds were dropped (nothing clipped).
    Statistics come from the finite values; ±inf are compared with the bounds like any value."""
    from data_pipeline.transformation import OutlierHandler

    inf = math.inf
    data = pl.DataFrame({"x": [1.0, 2.0, -inf, 3.0, 4.0, inf, None]})
    # finite values 1, 2, 3, 4: Q1 1.75, Q3 3.25, IQR 1.5, bounds [1.75 - 2.25, 3.25 + 2.25]
    rows = [(1.0,), (2.0,), (-0.5,), (3.0,), (4.0,), (5.5,), (None,)]
    handler = OutlierHandler(name="o", config={"method": "iqr", "action": "clip"})
    expected = Expected(rows=rows, schema={"x": nw.Float64()}, ordered=engine != "duckdb")
    if engine in ("duckdb", "pyspark"):
        expected.ordered = False
    check(engine, handler.transform, to_engine(data, engine, request), expected)
    zscore = OutlierHandler(
        name="z", config={"method": "zscore", "threshold": 1.0, "action": "flag"}
    )
    # finite mean 2.5, sample sd 1.29: bounds 1.21 .. 3.79; the infinities are outliers
    flags = [
        (v, f)
        for (v,), f in zip(data.rows(), [True, False, True, False, True, True, False], strict=True)
    ]
    expected = Expected(
        rows=flags, schema={"x": nw.Float64(), "x_outlier": nw.Boolean()}, ordered=expected.ordered
    )
    check(engine, zscore.transform, to_engine(data, engine, request), expected)


# -- missing values ------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_a_datetime_constant_into_an_integer_column_is_refused(
    engine: str, request: pytest.FixtureRequest
) -> None:
    """Was written as 946728000000000 on Polars, an object column on pandas, an error elsewhere."""
    from data_pipeline.core.errors import MissingValueError
    from data_pipeline.transformation import MissingValueHandler

    data = pl.DataFrame({"n": [1, None, 3]})
    handler = MissingValueHandler(
        name="m", config={"strategy": "constant", "value": dt.datetime(2000, 1, 1, 12)}
    )
    expected = Expected(error=MissingValueError, match="cannot fill column 'n' (Int64)")
    check(engine, handler.transform, to_engine(data, engine, request), expected)
    ok = MissingValueHandler(name="m", config={"strategy": "constant", "value": 7})
    rows = [(1,), (7,), (3,)]
    check(
        engine,
        ok.transform,
        to_engine(data, engine, request),
        Expected(rows=rows, schema={"n": nw.Int64()}, ordered=engine not in ("duckdb", "pyspark")),
    )


# -- windows kept as panes ------------------------------------------------------------------


def test_windowed_text_and_decimal_in_batches(request: pytest.FixtureRequest) -> None:
    """Sliding windows in batches merge panes; Polars' rolling_*_by has no min/max of text and
    no sum/min of decimals, so those merge through PartialAggregation (one pass answers too)."""
    start = dt.datetime(2024, 1, 1, 10)
    data = pl.DataFrame(
        {
            "ts": [start + dt.timedelta(minutes=m) for m in (5, 50, 70)],
            "s": ["b", "a", "c"],
            "d": [D("1.50"), D("2.25"), D("4.00")],
        },
        schema={"ts": pl.Datetime("us"), "s": pl.String, "d": pl.Decimal(10, 2)},
    )
    config = {
        "time_column": "ts",
        "window": "2h",
        "slide": "1h",
        "aggregations": {"s": ["min", "max"], "d": ["sum", "min"]},
    }
    hour = dt.timedelta(hours=1)
    # 10:05, 10:50, 11:10 in [9:00, 11:00), [10:00, 12:00) and [11:00, 13:00)
    expected = Expected(
        rows=[
            (start - hour, start + hour, "a", "b", D("3.75"), D("1.50")),
            (start, start + 2 * hour, "a", "c", D("7.75"), D("1.50")),
            (start + hour, start + 3 * hour, "c", "c", D("4.00"), D("4.00")),
        ],
        schema={
            "window_start": nw.Datetime("us"),
            "window_end": nw.Datetime("us"),
            "s_min": nw.String(),
            "s_max": nw.String(),
            "d_sum": nw.Decimal(38, 2),
            "d_min": nw.Decimal(10, 2),
        },
    )
    check("polars", WindowedAggregator(name="w", config=config).process, data, expected)
    check("polars", batched(WindowedAggregator(name="w", config=config), 2), data, expected)
