"""spark_scale_out: 20M sales rows in 4 Parquet files, read -> filter -> group by -> write Parquet,
as a pipeline file with ``engine: spark`` vs the same work in plain PySpark code, beside the
pipeline on the default Polars engine.

Spark runs ``local[2]`` with ``spark.driver.memory: 1g`` in each measured process (started in
``prepare``, untimed). Targets: the pipeline completes, its result equals plain PySpark's, its
time is at most 1.2x plain PySpark's, and the Python driver's peak RSS (``ru_maxrss`` of the
Python process; the JVM is a child process) stays under 500 MB. The files are generated once into
``benchmarks/.data/`` (about 300 MB). ``--rows`` is ignored.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._sales import ROWS_PER_FILE, out_of_core_files, record_run, recorded_run
from benchmarks.harness import Benchmark, same_frame

NAME = "spark_scale_out"
FILES = 4
RSS_TARGET_MB = 500
TIME_TARGET = 1.2
MIN_QUANTITY = 3


def _variant() -> str:
    """The variant this measured child runs (``-m benchmarks --child NAME VARIANT ROWS``)."""
    return sys.argv[-2] if "--child" in sys.argv else ""


def prepare(rows: int) -> dict[str, Any]:
    files = [str(p) for p in out_of_core_files(FILES, ROWS_PER_FILE)]
    params: dict[str, Any] = {"files": files, "rows": FILES * ROWS_PER_FILE}
    if _variant() in ("pipeline_spark", "pyspark_code"):
        from pyspark.sql import SparkSession

        import data_pipeline.pipeline  # noqa: F401  (imports stay outside the timed work)

        params["spark"] = (
            SparkSession.builder.master("local[2]")
            .appName(NAME)
            .config("spark.driver.memory", "1g")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "8")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        params["spark"].sparkContext.setLogLevel("ERROR")
    return params


def _spec(engine: str, files: list[str], out: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": NAME,
        "engine": engine,
        "sources": {"sales": {"type": "FileSystemSource", "config": {"path": files}}},
        "processing": {
            "by_product": {
                "input": "sales",
                "steps": [
                    {
                        "type": "DataFilter",
                        "config": {
                            "conditions": [
                                {"column": "quantity", "op": ">=", "value": MIN_QUANTITY}
                            ]
                        },
                    },
                    {
                        "type": "DataAggregator",
                        "config": {
                            "group_by": ["region", "product_id"],
                            "aggregations": {"revenue": "sum", "quantity": "sum", "*": "count"},
                        },
                    },
                ],
            }
        },
        "storage": {
            "out": {
                "type": "FileSystemStorage",
                "config": {"base_path": out},
                "store": [{"data": "by_product"}],
            }
        },
    }
    if engine == "spark":
        spec["spark"] = {"conf": {"spark.sql.shuffle.partitions": 8}}
    return spec


def _out(variant: str) -> str:
    path = Path(tempfile.gettempdir()) / f"dp-bench-{NAME}-{variant}"
    shutil.rmtree(path, ignore_errors=True)
    return str(path)


def _read_back(path: str) -> Any:
    import polars as pl

    files = [Path(path)] if Path(path).is_file() else sorted(Path(path).rglob("*.parquet"))
    frame = pl.concat([pl.read_parquet(f) for f in files if not f.name.startswith(".")])
    import polars.selectors as cs

    numbers = frame.with_columns(cs.numeric().cast(pl.Float64))  # sums: float64 on every engine
    return numbers.sort(["region", "product_id"])


def pipeline_spark(params: dict[str, Any]) -> Any:
    from data_pipeline.pipeline import run_pipeline

    out = _out("pipeline_spark")
    run_pipeline(_spec("spark", params["files"], out))
    record_run(NAME, "pipeline_spark", _read_back(str(Path(out) / "by_product")))


def pyspark_code(params: dict[str, Any]) -> Any:
    from pyspark.sql import functions as F

    out = _out("pyspark_code")
    spark = params["spark"]
    (
        spark.read.parquet(*params["files"])
        .filter(F.col("quantity") >= MIN_QUANTITY)
        .groupBy("region", "product_id")
        .agg(
            F.sum("revenue").alias("revenue"),
            F.sum("quantity").alias("quantity"),
            F.count(F.lit(1)).alias("count"),
        )
        .write.parquet(out)
    )
    record_run(NAME, "pyspark_code", _read_back(out))


def pipeline_polars(params: dict[str, Any]) -> Any:
    from data_pipeline.pipeline import run_pipeline

    out = _out("pipeline_polars")
    run_pipeline(_spec("polars", params["files"], out))
    record_run(NAME, "pipeline_polars", _read_back(str(Path(out) / "by_product.parquet")))


def check(params: dict[str, Any]) -> str:

    runs = {v: recorded_run(NAME, v) for v in ("pipeline_spark", "pyspark_code", "pipeline_polars")}
    if any(run is None for run in runs.values()):
        return "run through `python -m benchmarks spark_scale_out` (the check reads its runs)"
    expected = runs["pyspark_code"][0]  # type: ignore[index]
    lines = []
    for variant in ("pipeline_spark", "pipeline_polars"):
        result, peaks = runs[variant]  # type: ignore[misc]
        same = same_frame(result, expected)
        lines.append(
            f"{variant}: result equal to plain PySpark: {same} ({result.height:,} groups from "
            f"{params['rows']:,} rows); Python peak {max(peaks):,.0f} MB"
        )
    measured = params.get("measured", {})
    if measured.get("pipeline_spark") and measured.get("pyspark_code"):
        ratio = min(measured["pipeline_spark"]) / min(measured["pyspark_code"])
        peak = max(runs["pipeline_spark"][1])  # type: ignore[index]
        ok = ratio <= TIME_TARGET and peak < RSS_TARGET_MB
        lines.append(
            f"pipeline_spark vs pyspark_code: time {ratio:.2f}x (target <= {TIME_TARGET}x), "
            f"Python peak {peak:,.0f} MB (target < {RSS_TARGET_MB} MB)  {'OK' if ok else 'MISSED'}"
        )
    return "\n".join(lines)


BENCHMARK = Benchmark(
    name=NAME,
    description="engine: spark pipeline (read -> filter -> group by -> write Parquet, 20M rows, "
    "local[2], 1g driver) vs plain PySpark code, beside the Polars engine",
    variants={
        "pipeline_spark": pipeline_spark,
        "pyspark_code": pyspark_code,
        "pipeline_polars": pipeline_polars,
    },
    prepare=prepare,
    baseline="pyspark_code",
    targets={"pipeline_spark": {"time": TIME_TARGET}},
    check=check,
    default_rows=FILES * ROWS_PER_FILE,
)
