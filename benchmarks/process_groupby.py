"""process_groupby: DataAggregator on the 5M-row sales data (a Polars DataFrame) vs the same
group_by written by hand in Polars.

The spec's aggregation (group by date and product_id: quantity sum, price mean, revenue sum)
plus min/max of price, the sample standard deviation of income, the median age and a row count;
the output sorted by the keys (DataAggregator's default). The data is read from Parquet before
the timer starts. Target: ours at most 1.1x the time of the hand-written Polars.
"""

from __future__ import annotations

from typing import Any

from benchmarks._sales import sales_parquet, warm_up
from benchmarks.harness import Benchmark

GROUP_BY = ["date", "product_id"]
AGGREGATIONS: dict[str, Any] = {
    "quantity": "sum",
    "price": [{"agg": "mean", "as": "price"}, "min", "max"],
    "revenue": "sum",
    "income": {"agg": "std", "as": "income_std"},
    "age": {"agg": "median", "as": "age_median"},
    "*": "count",
}


def prepare(rows: int) -> dict[str, Any]:
    import polars as pl

    path = sales_parquet(rows)
    params = {"frame": pl.read_parquet(path), "rows": rows}
    warm_up(params, ours, baseline)
    return params


def ours(params: dict[str, Any]) -> Any:
    from data_pipeline.processing import DataAggregator

    aggregator = DataAggregator(
        name="daily_product", config={"group_by": GROUP_BY, "aggregations": AGGREGATIONS}
    )
    return aggregator.process(params["frame"])


def baseline(params: dict[str, Any]) -> Any:
    import polars as pl

    return (
        params["frame"]
        .group_by("date", "product_id")
        .agg(
            pl.col("quantity").sum(),
            pl.col("price").mean(),
            pl.col("price").min().alias("price_min"),
            pl.col("price").max().alias("price_max"),
            pl.col("revenue").sum(),
            pl.col("income").std().alias("income_std"),
            pl.col("age").median().alias("age_median"),
            pl.len().alias("count"),
        )
        .sort("date", "product_id", nulls_last=True)
    )


def check(params: dict[str, Any]) -> str:
    """Run both once more (in this process) and compare the aggregates."""
    from polars.testing import assert_frame_equal

    a, b = ours(params), baseline(params)
    try:
        assert_frame_equal(a, b, check_dtypes=False, rel_tol=1e-9)
        same = True
    except AssertionError as exc:
        same = False
        print(exc)
    return f"results equal: {same} ({a.height:,} groups, columns {a.columns})"


BENCHMARK = Benchmark(
    name="process_groupby",
    description="DataAggregator group by date, product_id (8 aggregations) on a Polars frame "
    "vs hand-written Polars",
    variants={"ours": ours, "polars_by_hand": baseline},
    prepare=prepare,
    baseline="polars_by_hand",
    targets={"ours": {"time": 1.1}},
    check=check,
)
