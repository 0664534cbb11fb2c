"""DataWarehouseStorage ``engine: delta`` with a Spark frame: every partition writes its Parquet
files from its executor, the driver commits all of them in ONE Delta transaction (docs/spark.md).

Oracles: ``deltalake.DeltaTable(...).to_pyarrow_table()`` (a reader of the table independent of
the store) and DuckDB over that Arrow table, compared with the rows given (plain polars); the
table's version and its commit log. The driver never collects the data: ``toArrow``,
``toPandas``, ``collect`` and ``toLocalIterator`` fail here on any frame holding a data column.
Uses the suite's one local SparkSession.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import forbid_collecting

pytestmark = pytest.mark.spark

N = 600


def rows(n: int = N) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "region": [("n", "s w", None)[i % 3] for i in range(n)],
            "v": [i / 8 for i in range(n)],
            "price": [Decimal(i) / 100 for i in range(n)],
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 400) for i in range(n)],
            "at": [
                dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(seconds=i)
                for i in range(n)
            ],
            "naive": [dt.datetime(2024, 2, 1, 8, 30) + dt.timedelta(minutes=i) for i in range(n)],
            "name": [None if i % 7 == 0 else f"n{i}é" for i in range(n)],
        },
        schema_overrides={"price": pl.Decimal(10, 2), "at": pl.Datetime("us", "UTC")},
    )


def table_rows(uri: str) -> pl.DataFrame:
    """The table as an independent reader sees it (deltalake), sorted by id."""
    import deltalake

    got = pl.from_arrow(deltalake.DeltaTable(uri).to_pyarrow_table())
    assert isinstance(got, pl.DataFrame)
    return got.sort("id")


def version(uri: str) -> int:
    import deltalake

    return int(deltalake.DeltaTable(uri).version())


def commit_actions(uri: str, v: int) -> list[dict[str, Any]]:
    """The actions of commit ``v`` in the table's log."""
    log = Path(uri) / "_delta_log" / f"{v:020d}.json"
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture
def frame(spark: Any) -> Any:
    from data_pipeline.core.engines import spark_from_arrow

    # several Arrow batches per partition, so a task that counts one batch is caught
    before = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "40")
    yield spark_from_arrow(spark, rows().to_arrow()).repartition(4)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", before)


def lake(tmp_path: Path, **config: Any) -> Any:
    from data_pipeline.storage import DataWarehouseStorage

    return DataWarehouseStorage(
        name="lake", config={"engine": "delta", "path": str(tmp_path / "lake"), **config}
    )


