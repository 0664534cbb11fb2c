"""BatchProcessor over a file five times larger than its memory budget gives the in-memory answer.

The memory budget is expressed as ``batch_size``: the rows whose in-memory size is a fifth of the
whole data's, so the file is read in (at least) five batches, never all at once; the aggregates
merged from the batches' partials equal those of one in-memory run of the same pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from examples.sales.generate import generate
from polars.testing import assert_frame_equal

from data_pipeline.processing import (
    BatchProcessor,
    DataAggregator,
    DataEnricher,
    DataFilter,
    DataJoiner,
    ProcessingPipeline,
)

ROWS = 60_000


def pipeline(*, join: pl.DataFrame | None = None) -> ProcessingPipeline:
    """Filter, derive, (join,) aggregate: group keys with nulls, every decomposable aggregation."""
    p = ProcessingPipeline("sales")
    p.add_processor(DataFilter(name="some", config={"condition": "quantity > 1 or price > 100"}))
    p.add_processor(DataEnricher(name="net", config={"derived": ["net = revenue * 0.8"]}))
    if join is not None:
        p.add_processor(
            DataJoiner(
                name="targets",
                config={"how": "left", "on": "region", "validate": "many_to_one"},
                right=join,
            )
        )
    aggregations: dict[str, Any] = {
        "quantity": "sum",
        "net": ["sum", "mean"],
        "price": ["min", "max", "count", "std"],
        "order_id": [{"agg": "first", "as": "first_order"}, {"agg": "last", "as": "last_order"}],
        "*": "count",
    }
    if join is not None:
        aggregations["product_right"] = {"agg": "max", "as": "region_product"}
    p.add_processor(
        DataAggregator(
            name="by_region_education",
            config={"group_by": ["region", "education"], "aggregations": aggregations},
        )
    )
    return p


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return generate(ROWS, seed=3)


def budget_rows(frame: pl.DataFrame, factor: int = 5) -> int:
    """``batch_size`` for a memory budget of 1/factor of the frame's in-memory size."""
    budget_bytes = frame.estimated_size() / factor
    return int(budget_bytes / (frame.estimated_size() / frame.height))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_five_times_the_budget_gives_the_in_memory_aggregates(
    tmp_path: Path, data: pl.DataFrame, fmt: str
) -> None:
    path = tmp_path / f"sales.{fmt}"
    if fmt == "parquet":
        data.write_parquet(path, row_group_size=5_000)
    else:
        data.write_csv(path)
    batch_size = budget_rows(data)
    assert data.estimated_size() >= 5 * batch_size * (data.estimated_size() / data.height) * 0.999
    sizes: list[int] = []
    seen = 0

    def on_progress(progress: dict[str, Any]) -> None:
        nonlocal seen
        sizes.append(progress["rows_in"] - seen)
        seen = progress["rows_in"]

    runner = BatchProcessor(
        name="out_of_core",
        config={"batch_size": batch_size},
        pipeline=pipeline(),
        on_progress=on_progress,
    )
    result = runner.process(str(path))

    expected = pipeline().process(data)
    assert_frame_equal(result, expected, check_dtypes=False, rel_tol=1e-9)
    assert len(sizes) >= 5 and max(sizes) <= batch_size and sum(sizes) == ROWS
    progress = runner.get_metadata()["details"]["progress"]
    assert progress["rows_in"] == ROWS and progress["batches"] == len(sizes)
    assert (
        result["count"].sum()
        == data.filter((pl.col("quantity") > 1) | (pl.col("price") > 100)).height
    )
    assert result["education"].null_count() > 0  # null group keys form their own groups


def test_only_the_needed_columns_are_read_and_join_suffixes_survive(
    tmp_path: Path, data: pl.DataFrame
) -> None:
    """The file is read with the columns the steps need; a join whose right side has a column of
    the same name as a left one still suffixes it (the clashing left column is read)."""
    targets = pl.DataFrame(
        {"region": ["north", "south", "east", "west", "central"], "product": list("abcde")}
    )
    path = tmp_path / "sales.parquet"
    data.write_parquet(path, row_group_size=5_000)
    runner = BatchProcessor(
        name="projected", config={"batch_size": 12_000}, pipeline=pipeline(join=targets)
    )
    assert runner._input_columns(data.columns) == [
        "order_id",
        "product",
        "region",
        "quantity",
        "price",
        "revenue",
        "education",
    ]
    result = runner.process(str(path))
    expected = pipeline(join=targets).process(data)
    assert_frame_equal(result, expected, check_dtypes=False, rel_tol=1e-9)
    assert sorted(result["region_product"].unique()) == list("abcde")

    # without an aggregation every batch is written out whole: all columns are read
    plain = ProcessingPipeline("plain").add_processor(
        DataFilter(name="f", config={"condition": "quantity > 1"})
    )
    runner = BatchProcessor(name="rows", config={"batch_size": 12_000}, pipeline=plain)
    assert runner._input_columns(data.columns) is None
    assert runner.process(str(path)).columns == data.columns


def test_std_merged_across_batches_keeps_its_precision_on_large_values() -> None:
    """Epoch-second-sized values with a small spread: a sum-of-squares merge would lose every
    digit; the count/mean/M2 merge keeps the in-memory answer."""
    n = 30_000
    k = pl.int_range(0, n, eager=True)
    df = pl.DataFrame(
        {
            "key": k % 3,
            "ts": 1.7e9 + ((k * 7919) % 1000).cast(pl.Float64) / 1000,  # spread ~0.29
        }
    )
    aggregator = DataAggregator(
        name="spread", config={"group_by": ["key"], "aggregations": {"ts": ["std", "mean"]}}
    )
    runner = BatchProcessor(
        name="batched",
        config={"batch_size": 1_000},
        pipeline=ProcessingPipeline("p").add_processor(aggregator),
    )
    result = runner.process(df)
    expected = aggregator.process(df)
    assert_frame_equal(result, expected, rel_tol=1e-6)
