"""FileSystemSource with ``engine: spark``: ``spark.read`` on the executors (issue 12).

For each format the Spark read must be a file scan in the physical plan (not ``LocalTableScan``
/ ``Scan ExistingRDD``, which would mean the driver read the data and shipped it) and give the
rows an independent reader gives: DuckDB SQL over the same files (pyarrow's ORC reader for ORC,
which DuckDB does not read). ``on_bad_rows`` keeps the driver's meaning and counts whatever
columns a later step uses. Uses the suite's one local SparkSession.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data_pipeline.core.errors import ParseError
from data_pipeline.ingestion import FileSystemSource
from tests.conftest import to_polars

pytestmark = pytest.mark.spark


def plan(frame: Any) -> str:
    return str(frame._jdf.queryExecution().executedPlan().toString())


def scanned(frame: Any) -> bool:
    text = plan(frame)
    return "FileScan" in text and "LocalTableScan" not in text and "ExistingRDD" not in text


def sales(start: int, n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(start, start + n)),
            "region": [("north", "south", None)[i % 3] for i in range(start, start + n)],
            "amount": [i / 4 for i in range(start, start + n)],
        }
    )


def write(frame: pl.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        frame.write_csv(path)
    elif fmt == "jsonl":
        frame.write_ndjson(path)
    elif fmt == "json":
        frame.write_json(path)  # one array of records
    elif fmt == "parquet":
        frame.write_parquet(path)
    else:
        import pyarrow.orc as orc

        orc.write_table(frame.to_arrow(), str(path))


def oracle(folder: Path, fmt: str) -> pl.DataFrame:
    """The files as DuckDB (or, for ORC, pyarrow) reads them, with the file each row is from."""
    if fmt == "orc":
        import pyarrow.orc as orc

        return pl.concat(
            pl.from_arrow(orc.read_table(str(f))).with_columns(file=pl.lit(str(f)))  # type: ignore[union-attr]
            for f in sorted(folder.glob("*.orc"))
        )
    reader = {
        "csv": "read_csv('{g}', filename = true)",
        "jsonl": "read_json('{g}', format = 'newline_delimited', filename = true)",
        "json": "read_json('{g}', format = 'array', filename = true)",
        "parquet": "read_parquet('{g}', filename = true)",
    }[fmt].format(g=f"{folder}/*.{fmt}")
    return duckdb.sql(f"SELECT id, region, amount, filename AS file FROM {reader}").pl()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "parquet", "orc"])
def test_each_format_is_read_by_the_executors(spark: Any, tmp_path: Path, fmt: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write(sales(i * 100, 100), folder / f"part{i}.{fmt}", fmt)
    source = FileSystemSource(
        name="s", config={"path": str(folder), "format": fmt, "source_file_column": "file"}
    )
    assert source.spark_unsupported() is None
    frame = source.ingest_spark(spark)
    assert scanned(frame), plan(frame)
    assert frame.columns == ["id", "region", "amount", "file"]  # the files' order, as on Polars
    got = to_polars(frame).sort("id")
    assert_frame_equal(got, oracle(folder, fmt).sort("id"), check_dtypes=False)
    # and the same as the driver's (polars) read of the same source
    assert_frame_equal(got, source.ingest().select(got.columns).sort("id"), check_dtypes=False)


def test_hive_partitions_and_schema_overrides(spark: Any, tmp_path: Path) -> None:
    folder = tmp_path / "lake"
    data = sales(0, 300).with_columns(year=pl.Series([2023, 2024, 2025] * 100))
    data.write_parquet(folder, partition_by=["year"])
    source = FileSystemSource(
        name="s", config={"path": str(folder), "schema_overrides": {"amount": "string"}}
    )
    frame = source.ingest_spark(spark)
    assert scanned(frame), plan(frame)
    got = to_polars(frame).sort("id")
    want = duckdb.sql(
        f"SELECT id, region, amount::VARCHAR AS amount, year FROM "
        f"read_parquet('{folder}/**/*.parquet', hive_partitioning = true)"
    ).pl()
    assert got.schema["amount"] == pl.String
    assert_frame_equal(got.select(want.columns), want.sort("id"), check_dtypes=False)

    csv = tmp_path / "zips.csv"
    csv.write_text("zip,n\n01234,1\n00042,2\n")
    zips = FileSystemSource(
        name="z", config={"path": str(csv), "schema_overrides": {"zip": "string"}}
    )
    assert to_polars(zips.ingest_spark(spark))["zip"].to_list() == ["01234", "00042"]


BAD_CSV = "a,b,c\n1,2,3\n4,5\n6,7,8,9\nx,8,9\n10,11,12\n13,14,15\n"
BAD_JSONL = '{"a": 1, "b": "x"}\nnot json\n[1, 2]\n{"a": 3, "b": "y"}\n{"a": 4}\n'


@pytest.mark.parametrize(("fmt", "text", "good"), [("csv", BAD_CSV, 3), ("jsonl", BAD_JSONL, 3)])
def test_bad_rows_are_judged_on_whole_records(
    spark: Any, tmp_path: Path, fmt: str, text: str, good: int
) -> None:
    path = tmp_path / f"t.{fmt}"
    path.write_text(text)
    # a is an integer column: "x" is a value of the wrong type (as are "4,5" and "6,7,8,9",
    # rows of the wrong shape, and the JSON Lines that are not objects)
    config = {"path": str(path), "on_bad_rows": "skip", "schema_overrides": {"a": "int64"}}
    driver = FileSystemSource(name="d", config=config)
    want = driver.ingest()
    assert want.height == good  # the oracle of what "skip" keeps: the driver's read
    source = FileSystemSource(name="s", config=config)
    frame = source.ingest_spark(spark)
    assert_frame_equal(to_polars(frame).sort("a"), want.sort("a"), check_dtypes=False)
    # the same rows whichever columns a later step reads (Spark's DROPMALFORMED would keep
    # "4,5" when only column a is read)
    assert frame.select("a").count() == good
    assert frame.count() == good
    assert source.get_metadata()["rows_rejected"] == driver.get_metadata()["rows_rejected"]

    strict = FileSystemSource(name="e", config={**config, "on_bad_rows": "error"})
    with pytest.raises(ParseError, match="cannot parse"):
        strict.ingest_spark(spark)
    with pytest.raises(ParseError):
        strict.ingest()


def test_incremental_reads_only_new_files_on_the_executors(spark: Any, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    config = {"path": str(folder), "incremental": True, "state_path": str(tmp_path / "s.json")}
    for i in range(2):
        sales(i * 10, 10).write_parquet(folder / f"p{i}.parquet")
    first = FileSystemSource(name="s", config=config).ingest_spark(spark)
    assert scanned(first)
    assert sorted(to_polars(first)["id"].to_list()) == list(range(20))
    sales(20, 5).write_parquet(folder / "p2.parquet")
    second = FileSystemSource(name="s", config=config).ingest_spark(spark)
    assert sorted(to_polars(second)["id"].to_list()) == list(range(20, 25))
    # nothing new: None, and the pipeline takes the driver's empty frame with the known columns
    assert FileSystemSource(name="s", config=config).ingest_spark(spark) is None
    empty = FileSystemSource(name="s", config=config).ingest()
    assert empty.height == 0 and empty.columns == ["id", "region", "amount"]
