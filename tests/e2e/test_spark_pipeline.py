"""examples/sales on Spark (``DATA_PIPELINE_ENGINE=spark``) gives the Polars run's aggregates.

The pipeline file is unchanged: the engine comes from the environment variable the YAML reads.
Both runs read the same 5,000 generated rows from copies of the example in tmp_path. The Spark run
uses the test session's shared local SparkSession (the pipeline takes the active session).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data_pipeline.pipeline import run_pipeline
from tests.conftest import to_polars

ROOT = Path(__file__).resolve().parents[2]
KEYS = ["date", "product_id"]

pytestmark = pytest.mark.spark


def copy_example(target: Path, csv: Path) -> Path:
    shutil.copytree(
        ROOT / "examples" / "sales",
        target,
        ignore=shutil.ignore_patterns("data", "output", "__pycache__"),
    )
    (target / "data").mkdir()
    shutil.copy(csv, target / "data" / "sales.csv")
    return target / "pipeline.yaml"


def same(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """Equal, except ``revenue``: Spark's round() (``revenue = round(quantity * price, 2)``)
    rounds half up on the decimal form, Polars half to even on the double, so a row whose
    product ends in exactly half a cent may differ by 0.01 (docs/spark.md, Limits)."""
    others = [c for c in want.columns if c != "revenue"]
    assert_frame_equal(got.select(others), want.select(others), check_dtypes=False, rel_tol=1e-9)
    gap = (got["revenue"] - want["revenue"]).abs()
    assert float(gap.max()) < 0.1  # a few half-cent rows in a group at most
    assert float(gap.sum()) <= 1e-5 * float(want["revenue"].abs().sum())


def test_sales_on_spark_matches_polars(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examples.sales.generate import write_csv

    from data_pipeline.pipeline import run_pipeline

    csv = write_csv(tmp_path / "sales.csv", 5_000)
    monkeypatch.setenv("DATA_PIPELINE_ENGINE", "polars")
    polars_run = run_pipeline(copy_example(tmp_path / "polars", csv))
    monkeypatch.setenv("DATA_PIPELINE_ENGINE", "spark")
    spark_yaml = copy_example(tmp_path / "spark", csv)
    spark_run = run_pipeline(spark_yaml)

    from pyspark.sql import DataFrame

    for name in ("sales", "clean", "daily_revenue", "revenue_by_region"):
        assert isinstance(spark_run.data[name], DataFrame), name  # it ran on Spark end to end

    want = to_polars(polars_run.data["daily_revenue"]).sort(KEYS)
    got = to_polars(spark_run.data["daily_revenue"]).sort(KEYS)
    assert got.height == want.height > 0
    same(got, want)
    by_region = ["region", "category"]
    same(
        to_polars(spark_run.data["revenue_by_region"]).sort(by_region),
        to_polars(polars_run.data["revenue_by_region"]).sort(by_region),
    )

    # storage and the dashboard took the Spark frames
    output = spark_yaml.parent / "output"
    con = duckdb.connect(str(output / "warehouse.duckdb"), read_only=True)
    try:
        stored = con.sql("select * from daily_revenue").pl().sort(KEYS)
    finally:
        con.close()
    same(stored, want)
    # Spark's executors wrote the lake as a dataset directory of part files (docs/spark.md)
    lake = pl.read_parquet(output / "lake" / "sales_clean" / "*.parquet")
    assert lake.height == 5_000
    assert (output / "sales_dashboard.html").stat().st_size > 0


def test_engine_spark_converts_through_arrow(spark: Any) -> None:
    """Naive timestamps stay naive, categoricals become strings, nulls and NaN survive."""
    import datetime as dt

    from pyspark.sql import DataFrame

    from data_pipeline.pipeline import _materialize, _to_engine

    frame = pl.DataFrame(
        {
            "ts": [dt.datetime(2024, 3, 1, 9, 30), None],
            "région": pl.Series(["n", None], dtype=pl.Categorical),
            "x": [float("nan"), None],
        }
    )
    out = _materialize(_to_engine(frame.lazy(), "spark"))
    assert isinstance(out, DataFrame)
    assert {f.name: f.dataType.typeName() for f in out.schema.fields} == {
        "ts": "timestamp_ntz",
        "région": "string",
        "x": "double",
    }
    back = to_polars(out)
    assert back["ts"].to_list() == frame["ts"].to_list()
    assert back["région"].to_list() == ["n", None]
    assert back["x"].is_nan().to_list() == [True, None]
    assert _to_engine(out, "spark") is out


def test_spark_section_sets_the_session_conf(spark: Any, tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    pl.DataFrame({"k": ["a", "b", "a"], "v": [1, 2, 3]}).write_csv(csv)
    before = spark.conf.get("spark.sql.shuffle.partitions")
    spec = {
        "engine": "spark",
        "spark": {"master": "local[2]", "conf": {"spark.sql.shuffle.partitions": 3}},
        "sources": {"t": {"type": "FileSystemSource", "config": {"path": str(csv)}}},
        "processing": {
            "agg": [
                {
                    "type": "DataAggregator",
                    "config": {"group_by": ["k"], "aggregations": {"v": "sum"}},
                }
            ]
        },
    }
    try:
        result = run_pipeline(spec)
        assert spark.conf.get("spark.sql.shuffle.partitions") == "3"
        assert to_polars(result.data["agg"]).sort("k")["v"].to_list() == [4, 2]
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)


def test_spark_section_without_engine_spark_is_invalid() -> None:
    from data_pipeline.core.errors import ConfigError
    from data_pipeline.pipeline import load_pipeline

    with pytest.raises(ConfigError, match="engine: spark"):
        load_pipeline({"spark": {"master": "local[2]"}, "sources": {}})
