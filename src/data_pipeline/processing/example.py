"""Example: filter, enrich, join and aggregate generated sales data; then batch and stream it.

Run it with ``python -m data_pipeline.processing.example``. It writes a deterministic sales
Parquet file to a temp dir, runs a processing pipeline on it in memory (the spec's aggregator
config), runs the same pipeline out of core with a BatchProcessor, and feeds micro-batches to a
StreamProcessor with hourly windows.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from data_pipeline.processing import (
    BatchProcessor,
    DataAggregator,
    DataEnricher,
    DataFilter,
    DataJoiner,
    ProcessingManager,
    ProcessingPipeline,
    StreamProcessor,
    WindowedAggregator,
)
from data_pipeline.processing.config import data_aggregator_config

__all__ = ["main"]


def _sales(rows: int = 2_000) -> Any:
    import polars as pl

    start = dt.datetime(2024, 1, 1)
    return pl.DataFrame(
        {
            "timestamp": [start + dt.timedelta(minutes=13 * i) for i in range(rows)],
            "product_id": [(i * 7) % 5 + 1 for i in range(rows)],
            "region": [("north", "south", "east", "west")[i % 4] for i in range(rows)],
            "quantity": [(i * 3) % 7 + 1 for i in range(rows)],
            "price": [round(5 + ((i * 17) % 40) * 0.75, 2) for i in range(rows)],
        }
    ).with_columns(pl.col("timestamp").dt.date().alias("date"))


def _pipeline(manager: ProcessingManager, products: Any) -> ProcessingPipeline:
    pipeline = manager.create_pipeline("daily_sales")
    pipeline.add_processor(
        DataFilter(name="north_south", config={"condition": "region in ('north', 'south')"})
    )
    pipeline.add_processor(
        DataEnricher(name="revenue", config={"derived": ["revenue = quantity * price"]})
    )
    pipeline.add_processor(
        DataJoiner(
            name="category",
            config={"how": "left", "on": "product_id", "validate": "many_to_one"},
            right=products,
        )
    )
    pipeline.add_processor(DataAggregator(name="aggregate_data", config=data_aggregator_config))
    return pipeline


def main() -> Any:
    """Run the example; print and return the in-memory aggregate (a Polars DataFrame)."""
    import polars as pl

    sales = _sales()
    products = pl.DataFrame({"product_id": [1, 2, 3, 4, 5], "category": list("ABCAB")})
    manager = ProcessingManager()
    pipeline = _pipeline(manager, products)

    in_memory = manager.process(sales, "daily_sales")
    print(f"in memory: {in_memory.height} (date, product) groups")
    print(in_memory.head(5))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sales.parquet"
        sales.write_parquet(path)
        runner = BatchProcessor(name="out_of_core", config={"batch_size": 250}, pipeline=pipeline)
        batched = runner.process(str(path))
        progress = runner.get_metadata()["details"]["progress"]
        same = batched.equals(in_memory)
        print(f"in {progress['batches']} batches of 250 rows: same result = {same}")

    hourly = ProcessingPipeline("hourly").add_processor(
        WindowedAggregator(
            name="hourly",
            config={
                "time_column": "timestamp",
                "window": "1h",
                "aggregations": {"quantity": "sum", "*": "count"},
            },
        )
    )
    stream = StreamProcessor(name="live", config={"emit": "final"}, pipeline=hourly)
    micro_batches = (sales.slice(i, 100) for i in range(0, 500, 100))
    windows = sum(out.height for out in stream.process_stream(micro_batches))
    print(f"stream: {windows} hourly windows emitted, late rows: {stream.progress['late_rows']}")
    return in_memory


if __name__ == "__main__":  # pragma: no cover
    main()
