"""process_join: DataJoiner joining the 5M-row sales data (a Polars DataFrame) to a products x
regions dimension table vs the same join written by hand in Polars.

A left join on ``product_id, region`` with ``validate: many_to_one`` (the dimension must be unique
on its keys; Polars checks the same with ``validate="m:1"``), adding the region manager, the
margin and the target units to every sale. The data is read from Parquet before the timer starts.
Target: ours at most 1.1x the time of the hand-written Polars.
"""

from __future__ import annotations

from typing import Any

from benchmarks._sales import dimension_table, sales_parquet, warm_up
from benchmarks.harness import Benchmark

KEYS = ["product_id", "region"]


def prepare(rows: int) -> dict[str, Any]:
    import polars as pl

    path = sales_parquet(rows)
    params = {"frame": pl.read_parquet(path), "dimension": dimension_table(), "rows": rows}
    warm_up(params, ours, baseline)
    return params


def ours(params: dict[str, Any]) -> Any:
    from data_pipeline.processing import DataJoiner

    joiner = DataJoiner(
        name="add_region_targets",
        config={"how": "left", "on": KEYS, "validate": "many_to_one"},
        right=params["dimension"],
    )
    return joiner.process(params["frame"])


def baseline(params: dict[str, Any]) -> Any:
    return params["frame"].join(params["dimension"], on=KEYS, how="left", validate="m:1")


def check(params: dict[str, Any]) -> str:
    """Run both once more (in this process) and compare the joined frames."""
    from polars.testing import assert_frame_equal

    a, b = ours(params), baseline(params)
    try:
        assert_frame_equal(a, b)
        same = True
    except AssertionError as exc:
        same = False
        print(exc)
    matched = a.height - a["region_manager"].null_count()
    return f"results equal: {same} ({a.height:,} rows, {matched:,} matched, columns {a.columns})"


BENCHMARK = Benchmark(
    name="process_join",
    description="DataJoiner left join of the sales rows to a products x regions dimension "
    "(validate many_to_one) vs hand-written Polars",
    variants={"ours": ours, "polars_by_hand": baseline},
    prepare=prepare,
    baseline="polars_by_hand",
    targets={"ours": {"time": 1.1}},
    check=check,
)
