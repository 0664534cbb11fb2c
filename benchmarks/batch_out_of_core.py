"""batch_out_of_core: 50M sales rows (10 Parquet files of 5M rows) aggregated by BatchProcessor in
batches, vs DuckDB SQL over the same files.

Group by date and product_id: quantity sum, price mean/min/max, revenue sum, income sample
standard deviation, row count (all decomposable: BatchProcessor merges per-batch partial
aggregates exactly, in batches of 1M rows read from the files by Polars' streaming reader). A
second variant runs the same pipeline with ``mode: polars_streaming`` (the whole query collected
by Polars' streaming engine). Targets: both stay under 2,000 MB peak memory (an absolute target,
reported by the check lines) and give the same result as DuckDB. DuckDB is the speed reference; no
time target. The files are generated once into ``benchmarks/.data/`` (about 700 MB).

``--rows`` is ignored: the data set is always ``FILES x ROWS_PER_FILE`` rows.
"""

from __future__ import annotations

from typing import Any

from benchmarks._sales import FILES, ROWS_PER_FILE, out_of_core_files, record_run, recorded_run
from benchmarks.harness import Benchmark, same_frame

NAME = "batch_out_of_core"
MEMORY_TARGET_MB = 2_000
BATCH_SIZE = 1_000_000
GROUP_BY = ["date", "product_id"]
AGGREGATIONS: dict[str, Any] = {
    "quantity": "sum",
    "price": [{"agg": "mean", "as": "price"}, "min", "max"],
    "revenue": "sum",
    "income": {"agg": "std", "as": "income_std"},
    "*": "count",
}
SQL = """
SELECT date, product_id,
       sum(quantity) AS quantity,
       avg(price) AS price, min(price) AS price_min, max(price) AS price_max,
       sum(revenue) AS revenue,
       stddev_samp(income) AS income_std,
       count(*) AS count
FROM read_parquet($files)
GROUP BY date, product_id
ORDER BY date, product_id NULLS LAST
"""


def prepare(rows: int) -> dict[str, Any]:
    import data_pipeline.processing  # noqa: F401  (imports stay outside the timed work)

    paths = [str(p) for p in out_of_core_files()]
    return {"files": paths, "rows": FILES * ROWS_PER_FILE}


def _ours(params: dict[str, Any], mode: str = "batches") -> Any:
    from data_pipeline.processing import BatchProcessor, DataAggregator, ProcessingPipeline

    pipeline = ProcessingPipeline("daily").add_processor(
        DataAggregator(
            name="daily_product", config={"group_by": GROUP_BY, "aggregations": AGGREGATIONS}
        )
    )
    runner = BatchProcessor(
        name="out_of_core", config={"batch_size": BATCH_SIZE, "mode": mode}, pipeline=pipeline
    )
    result = runner.process(params["files"])
    if mode == "batches":
        assert runner.progress["rows_in"] == params["rows"], runner.progress
    return result


def _duckdb(params: dict[str, Any]) -> Any:
    import duckdb

    con = duckdb.connect()
    try:
        return con.sql(SQL, params={"files": params["files"]}).pl()
    finally:
        con.close()


def ours(params: dict[str, Any]) -> Any:
    result = _ours(params)
    record_run(NAME, "ours", result)
    return result


def ours_streaming(params: dict[str, Any]) -> Any:
    result = _ours(params, mode="polars_streaming")
    record_run(NAME, "ours_polars_streaming", result)
    return result


def baseline(params: dict[str, Any]) -> Any:
    result = _duckdb(params)
    record_run(NAME, "duckdb_sql", result)
    return result


def check(params: dict[str, Any]) -> str:
    """Compare the last results of the measured runs with DuckDB's; report peaks vs the target.

    When the measured runs recorded nothing (check called on its own), all variants run here.
    """

    runs = {v: recorded_run(NAME, v) for v in ("ours", "ours_polars_streaming", "duckdb_sql")}
    if any(run is None for run in runs.values()):
        runs = {
            "ours": (_ours(params), []),
            "ours_polars_streaming": (_ours(params, "polars_streaming"), []),
            "duckdb_sql": (_duckdb(params), []),
        }
    expected = runs["duckdb_sql"][0]  # type: ignore[index]
    lines = []
    for variant in ("ours", "ours_polars_streaming"):
        result, peaks = runs[variant]  # type: ignore[misc]
        same = same_frame(result, expected)
        line = f"{variant}: result equal to DuckDB: {same} ({result.height:,} groups"
        line += f" from {params['rows']:,} rows)"
        if peaks:
            peak = max(peaks)
            verdict = "OK" if peak < MEMORY_TARGET_MB and same else "MISSED"
            line += (
                f"; peak {peak:,.0f} MB over {len(peaks)} run(s) (target < {MEMORY_TARGET_MB:,} MB)"
            )
            line += f"  {verdict}"
        lines.append(line)
    return "\n".join(lines)


BENCHMARK = Benchmark(
    name=NAME,
    description="BatchProcessor aggregating 50M rows from 10 Parquet files (batches of 1M rows; "
    "and mode polars_streaming), peak < 2 GB, vs DuckDB SQL",
    variants={"ours": ours, "ours_polars_streaming": ours_streaming, "duckdb_sql": baseline},
    prepare=prepare,
    baseline="duckdb_sql",
    targets={},
    check=check,
    default_rows=FILES * ROWS_PER_FILE,
)
