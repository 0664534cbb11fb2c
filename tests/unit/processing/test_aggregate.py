"""DataAggregator on every engine, compared with DuckDB SQL."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import ColumnNotFoundError, ConfigError, UnsupportedOperationError
from data_pipeline.processing import DataAggregator
from tests.unit.processing.oracle import assert_same, duck

SALES = {
    "date": [
        "2024-01-01",
        "2024-01-01",
        "2024-01-02",
        "2024-01-02",
        None,
        "2024-01-01",
        "2024-01-02",
    ],
    "product_id": [1, 1, 2, 2, 1, None, 2],
    "quantity": [3, 5, 1, None, 2, 4, 7],
    "price": [10.0, 12.0, 5.5, 6.0, None, 8.0, 5.0],
    "revenue": [30.0, 60.0, 5.5, None, 20.0, 32.0, 35.0],
    "région": ["nörd", "süd", "nörd", "nörd", "süd", None, "süd"],
}

SPEC_CONFIG = {
    "group_by": ["date", "product_id"],
    "aggregations": {"quantity": "sum", "price": "mean", "revenue": "sum"},
}


def test_spec_config_matches_duckdb(make_frame: Any) -> None:
    data = make_frame(SALES)
    result = DataAggregator(name="aggregate_data", config=SPEC_CONFIG).process(data)
    assert type(result) is type(data)
    expected = duck(
        "select date, product_id, coalesce(sum(quantity), 0) as quantity, avg(price) as price, "
        "coalesce(sum(revenue), 0) as revenue from t group by all "
        "order by date nulls last, product_id nulls last",
        t=SALES,
    )
    assert_same(result, expected, ordered=True)


def test_every_aggregation(make_frame: Any) -> None:
    config = {
        "group_by": "région",
        "aggregations": {
            "price": ["sum", "mean", "min", "max", "count", "median", "std"],
            "product_id": {"agg": "n_unique", "as": "products"},
            "*": "count",
        },
    }
    data = make_frame(SALES)
    result = DataAggregator(name="agg", config=config).process(data)
    assert type(result) is type(data)
    expected = duck(
        """select "région", coalesce(sum(price), 0) as price_sum, avg(price) as price_mean,
           min(price) as price_min, max(price) as price_max, count(price) as price_count,
           median(price) as price_median, stddev_samp(price) as price_std,
           count(distinct product_id) + (count(*) > count(product_id))::int as products,
           count(*) as "count"
           from t group by "région" order by "région" nulls last""",
        t=SALES,
    )
    assert_same(result, expected, ordered=True)


def test_first_last_eager_follow_row_order(make_frame: Any, engine: str) -> None:
    config = {"group_by": ["product_id"], "aggregations": {"price": ["first", "last"]}}
    data = make_frame(SALES)
    agg = DataAggregator(name="fl", config=config)
    if engine in ("polars-lazy", "duckdb", "pyspark"):  # lazy engines: no row order
        with pytest.raises(UnsupportedOperationError, match="order_by") as info:
            agg.process(data)
        assert engine in str(info.value)
        return
    result = agg.process(data)
    idx = {**SALES, "i": list(range(len(SALES["date"])))}
    expected = duck(
        "select product_id, first(price order by i) as price_first, "
        "last(price order by i) as price_last from t group by product_id "
        "order by product_id nulls last",
        t=idx,
    )
    assert_same(result, expected, ordered=True)


def test_first_last_with_order_by_on_every_engine(make_frame: Any) -> None:
    data = {**SALES, "ts": [7, 6, 5, 4, 3, 2, 1]}
    config = {
        "group_by": ["product_id"],
        "aggregations": {
            "price": [{"agg": "first", "as": "earliest"}, {"agg": "last", "as": "latest"}]
        },
        "order_by": "ts",
    }
    native = make_frame(data)
    result = DataAggregator(name="fl", config=config).process(native)
    assert type(result) is type(native)
    expected = duck(
        "select product_id, first(price order by ts) as earliest, last(price order by ts) as latest "
        "from t group by product_id order by product_id nulls last",
        t=data,
    )
    assert_same(result, expected, ordered=True)


def test_global_aggregation(make_frame: Any) -> None:
    config = {"aggregations": {"revenue": ["sum", "mean"], "*": "count", "quantity": "max"}}
    native = make_frame(SALES)
    result = DataAggregator(name="g", config=config).process(native)
    assert type(result) is type(native)
    expected = duck(
        "select sum(revenue) as revenue_sum, avg(revenue) as revenue_mean, count(*) as count, "
        "max(quantity) as quantity from t",
        t=SALES,
    )
    assert_same(result, expected)


def test_having_and_sort(make_frame: Any) -> None:
    config = {
        "group_by": ["date"],
        "aggregations": {"revenue": "sum", "*": {"agg": "count", "as": "orders"}},
        "having": "revenue > 40 and orders >= 2",
        "sort": ["revenue desc"],
    }
    native = make_frame(SALES)
    result = DataAggregator(name="h", config=config).process(native)
    assert type(result) is type(native)
    expected = duck(
        "select date, coalesce(sum(revenue), 0) as revenue, count(*) as orders from t group by date "
        "having coalesce(sum(revenue), 0) > 40 and count(*) >= 2 order by revenue desc",
        t=SALES,
    )
    assert_same(result, expected, ordered=True)


def test_empty_input(make_frame: Any) -> None:
    empty = pl.DataFrame(SALES).clear()
    native = make_frame(empty)
    grouped = DataAggregator(name="e", config=SPEC_CONFIG).process(native)
    assert type(grouped) is type(native)
    from tests.conftest import to_polars

    out = to_polars(grouped)
    assert out.height == 0
    assert out.columns == ["date", "product_id", "quantity", "price", "revenue"]
    total = DataAggregator(
        name="e2", config={"aggregations": {"revenue": "sum", "price": "mean", "*": "count"}}
    ).process(native)
    assert to_polars(total).rows() == [(0.0, None, 0)]


def test_unicode_column_names(make_frame: Any) -> None:
    data = {"城市": ["東京", "大阪", "東京"], "金额": [1.5, 2.0, 3.0]}
    native = make_frame(data)
    result = DataAggregator(
        name="u",
        config={"group_by": ["城市"], "aggregations": {"金额": {"agg": "sum", "as": "合计"}}},
    ).process(native)
    expected = duck('select "城市", sum("金额") as "合计" from t group by 1 order by 1', t=data)
    assert_same(result, expected, ordered=True)


def test_pyarrow_median_is_exact() -> None:
    table = pl.DataFrame({"g": ["a", "a", "a", "a"], "x": [1.0, 2.0, 10.0, 20.0]}).to_arrow()
    result = DataAggregator(
        name="m", config={"group_by": "g", "aggregations": {"x": "median"}}
    ).process(table)
    assert result.to_pylist() == [{"g": "a", "x": 6.0}]


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (
            {"aggregations": {"price": "avg"}},
            "unknown aggregation 'avg'.*\n.*allowed aggregations: sum, mean",
        ),
        ({"aggregations": {}}, "non-empty"),
        (
            {"aggregations": {"price": ["mean", "mean"]}},
            "two aggregations produce the column 'price_mean'",
        ),
        ({"group_by": ["price"], "aggregations": {"price": "sum"}}, "group_by column"),
        ({"aggregations": {"price": {"agg": "sum", "alias": "x"}}}, "unknown key"),
        ({"aggregations": {"*": "sum"}}, "only takes 'count'"),
        ({"aggregations": {"price": "sum"}, "having": "nope > 1"}, "unknown column 'nope'"),
        ({"aggregations": {"price": "sum"}, "sort": ["nope"]}, "does not produce"),
        ({"aggregations": {"price": "sum"}, "groupby": ["x"]}, "groupby: unknown key"),
    ],
)
def test_bad_config_fails_at_construction(config: dict[str, Any], match: str) -> None:
    with pytest.raises((ConfigError, ColumnNotFoundError), match=match):
        DataAggregator(name="bad", config=config)


def test_missing_column_is_named(make_frame: Any) -> None:
    agg = DataAggregator(
        name="miss", config={"group_by": ["store"], "aggregations": {"price": "sum"}}
    )
    with pytest.raises(ColumnNotFoundError, match="'store' not found") as info:
        agg.process(make_frame(SALES))
    assert "'product_id'" in str(info.value)
    assert agg.get_metadata()["status"] == "failed"


def test_metadata_after_run() -> None:
    agg = DataAggregator(name="meta", config=SPEC_CONFIG)
    agg.process(pl.DataFrame(SALES))
    meta = agg.get_metadata()
    assert meta["status"] == "succeeded"
    assert meta["rows_in"] == 7
    assert meta["rows_out"] == 4
    assert meta["details"]["groups"] == ["date", "product_id"]