def test_executors_write_the_files_and_one_commit_adds_them(
    frame: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Create, append, replace: each store is exactly one new table version whose adds are the
    files the tasks wrote (under the load's directory); the table holds exactly the rows given,
    every value and type as given; the rows reported are the table's count; nothing of the data
    is collected on the driver."""
    import duckdb

    forbid_collecting(monkeypatch, frame, rows().columns)
    store = lake(tmp_path, partition_by=["region"])
    uri = str(tmp_path / "lake" / "sales")
    expected = rows()

    result = store.store(frame, "sales", if_exists="replace")
    assert result.details["action"] == "created"
    assert version(uri) == 0
    assert result.rows == N == table_rows(uri).height
    assert_frame_equal(table_rows(uri).select(expected.columns), expected)
    adds = [a["add"] for a in commit_actions(uri, 0) if "add" in a]
    assert len(adds) >= 4 and all(a["path"].startswith("dp-load-") for a in adds)
    assert sum(json.loads(a["stats"])["numRecords"] for a in adds) == N
    # the files' statistics and partition values are usable by a reader's filters
    import deltalake

    picked = deltalake.DeltaTable(uri).to_pyarrow_table(filters=[("region", "=", "s w")])
    assert sorted(picked["id"].to_pylist()) == [i for i in range(N) if i % 3 == 1]

    result = store.store(frame.filter("id < 100"), "sales", if_exists="append")
    assert (result.rows, result.details["action"], version(uri)) == (100, "appended", 1)
    with duckdb.connect() as con:
        arrow = deltalake.DeltaTable(uri).to_pyarrow_table()
        con.register("t", arrow)
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM t").fetchone() == (N + 100, N)
    assert_frame_equal(
        table_rows(uri).select(expected.columns),
        pl.concat([expected, expected.filter(pl.col("id") < 100)]).sort("id"),
    )
    assert [a for a in commit_actions(uri, 1) if "remove" in a] == []

    # replace with the same schema: one overwrite commit removing every old file
    result = store.store(frame.filter("id >= 500"), "sales", if_exists="replace")
    assert (result.rows, result.details["action"], version(uri)) == (100, "replaced", 2)
    actions = commit_actions(uri, 2)
    assert len([a for a in actions if "remove" in a]) == len(
        [a for v in (0, 1) for a in commit_actions(uri, v) if "add" in a]
    )
    assert_frame_equal(
        table_rows(uri).select(expected.columns), expected.filter(pl.col("id") >= 500)
    )

    # replace with another schema and no partitioning: one CREATE OR REPLACE commit
    plain = lake(tmp_path)
    result = plain.store(frame.select("id", "v").filter("id < 7"), "sales", if_exists="replace")
    assert (result.rows, version(uri)) == (7, 3)
    assert_frame_equal(table_rows(uri), expected.select("id", "v").head(7))
    assert deltalake.DeltaTable(uri).metadata().partition_columns == []
    store.close()


def test_readers_see_the_old_version_until_the_commit(
    frame: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Just before the driver's commit every task has written its files (they are on disk),
    yet a reader sees the old version, all of it; right after, the whole new data."""
    from data_pipeline.storage.warehouse import DataWarehouseStorage

    store = lake(tmp_path)
    uri = str(tmp_path / "lake" / "sales")
    expected = rows()
    store.store(frame.filter("id < 50"), "sales", if_exists="replace")
    old = table_rows(uri)
    seen: list[tuple[int, pl.DataFrame, int]] = []
    real = DataWarehouseStorage._commit_delta

    def observed(self: Any, *args: Any, **kwargs: Any) -> None:
        on_disk = sum(
            name.endswith(".parquet")
            for folder, _, names in os.walk(uri)
            if "dp-load-" in folder
            for name in names
        )
        seen.append((version(uri), table_rows(uri), on_disk))
        real(self, *args, **kwargs)

    monkeypatch.setattr(DataWarehouseStorage, "_commit_delta", observed)
    before_files = sum(1 for f, _, names in os.walk(uri) for n in names if n.endswith(".parquet"))
    for how, batch in (("append", "id >= 50"), ("replace", "id >= 300")):
        seen.clear()
        start = version(uri)
        store.store(frame.filter(batch), "sales", if_exists=how)
        (at, rows_then, on_disk), *_ = seen
        assert at == start and on_disk > before_files  # written, not yet visible
        assert_frame_equal(rows_then, old)
        assert version(uri) == start + 1
        old = table_rows(uri)
        before_files = on_disk
    assert_frame_equal(
        table_rows(uri).select(expected.columns), expected.filter(pl.col("id") >= 300)
    )
    store.close()


def test_a_failed_partition_commits_nothing(
    frame: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One partition raises after writing its files (the others finish theirs): the store fails,
    the table keeps its version and its rows, for append and for replace."""
    import data_pipeline._spark as spark_module
    from data_pipeline.core.errors import DataPipelineError

    store = lake(tmp_path)
    uri = str(tmp_path / "lake" / "sales")
    store.store(frame.filter("id < 50"), "sales", if_exists="replace")
    old = table_rows(uri)
    real = spark_module._write_delta_partition

    def failing(batches: Iterator[Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        from pyspark import TaskContext

        yield from real(batches, *args, **kwargs)  # the files are written
        context = TaskContext.get()
        if context is not None and context.partitionId() == 2:
            raise RuntimeError("partition 2 fails on purpose")

    monkeypatch.setattr(spark_module, "_write_delta_partition", failing)
    for how in ("append", "replace"):
        with pytest.raises(DataPipelineError, match="writing Delta files") as failed:
            store.store(frame, "sales", if_exists=how)
        assert "partition 2 fails on purpose" in str(failed.value.__cause__)
        assert version(uri) == 0
        assert_frame_equal(table_rows(uri), old)
    store.close()


def test_upsert_streams_the_partitions_into_one_merge(
    frame: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """upsert: the key is checked by Spark, the partitions stream into deltalake's MERGE on the
    driver one at a time (never ``toArrow``/``toPandas``/``collect`` of the data): one commit,
    matched rows updated, new rows inserted."""
    store = lake(tmp_path, primary_key=["id"])
    uri = str(tmp_path / "lake" / "sales")
    expected = rows()
    store.store(frame.filter("id < 100"), "sales", if_exists="replace")
    cls = type(frame)

    def collected(*_: Any, **__: Any) -> Any:
        raise AssertionError("the whole Spark frame was collected")

    for method in ("toArrow", "toPandas"):
        monkeypatch.setattr(cls, method, collected)
    changed = frame.filter("id >= 90 AND id < 120").selectExpr(
        "id", "region", "v + 1000 AS v", "price", "day", "at", "naive", "name"
    )
    result = store.store(changed, "sales", if_exists="upsert")
    assert (result.rows, result.details["action"], version(uri)) == (30, "upserted", 1)
    got = table_rows(uri).select(expected.columns)
    want = expected.filter(pl.col("id") < 120).with_columns(
        pl.when(pl.col("id") >= 90).then(pl.col("v") + 1000).otherwise(pl.col("v")).alias("v")
    )
    assert_frame_equal(got, want)

    from data_pipeline.core.errors import StorageError

    twice = changed.unionByName(changed.filter("id = 95"))
    with pytest.raises(StorageError, match="95"):
        store.store(twice, "sales", if_exists="upsert")
    assert version(uri) == 1
    store.close()


def test_append_schema_checks(frame: Any, tmp_path: Path) -> None:
    """append: data with a new or a missing column is refused before any task runs (the table
    keeps its version); with schema_evolution the new column is added (its own commit, before
    the data's), old rows read it as null, missing columns are null."""
    from data_pipeline.core.errors import StorageSchemaError

    store = lake(tmp_path)
    uri = str(tmp_path / "lake" / "sales")
    store.store(frame.select("id", "v").filter("id < 10"), "sales", if_exists="replace")
    extra = frame.selectExpr("id", "v", "name").filter("id >= 10 AND id < 20")
    with pytest.raises(StorageSchemaError, match="'name'"):
        store.store(extra, "sales", if_exists="append")
    with pytest.raises(StorageSchemaError, match="'v'"):
        store.store(frame.select("id").filter("id >= 10 AND id < 20"), "sales", if_exists="append")
    assert version(uri) == 0
    evolving = lake(tmp_path, schema_evolution=True)
    assert evolving.store(extra, "sales", if_exists="append").rows == 10
    assert (
        evolving.store(frame.select("id").filter("id = 20"), "sales", if_exists="append").rows == 1
    )
    got = table_rows(uri)
    expected = rows(21).select("id", "v", "name")
    expected = expected.with_columns(
        name=pl.when(pl.col("id").is_between(10, 19)).then(pl.col("name")),
        v=pl.when(pl.col("id") < 20).then(pl.col("v")),
    )
    assert_frame_equal(got, expected)


def test_a_pipeline_file_stores_into_delta_from_the_executors(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """engine: spark with a Delta warehouse: the file is read and stored by the executors (no
    frame holding a data column is collected on the driver), and the table equals the Polars
    run's."""
    from data_pipeline.pipeline import run_pipeline

    rows().write_parquet(tmp_path / "in.parquet")

    def spec(engine: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "engine": engine,
            "sources": {
                "sales": {
                    "type": "FileSystemSource",
                    "config": {"path": str(tmp_path / "in.parquet")},
                }
            },
            "storage": {
                "lake": {
                    "type": "DataWarehouseStorage",
                    "config": {"engine": "delta", "path": str(tmp_path / f"lake_{engine}")},
                    "store": [{"data": "sales", "table": "sales", "if_exists": "replace"}],
                }
            },
        }
        return out

    run_pipeline(spec("polars"))
    forbid_collecting(monkeypatch, spark.range(1), rows().columns)
    run = run_pipeline(spec("spark"))
    assert run.stages["storage"].rows == N
    assert_frame_equal(
        table_rows(str(tmp_path / "lake_spark" / "sales")),
        table_rows(str(tmp_path / "lake_polars" / "sales")),
    )
