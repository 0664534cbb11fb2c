"""e2e_batch: the sales pipeline end to end, ours vs the same steps written by hand in Polars.

Steps: scan the CSV, fill missing values (median for numbers, mode for text), clip outliers
(IQR, factor 3), write Parquet, group by date and product. Target: ours at most 1.15x the time
and 1.5x the peak memory of the hand-written Polars.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.data import sales_csv
from benchmarks.harness import Benchmark

NUMERIC_FILL = ["age", "income", "price"]
TEXT_FILL = ["education"]
CLIP = ["quantity", "price", "income"]
FACTOR = 3.0


def prepare(rows: int) -> dict[str, Any]:
    # imports are not part of the measurement: load both sides' modules before the clock starts
    import polars  # noqa: F401

    import data_pipeline.ingestion
    import data_pipeline.pipeline
    import data_pipeline.processing
    import data_pipeline.storage
    import data_pipeline.transformation  # noqa: F401

    return {"csv": sales_csv(rows), "rows": rows}


def _out_dir(name: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"dp-bench-e2e-{name}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def pipeline_spec(csv: Path, out: Path) -> dict[str, Any]:
    return {
        "name": "e2e_batch",
        "sources": {
            "sales": {
                "type": "FileSystemSource",
                "config": {"path": str(csv), "try_parse_dates": True, "output": "lazy"},
            }
        },
        "transformations": {
            "clean": [
                {
                    "type": "MissingValueHandler",
                    "config": {"strategy": "fill", "columns": [*NUMERIC_FILL, *TEXT_FILL]},
                },
                {
                    "type": "OutlierHandler",
                    "config": {
                        "method": "iqr",
                        "factor": FACTOR,
                        "action": "clip",
                        "columns": CLIP,
                    },
                },
            ]
        },
        "storage": {
            "lake": {
                "type": "FileSystemStorage",
                "config": {"base_path": str(out)},
                "store": [{"data": "clean", "table": "sales_clean", "if_exists": "replace"}],
            }
        },
        "processing": {
            "daily": {
                "input": "clean",
                "steps": [
                    {
                        "type": "DataAggregator",
                        "config": {
                            "group_by": ["date", "product_id"],
                            "aggregations": {"quantity": "sum", "price": "mean", "revenue": "sum"},
                        },
                    }
                ],
            }
        },
    }


def ours(params: dict[str, Any]) -> Any:
    from data_pipeline.pipeline import run_pipeline

    out = _out_dir("ours")
    result = run_pipeline(pipeline_spec(params["csv"], out))
    return result.data["daily"]


def baseline(params: dict[str, Any]) -> Any:
    import polars as pl

    out = _out_dir("polars")
    lf = pl.scan_csv(params["csv"], try_parse_dates=True)
    lf = lf.with_columns(
        *[pl.col(c).fill_null(pl.col(c).median()) for c in NUMERIC_FILL],
        *[pl.col(c).fill_null(pl.col(c).mode().first()) for c in TEXT_FILL],
    )
    bounds = []
    for c in CLIP:
        q1, q3 = pl.col(c).quantile(0.25), pl.col(c).quantile(0.75)
        iqr = q3 - q1
        bounds.append(pl.col(c).clip(q1 - FACTOR * iqr, q3 + FACTOR * iqr))
    df = lf.with_columns(bounds).collect()
    df.write_parquet(out / "sales_clean.parquet")
    return (
        df.group_by("date", "product_id")
        .agg(pl.col("quantity").sum(), pl.col("price").mean(), pl.col("revenue").sum())
        .sort("date", "product_id")
    )


def check(params: dict[str, Any]) -> str:
    """Run both once more (in this process) and compare the aggregates."""
    import polars as pl

    a = ours(params).sort("date", "product_id")
    b = baseline(params)
    a = a.with_columns(pl.col("quantity").cast(pl.Float64))
    b = b.with_columns(pl.col("quantity").cast(pl.Float64))
    same = a.shape == b.shape and all(
        ((a[c] - b[c]).abs().max() or 0) < 1e-6
        for c in ("quantity", "price", "revenue")  # type: ignore[operator]
    )
    return f"results equal: {same} ({a.height:,} groups)"


BENCHMARK = Benchmark(
    name="e2e_batch",
    description="sales CSV -> fill missing -> clip outliers -> Parquet -> group by (ours vs hand-written Polars)",
    variants={"ours": ours, "polars_by_hand": baseline},
    prepare=prepare,
    baseline="polars_by_hand",
    targets={"ours": {"time": 1.15, "memory": 1.5}},
    check=check,
)
