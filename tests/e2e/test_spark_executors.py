"""``engine: spark`` on the executors: file sources are ``spark.read`` scans, JDBC sources are
partitioned JDBC scans with the incremental predicate pushed down, Parquet and JDBC storage are
written by Spark jobs with the storage layer's guarantees (docs/spark.md).

Oracles: the same pipeline on Polars, plain Polars/DuckDB reads of what was written, and plain
driver (psycopg / PyMySQL) reads of the tables. Uses the suite's one local SparkSession.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data_pipeline.pipeline import run_pipeline
from tests.conftest import JDBC_JARS, to_polars
from tests.integration.test_storage_relational import DB

pytestmark = pytest.mark.spark


def plan(frame: Any) -> str:
    """The physical plan of a Spark DataFrame, as text."""
    return str(frame._jdf.queryExecution().executedPlan().toString())


def sales(n: int = 600) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "region": [("n", "s", "e")[i % 3] for i in range(n)],
            "amount": [float(i % 97) / 4 for i in range(n)],
            "day": [f"2024-01-{1 + i % 28:02d}" for i in range(n)],
        }
    )


def spec_for(engine: str, tmp: Path, *, fmt: str = "parquet") -> dict[str, Any]:
    return {
        "engine": engine,
        "sources": {
            "sales": {
                "type": "FileSystemSource",
                "config": {"path": str(tmp / "in"), "format": fmt, "source_file_column": "file"},
            }
        },
        "processing": {
            "by_region": {
                "input": "sales",
                "steps": [
                    {
                        "type": "DataFilter",
                        "config": {"conditions": [{"column": "amount", "op": ">", "value": 3}]},
                    },
                    {
                        "type": "DataAggregator",
                        "config": {
                            "group_by": ["region"],
                            "aggregations": {"amount": ["sum", "count"]},
                        },
                    },
                ],
            }
        },
        "storage": {
            "lake": {
                "type": "FileSystemStorage",
                "config": {"base_path": str(tmp / f"lake_{engine}")},
                "store": [{"data": "by_region"}, {"data": "sales", "table": "raw"}],
            }
        },
    }


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_file_source_is_a_scan_on_the_executors(spark: Any, tmp_path: Path, fmt: str) -> None:
    data = sales()
    (tmp_path / "in").mkdir()
    for i, part in enumerate(data.iter_slices(200)):
        path = tmp_path / "in" / f"part{i}.{fmt}"
        {"parquet": part.write_parquet, "csv": part.write_csv, "jsonl": part.write_ndjson}[fmt](
            path
        )
    want = run_pipeline(spec_for("polars", tmp_path, fmt=fmt))
    got = run_pipeline(spec_for("spark", tmp_path, fmt=fmt))

    source = got.data["sales"]
    text = plan(source)
    assert "FileScan" in text and "ExistingRDD" not in text and "LocalTableScan" not in text
    # same rows, types and source-file column as the driver's read
    assert_frame_equal(to_polars(source).sort("id"), to_polars(want.data["sales"]).sort("id"))
    stored = pl.read_parquet(tmp_path / "lake_spark" / "by_region" / "*.parquet").sort("region")
    assert_frame_equal(stored, to_polars(want.data["by_region"]).sort("region"))


def test_parquet_storage_from_spark_replace_append_and_failed_write(
    spark: Any, tmp_path: Path
) -> None:
    from pyspark.sql import functions as F

    from data_pipeline.storage import FileSystemStorage

    lake = FileSystemStorage(
        name="lake", config={"base_path": str(tmp_path), "partition_by": ["region"]}
    )
    flat = FileSystemStorage(name="flat", config={"base_path": str(tmp_path)})
    first = sales(90)
    frame = spark.createDataFrame(first.to_arrow())
    assert lake.store(frame, "s").rows == 90  # counted from the written files' footers
    assert flat.store(frame, "f").rows == 90
    more = spark.createDataFrame(sales(30).with_columns(pl.col("id") + 1000).to_arrow())
    assert lake.store(more, "s", if_exists="append").rows == 30
    assert flat.store(more, "f", if_exists="append").rows == 30
    oracle = pl.concat([first, sales(30).with_columns(pl.col("id") + 1000)])
    for store, name in ((lake, "s"), (flat, "f")):
        back = to_polars(store.retrieve(name)).select(oracle.columns).sort("id")
        assert_frame_equal(back, oracle.sort("id"), check_dtypes=False)

    # a write that fails inside the executors leaves the stored version whole and no leftover
    broken = frame.withColumn("amount", F.raise_error(F.lit("boom")))
    for store, name in ((lake, "s"), (flat, "f")):
        with pytest.raises(Exception, match="boom"):
            store.store(broken, name)
        assert to_polars(store.retrieve(name)).height == 120
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert len(hidden) == 2, hidden  # the current version of each dataset, nothing else

    # a single file from a polars run is replaced by the Spark dataset, never left beside it
    flat.store(first, "g")
    assert (tmp_path / "g.parquet").is_file()
    flat.store(more, "g", if_exists="append")
    assert not (tmp_path / "g.parquet").exists()
    assert to_polars(flat.retrieve("g")).height == 120


def test_outputs_are_cached_only_with_several_consumers(spark: Any, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    sales().write_parquet(tmp_path / "in" / "a.parquet")
    spec = spec_for("spark", tmp_path)
    spec["storage"]["lake"]["store"].append({"data": "by_region", "table": "again"})
    run = run_pipeline(spec)
    # the source has two consumers (the processing pipeline and a store), by_region two
    # stores: both were cached and are unpersisted after their last consumer
    assert not run.data["sales"].is_cached
    assert not run.data["by_region"].is_cached
    spec["storage"]["lake"]["store"] = [{"data": "by_region"}]
    cached: list[Any] = []
    import pyspark.sql

    original = pyspark.sql.DataFrame.cache

    def spy(self: Any) -> Any:
        cached.append(self)
        return original(self)

    pyspark.sql.DataFrame.cache = spy  # type: ignore[method-assign]
    try:
        run_pipeline(spec)
    finally:
        pyspark.sql.DataFrame.cache = original  # type: ignore[method-assign]
    assert cached == []  # one consumer each: nothing cached


def test_static_spark_key_of_the_session_logs_nothing(
    spark: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv = tmp_path / "t.csv"
    pl.DataFrame({"k": ["a"], "v": [1]}).write_csv(csv)
    warehouse = spark.conf.get("spark.sql.warehouse.dir")  # a static setting
    spec = {
        "engine": "spark",
        "spark": {"conf": {"spark.sql.warehouse.dir": warehouse}},  # the session has it
        "sources": {"t": {"type": "FileSystemSource", "config": {"path": str(csv)}}},
    }
    with caplog.at_level(logging.WARNING, logger="data_pipeline"):
        run_pipeline(spec)
    assert "cannot change" not in caplog.text
    spec["spark"] = {"conf": {"spark.sql.warehouse.dir": str(tmp_path / "w")}}  # another value
    with caplog.at_level(logging.WARNING, logger="data_pipeline"):
        run_pipeline(spec)
    assert "spark.sql.warehouse.dir cannot change on a running session" in caplog.text
    assert spark.conf.get("spark.sql.warehouse.dir") == warehouse


def test_guard_rail_refuses_a_large_driver_frame(spark: Any, tmp_path: Path) -> None:
    from data_pipeline.core.errors import UnsupportedOperationError

    xlsx = tmp_path / "t.jsonl"
    pl.DataFrame({"v": list(range(1000))}).write_ndjson(xlsx)
    spec = {
        "engine": "spark",
        "spark": {"max_driver_bytes": 100, "on_large": "refuse"},
        "sources": {
            "t": {
                "type": "FileSystemSource",
                "config": {"path": str(xlsx), "mixed_types": "json"},  # read on the driver
            }
        },
    }
    with pytest.raises(UnsupportedOperationError, match="pass through the Spark driver"):
        run_pipeline(spec)
    spec["spark"] = {"max_driver_bytes": 100_000_000}
    assert to_polars(run_pipeline(spec).data["t"]).height == 1000


def test_dashboard_of_a_spark_frame_collects_only_what_it_shows(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No size guard for dashboards: charts cut the rows in Spark (at most max_points + 1
    reach the driver), a table its max_rows; the same page data as on Polars."""

    (tmp_path / "in").mkdir()
    data = sales(3000)
    data.write_parquet(tmp_path / "in" / "part-0.parquet")
    charts = [
        {
            "type": "BarChart",
            "name": "bar",
            "config": {"x": "day", "y": "amount", "max_points": 10},
        },
        {"type": "PieChart", "name": "pie", "config": {"category": "id", "max_points": 10}},
        {"type": "Heatmap", "name": "heat", "config": {"x": "day", "y": "id", "max_points": 12}},
        {"type": "Table", "name": "table", "config": {"max_rows": 5, "sort_by": "id"}},
    ]

    def spec(engine: str) -> dict[str, Any]:
        return {
            "engine": engine,
            **(
                {"spark": {"max_driver_bytes": 100, "on_large": "refuse"}}
                if engine == "spark"
                else {}
            ),
            "sources": {
                "sales": {
                    "type": "FileSystemSource",
                    "config": {"path": str(tmp_path / "in"), "format": "parquet"},
                }
            },
            "dashboards": {
                "d": {"path": str(tmp_path / f"{engine}.html"), "visualizations": charts}
            },
        }

    want = run_pipeline(spec("polars"))
    frame_class = type(spark.range(1))  # the class Spark made (classic or Connect)
    seen: list[int] = []
    to_arrow = frame_class.toArrow

    def counted(frame: Any) -> Any:
        table = to_arrow(frame)
        seen.append(table.num_rows)
        return table

    monkeypatch.setattr(frame_class, "toArrow", counted)
    got = run_pipeline(spec("spark"))
    assert seen and max(seen) <= 13, seen

    def page(engine: str) -> str:
        """The page, without its time of generation and the input's row count (a lazy
        input's is not known without computing it)."""
        html = (tmp_path / f"{engine}.html").read_text(encoding="utf-8")
        html = re.sub(r"Generated <time[^<]*</time>", "", html)
        return re.sub(r'"rows_in":\s*(\d+|null)', "", html)

    assert want.outputs and got.outputs
    assert page("spark") == page("polars")
    text = page("spark")
    for note in (
        "Summed 3,000 rows into 28 bars. Showing the top 10 of 28 categories by total.",
        "2,991 smaller categories are summed into 'Other'.",
        "Showing the first 12 of 3,000 rows.",
        "Showing 5 of 3,000 rows (2,995 left out).",
    ):
        assert note in text, note


def test_out_of_memory_becomes_our_error() -> None:
    from data_pipeline._spark import translate
    from data_pipeline.core.errors import DataPipelineError

    class Py4JJavaError(Exception):
        pass

    Py4JJavaError.__module__ = "py4j.protocol"
    error = translate(
        Py4JJavaError("An error occurred\njava.lang.OutOfMemoryError: Java heap space"),
        "storing 'sales'",
    )
    assert isinstance(error, DataPipelineError)
    assert "storing 'sales': Spark ran out of memory" in str(error)
    assert "spark.driver.memory" in str(error)
    plain = ValueError("x")
    assert translate(plain, "x") is plain


# -- JDBC ----------------------------------------------------------------------------------------


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if not JDBC_JARS:
        pytest.skip("no JDBC jars: apt-get install libpostgresql-jdbc-java libmariadb-java")
    handle = DB(str(request.param), tmp_path)
    yield handle
    handle.drop_all()


def fill(server: DB, table: str, rows: range) -> None:
    """Rows written by the database driver (not by the code under test)."""
    q = "`" if server.system == "mariadb" else '"'
    with server.storage.connect() as con:
        cur = con.cursor()
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {q}{table}{q} (id INTEGER PRIMARY KEY, g VARCHAR(8), "
            "v DOUBLE PRECISION)"
        )
        for i in rows:
            cur.execute(
                f"INSERT INTO {q}{table}{q} (id, g, v) VALUES (%s, %s, %s)",
                (i, f"g{i % 4}", i / 8),
            )
        con.commit()


def driver_read(server: DB, table: str) -> pl.DataFrame:
    q = "`" if server.system == "mariadb" else '"'
    with server.storage.connect() as con:
        cur = con.cursor()
        cur.execute(f"SELECT id, g, v FROM {q}{table}{q}")
        rows = cur.fetchall()
    return pl.DataFrame(rows, schema=["id", "g", "v"], orient="row").sort("id")


def test_jdbc_partitioned_incremental_read(spark: Any, server: DB, tmp_path: Path) -> None:
    from data_pipeline.ingestion import DatabaseSource

    table = server.table()
    fill(server, table, range(1, 101))
    config = {
        **server.config,
        "table": table,
        "incremental": {"cursor_column": "id", "state_path": str(tmp_path / "s.json")},
        "spark": {"partition_column": "id", "num_partitions": 3, "fetchsize": 7},
    }
    source = DatabaseSource(name="t", config=config)
    assert source.spark_unsupported() is None
    first = source.ingest_spark(spark)
    text = plan(first)
    assert "JDBCScan" in text or "Scan JDBCRelation" in text, text
    assert "PushedFilters" in text and "LessThanOrEqual(id,100)" in text, text
    assert first.rdd.getNumPartitions() == 3
    assert_frame_equal(to_polars(first).sort("id"), driver_read(server, table), check_dtypes=False)
    fill(server, table, range(101, 131))
    second = DatabaseSource(name="t", config=config).ingest_spark(spark)
    assert "GreaterThan(id,100)" in plan(second)
    assert to_polars(second).sort("id")["id"].to_list() == list(range(101, 131))
    third = DatabaseSource(name="t", config=config).ingest_spark(spark)
    assert to_polars(third).height == 0


@pytest.mark.parametrize("mode", ["append", "upsert", "replace"])
def test_jdbc_store_from_spark_goes_through_a_staging_table(
    spark: Any, server: DB, mode: str
) -> None:
    from pyspark.sql import functions as F

    from data_pipeline.storage.relational import STAGE_PREFIX

    table = server.table()
    fill(server, table, range(1, 11))
    storage = server.make(primary_key=["id"])
    before = driver_read(server, table)
    start = 11 if mode == "append" else 6  # upsert and replace: half the keys exist
    new = pl.DataFrame({"id": list(range(start, start + 10)), "g": ["new"] * 10, "v": [0.5] * 10})
    result = storage.store(spark.createDataFrame(new.to_arrow()), table, if_exists=mode)
    assert result.details["engine"] == "spark-jdbc" and result.rows == 10
    want = {
        "append": pl.concat([before, new]),
        "upsert": pl.concat([before.filter(pl.col("id") < 6), new]),
        "replace": new,
    }[mode]
    assert_frame_equal(driver_read(server, table), want.sort("id"), check_dtypes=False)
    # a write that fails in the executors leaves the table as it was, and no staging table
    now = driver_read(server, table)
    # half the rows are fine, then a task fails: a writer straight into the target would leave
    # the table emptied (replace) or half written
    broken = spark.createDataFrame(new.to_arrow(), schema=None).withColumn(
        "v",
        F.when(F.col("id") < start + 5, F.col("v")).otherwise(F.raise_error(F.lit("boom"))),
    )
    with pytest.raises(Exception, match="boom"):
        storage.store(broken, table, if_exists="replace")
    assert_frame_equal(driver_read(server, table), now)
    assert not [t for t in storage.list_tables() if t.startswith(STAGE_PREFIX)]


@pytest.mark.parametrize("mode", ["upsert", "replace"])
def test_jdbc_store_from_spark_refuses_a_repeated_key_as_the_driver_does(
    spark: Any, server: DB, mode: str
) -> None:
    """A key repeated in a Spark frame is refused before anything is written, with the
    driver's message (it was a raw 'Spark failed: ... calling oNN.jdbc' from the staging
    table's primary key); the table is unchanged. Oracle: the driver's own load's message."""
    from data_pipeline.core.errors import StorageError

    table = server.table()
    fill(server, table, range(1, 6))
    storage = server.make(primary_key=["id"])
    before = driver_read(server, table)
    rows = pl.DataFrame({"id": [7, 8, 7], "g": ["a", "b", "c"], "v": [1.0, 2.0, 3.0]})
    with pytest.raises(StorageError) as on_polars:
        storage.store(rows, table, if_exists=mode)
    with pytest.raises(StorageError) as on_spark:
        storage.store(spark.createDataFrame(rows.to_arrow()), table, if_exists=mode)
    assert str(on_spark.value) == str(on_polars.value)
    assert "duplicate primary key {'id': 7} (2 rows)" in str(on_spark.value)
    assert_frame_equal(driver_read(server, table), before)


def test_jdbc_timestamp_cursor_stays_naive(spark: Any, server: DB, tmp_path: Path) -> None:
    """A timestamp-without-zone cursor (PostgreSQL timestamp, MariaDB DATETIME): the Spark read
    gives the driver read's naive values, and the next run reads only the later rows."""
    import datetime as dt

    from data_pipeline.ingestion import DatabaseSource

    table = server.table()
    q = "`" if server.system == "mariadb" else '"'
    kind = "DATETIME(6)" if server.system == "mariadb" else "TIMESTAMP"
    base = dt.datetime(2024, 3, 1, 12, 0, 0, 250000)

    def insert(ids: range) -> None:
        with server.storage.connect() as con:
            cur = con.cursor()
            cur.execute(f"CREATE TABLE IF NOT EXISTS {q}{table}{q} (id INTEGER, ts {kind})")
            for i in ids:
                cur.execute(
                    f"INSERT INTO {q}{table}{q} (id, ts) VALUES (%s, %s)",
                    (i, base + dt.timedelta(minutes=i)),
                )
            con.commit()

    insert(range(5))
    config = {
        **server.config,
        "table": table,
        "incremental": {"cursor_column": "ts", "state_path": str(tmp_path / "s.json")},
    }
    first = to_polars(DatabaseSource(name="t", config=config).ingest_spark(spark)).sort("id")
    assert first["ts"].to_list() == [base + dt.timedelta(minutes=i) for i in range(5)]
    insert(range(5, 8))
    second = to_polars(DatabaseSource(name="t", config=config).ingest_spark(spark))
    assert sorted(second["id"].to_list()) == [5, 6, 7]


def test_jdbc_incremental_with_primary_key_and_lookback(
    spark: Any, server: DB, tmp_path: Path
) -> None:
    """Rows committed late inside the lookback window are read once; rows delivered before are
    not read again (the driver reads the small window and drops the delivered keys; the
    executors read above the last value)."""
    from data_pipeline.ingestion import DatabaseSource

    table = server.table()
    q = "`" if server.system == "mariadb" else '"'

    def insert(rows: list[tuple[int, int]]) -> None:
        with server.storage.connect() as con:
            cur = con.cursor()
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {q}{table}{q} (id INTEGER PRIMARY KEY, seq INTEGER)"
            )
            for row in rows:
                cur.execute(f"INSERT INTO {q}{table}{q} (id, seq) VALUES (%s, %s)", row)
            con.commit()

    config = {
        **server.config,
        "table": table,
        "incremental": {
            "cursor_column": "seq",
            "primary_key": "id",
            "lookback": 5,
            "state_path": str(tmp_path / "s.json"),
        },
    }

    def read() -> list[int]:
        source = DatabaseSource(name="t", config=config)
        assert source.spark_unsupported() is None
        return sorted(to_polars(source.ingest_spark(spark))["id"].to_list())

    insert([(i, i) for i in range(1, 11)])
    assert read() == list(range(1, 11))
    insert([(100, 8), (101, 2), (11, 11), (12, 12)])  # 100: late, in the window; 101: too late
    assert read() == [11, 12, 100]
    assert read() == []
    insert([(13, 13)])
    assert read() == [13]


# -- MongoDB documents from the executors ---------------------------------------------------------


@pytest.fixture(scope="module")
def mongo() -> Any:
    from tests.integration.servers import secantus_server

    with secantus_server() as port:
        yield port


def test_mongodb_documents_written_by_the_partitions(
    spark: Any, mongo: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Spark frame stored in MongoDB: the partitions write their own documents (the driver
    never converts a row nor collects the frame: both are made to fail here), replace, append
    and upsert keep their results, and a plain pymongo read finds exactly the rows given."""
    import pymongo

    import data_pipeline.storage.nosql as nosql_module
    from data_pipeline.core.engines import spark_from_arrow
    from data_pipeline.storage import NoSQLDBStorage

    def no_driver_rows(*_: Any, **__: Any) -> Any:
        raise AssertionError("the driver converted or collected the frame")

    monkeypatch.setattr(nosql_module, "documents", no_driver_rows)
    rows = pl.DataFrame(
        {
            "id": list(range(500)),
            "name": [f"n{i}" for i in range(500)],
            "v": [i / 4 for i in range(500)],
        }
    )
    frame = spark_from_arrow(spark, rows.to_arrow()).repartition(4)
    for method in ("toArrow", "toPandas"):  # on the class Spark made (classic or Connect)
        monkeypatch.setattr(type(frame), method, no_driver_rows)
    store = NoSQLDBStorage(
        name="docs",
        config={"db_type": "mongodb", "host": "127.0.0.1", "port": mongo, "database": "spark_docs"},
    )
    client: Any = pymongo.MongoClient("127.0.0.1", mongo)
    coll = client["spark_docs"]["sales"]

    def stored() -> list[tuple[Any, ...]]:
        return sorted((d["id"], d["name"], d["v"]) for d in coll.find({}, {"_id": 0}))

    result = store.store(frame, "sales", if_exists="replace")
    assert result.rows == 500 and result.details["engine"] == "spark-executors"
    assert stored() == sorted(rows.rows())

    store.store(frame.filter("id < 100"), "sales", if_exists="append")
    assert stored() == sorted(rows.rows() + rows.filter(pl.col("id") < 100).rows())

    store.store(frame.filter("id < 10"), "sales", if_exists="replace")
    changed = frame.filter("id < 20").selectExpr("id", "concat(name, '!') AS name", "v")
    result = store.store(changed, "sales", if_exists="upsert", primary_key=["id"])
    assert result.rows == 20
    assert stored() == [(i, f"n{i}!", i / 4) for i in range(20)]
    names = client["spark_docs"].list_collection_names()
    assert [c for c in names if c.startswith("__dp_") and c != "__dp_schema"] == []  # no stage left
    client.close()
    store.close()


# -- DataWarehouseStorage(engine: sqlalchemy) from a Spark frame: the same JDBC staging path ------


def warehouse_url(server: DB) -> str:
    """The server as the SQLAlchemy URL a DataWarehouseStorage(engine: sqlalchemy) is given."""
    c = server.config
    scheme = "postgresql" if server.system == "postgresql" else "mariadb"
    return f"{scheme}://{c['username']}@{c['host']}:{c['port']}/{c['database']}"


def plain_rows(server: DB, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    """The table's rows, ordered by id, read with psycopg / PyMySQL themselves (connections
    opened here, not by the code under test)."""
    c = server.config
    if server.system == "postgresql":
        import psycopg

        cols = ", ".join(f'"{n}"' for n in columns)
        with psycopg.connect(
            host=c["host"], port=c["port"], dbname=c["database"], user=c["username"]
        ) as con:
            return [tuple(r) for r in con.execute(f'SELECT {cols} FROM "{table}" ORDER BY id')]
    import pymysql

    cols = ", ".join(f"`{n}`" for n in columns)
    con = pymysql.connect(
        host=c["host"], port=c["port"], user=c["username"], database=c["database"]
    )
    try:
        with con.cursor() as cur:
            cur.execute(f"SELECT {cols} FROM `{table}` ORDER BY id")
            return [tuple(r) for r in cur.fetchall()]
    finally:
        con.close()


def warehouse_rows(n: int = 300) -> pl.DataFrame:
    import datetime as dt
    from decimal import Decimal

    return pl.DataFrame(
        {
            "id": list(range(n)),
            "name": [None if i % 7 == 0 else f"n{i}é'\"" for i in range(n)],
            "v": [i / 8 for i in range(n)],
            "price": [Decimal(i) / 100 for i in range(n)],
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(n)],
            "at": [dt.datetime(2024, 2, 1, 8, 30) + dt.timedelta(seconds=i) for i in range(n)],
        },
        schema_overrides={"price": pl.Decimal(10, 2)},
    )


@pytest.mark.parametrize("mode", ["append", "upsert", "replace"])
def test_sqlalchemy_warehouse_stores_a_spark_frame_through_the_jdbc_staging_table(
    spark: Any, server: DB, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DataWarehouseStorage(engine: sqlalchemy) on a PostgreSQL / MariaDB URL stores a Spark frame
    as RelationalDBStorage does: ``df.write.jdbc`` from the executors into a staging table, one
    transaction on the driver. The frame is never collected (toArrow/toPandas/collect fail
    here); the rows read back by psycopg / PyMySQL equal the rows given, for each mode; a write
    that fails in the executors leaves the table as it was and no staging table."""
    from pyspark.sql import functions as F

    from data_pipeline.storage import DataWarehouseStorage
    from data_pipeline.storage.relational import STAGE_PREFIX
    from tests.conftest import forbid_collecting, spark_frame

    rows = warehouse_rows()
    columns = rows.columns
    frame = spark_frame(spark, rows).repartition(4)

    # rows of the data never reach the driver; the key check's one aggregate row may
    forbid_collecting(monkeypatch, frame, columns)
    table = server.table()
    wh = DataWarehouseStorage(
        name="wh",
        config={"engine": "sqlalchemy", "url": warehouse_url(server), "primary_key": ["id"]},
    )
    assert wh.writes_spark(mode)

    def given(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
        return list(frame.sort("id").iter_rows())

    first = wh.store(frame.filter("id < 100"), table, if_exists="replace")
    assert first.details["engine"] == "spark-jdbc" and first.rows == 100
    assert plain_rows(server, table, columns) == given(rows.filter(pl.col("id") < 100))

    if mode == "append":
        data = frame.filter("id >= 100")
        want = rows
    elif mode == "upsert":  # ids 50..149: half replace stored rows, half are new
        data = frame.filter("id >= 50 AND id < 150").withColumn("name", F.lit("changed"))
        want = pl.concat(
            [
                rows.filter(pl.col("id") < 50),
                rows.filter(pl.col("id").is_between(50, 149)).with_columns(name=pl.lit("changed")),
            ]
        )
    else:
        data = frame.filter("id >= 150")
        want = rows.filter(pl.col("id") >= 150)
    result = wh.store(data, table, if_exists=mode)
    assert result.details["engine"] == "spark-jdbc" and result.rows == (
        200 if mode == "append" else 100 if mode == "upsert" else 150
    )
    assert plain_rows(server, table, columns) == given(want)

    # half the rows are fine, then a task fails: the table stays as it was, no staging table
    broken = data.withColumn(
        "v", F.when(F.col("id") % 2 == 0, F.col("v")).otherwise(F.raise_error(F.lit("boom")))
    )
    with pytest.raises(Exception, match="boom"):
        wh.store(broken, table, if_exists=mode)
    assert plain_rows(server, table, columns) == given(want)
    assert not [t for t in server.storage.list_tables() if t.startswith(STAGE_PREFIX)]


def plain_nullable(server: DB, table: str) -> dict[str, bool]:
    """Column -> nullable, from information_schema through psycopg / PyMySQL."""
    c = server.config
    sql = (
        "SELECT column_name, is_nullable FROM information_schema.columns "
        "WHERE table_name = %s AND table_schema = "
        + ("current_schema()" if server.system == "postgresql" else "DATABASE()")
    )
    if server.system == "postgresql":
        import psycopg

        with psycopg.connect(
            host=c["host"], port=c["port"], dbname=c["database"], user=c["username"]
        ) as con:
            found = con.execute(sql, (table,)).fetchall()
    else:
        import pymysql

        con = pymysql.connect(
            host=c["host"], port=c["port"], user=c["username"], database=c["database"]
        )
        try:
            with con.cursor() as cur:
                cur.execute(sql, (table,))
                found = list(cur.fetchall())
        finally:
            con.close()
    return {str(name): flag == "YES" for name, flag in found}


@pytest.mark.parametrize("via", ["warehouse", "relational"])
def test_not_null_reaches_a_table_created_from_spark(spark: Any, server: DB, via: str) -> None:
    """store(spark_frame, not_null=[...]): the table the JDBC staging path creates (or
    replaces) has those columns NOT NULL and the others nullable, as a driver load's table does
    (information_schema read with psycopg / PyMySQL)."""
    from data_pipeline.storage import DataWarehouseStorage

    frame = spark.createDataFrame(
        pl.DataFrame({"id": [1, 2, 3], "name": ["a", None, "c"]}).to_arrow()
    )
    store: Any = (
        DataWarehouseStorage(
            name="wh", config={"engine": "sqlalchemy", "url": warehouse_url(server)}
        )
        if via == "warehouse"
        else server.make()
    )
    table = server.table()
    for _ in range(2):  # created, then replaced by a new staging table
        result = store.store(frame, table, if_exists="replace", not_null=["id"])
        assert result.details["engine"] == "spark-jdbc"
        assert plain_nullable(server, table) == {"id": False, "name": True}
        assert plain_rows(server, table, ["id", "name"]) == [(1, "a"), (2, None), (3, "c")]


def test_pipeline_file_stores_into_a_sqlalchemy_warehouse_without_collecting(
    spark: Any, server: DB, tmp_path: Path
) -> None:
    """A pipeline file with ``engine: spark``: the store into a DataWarehouseStorage(engine:
    sqlalchemy) on PostgreSQL / MariaDB is not a driver collection, so a size guard of one byte
    that refuses every collection lets it pass; psycopg / PyMySQL read back the file's rows."""
    (tmp_path / "in").mkdir()
    rows = warehouse_rows(120)
    rows.write_parquet(tmp_path / "in" / "part.parquet")
    table = server.table()
    spec = {
        "engine": "spark",
        "spark": {"max_driver_bytes": 1, "on_large": "refuse"},
        "sources": {
            "sales": {"type": "FileSystemSource", "config": {"path": str(tmp_path / "in")}}
        },
        "storage": {
            "wh": {
                "type": "DataWarehouseStorage",
                "config": {"engine": "sqlalchemy", "url": warehouse_url(server)},
                "store": [{"data": "sales", "table": table, "if_exists": "replace"}],
            }
        },
    }
    run_pipeline(spec)
    assert plain_rows(server, table, rows.columns) == list(rows.sort("id").iter_rows())


def test_guard_rail_refuses_collecting_a_large_spark_frame_for_a_store(
    spark: Any, tmp_path: Path
) -> None:
    """A store that collects the Spark frame (here a SQLAlchemy warehouse on SQLite) is checked
    against spark.max_driver_bytes with Spark's size estimate of the frame (a Parquet scan's
    file size): refused above the limit, stored below it (rows read back with sqlite3)."""
    import sqlite3

    from data_pipeline.core.errors import UnsupportedOperationError

    (tmp_path / "in").mkdir()
    rows = pl.DataFrame({"id": list(range(500)), "name": [f"n{i}" for i in range(500)]})
    rows.write_parquet(tmp_path / "in" / "part.parquet")
    path = tmp_path / "wh.sqlite"
    spec: dict[str, Any] = {
        "engine": "spark",
        "spark": {"max_driver_bytes": 100, "on_large": "refuse"},
        "sources": {
            "sales": {"type": "FileSystemSource", "config": {"path": str(tmp_path / "in")}}
        },
        "storage": {
            "wh": {
                "type": "DataWarehouseStorage",
                "config": {"engine": "sqlalchemy", "url": f"sqlite:///{path}"},
                "store": [{"data": "sales", "table": "t", "if_exists": "replace"}],
            }
        },
    }
    with pytest.raises(UnsupportedOperationError, match="collects the Spark frame to the driver"):
        run_pipeline(spec)
    spec["spark"] = {"max_driver_bytes": 100_000_000, "on_large": "refuse"}
    run_pipeline(spec)
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT id, name FROM t ORDER BY id").fetchall() == list(
            rows.iter_rows()
        )


def test_sqlalchemy_warehouse_on_other_dialects_collects_on_the_driver(
    spark: Any, tmp_path: Path
) -> None:
    """Dialects without a JDBC staging path (here SQLite) keep the driver path: the frame is
    collected and stored as on Polars; rows read back with sqlite3 equal the rows given."""
    import sqlite3

    from data_pipeline.storage import DataWarehouseStorage

    path = tmp_path / "wh.sqlite"
    wh = DataWarehouseStorage(
        name="wh", config={"engine": "sqlalchemy", "url": f"sqlite:///{path}"}
    )
    assert not wh.writes_spark("append")
    rows = pl.DataFrame({"id": [1, 2, 3], "name": ["a", None, "c"]})
    result = wh.store(spark.createDataFrame(rows.to_arrow()), "t", if_exists="replace")
    assert result.details.get("engine") != "spark-jdbc" and result.rows == 3
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT id, name FROM t ORDER BY id").fetchall() == list(
            rows.iter_rows()
        )


# -- DuckDB from a Spark frame, a partition at a time ----------------------------------------------


def test_duckdb_warehouse_takes_a_spark_frame_partition_by_partition(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DataWarehouseStorage (DuckDB) of a Spark frame: the frame is never collected whole
    (toArrow/toPandas/collect fail here); the partitions arrive one at a time as Arrow batches;
    replace, append and upsert store every value as given (a fresh DuckDB connection reads them
    back and compares with the rows given)."""
    import datetime as dt
    from decimal import Decimal

    import duckdb

    from data_pipeline._spark import arrow_stream
    from data_pipeline.core.engines import spark_from_arrow
    from data_pipeline.storage import DataWarehouseStorage

    n = 400
    rows = pl.DataFrame(
        {
            "id": list(range(n)),
            "name": [None if i % 7 == 0 else f"n{i}é" for i in range(n)],
            "v": [i / 8 for i in range(n)],
            "price": [Decimal(i) / 100 for i in range(n)],
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(n)],
            "at": [
                dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(seconds=i)
                for i in range(n)
            ],
            "naive": [dt.datetime(2024, 2, 1, 8, 30) + dt.timedelta(minutes=i) for i in range(n)],
        },
        schema_overrides={"price": pl.Decimal(10, 2), "at": pl.Datetime("us", "UTC")},
    )
    frame = spark_from_arrow(spark, rows.to_arrow()).repartition(5)
    assert len(list(arrow_stream(frame))) >= 5  # batches of every partition, in turn

    def collected(*_: Any, **__: Any) -> Any:
        raise AssertionError("the whole Spark frame was collected")

    for method in ("toArrow", "toPandas", "collect"):  # on the class Spark made
        monkeypatch.setattr(type(frame), method, collected)
    db = str(tmp_path / "wh.duckdb")
    store = DataWarehouseStorage(name="wh", config={"database": db})

    def stored() -> pl.DataFrame:
        with duckdb.connect(db, read_only=True) as con:
            got = pl.from_arrow(con.sql("SELECT * FROM sales ORDER BY id, name").to_arrow_table())
        assert isinstance(got, pl.DataFrame)
        return got.with_columns(pl.col("at").dt.convert_time_zone("UTC"))  # DuckDB's label

    result = store.store(frame, "sales", if_exists="replace")
    assert result.rows == n
    assert_frame_equal(stored(), rows, check_dtypes=False)
    assert stored().schema["price"] == pl.Decimal(10, 2)
    assert stored().schema["naive"] == pl.Datetime("us")

    store.store(frame.filter("id < 50"), "sales", if_exists="append")
    assert stored().height == n + 50

    store.store(frame.filter("id < 50"), "sales", if_exists="replace")
    changed = frame.filter("id < 10").selectExpr(
        "id", "concat('x', id) AS name", "v", "price", "day", "at", "naive"
    )
    assert store.store(changed, "sales", if_exists="upsert", primary_key=["id"]).rows == 10
    got = stored()
    assert got.height == 50
    assert got.filter(pl.col("id") < 10)["name"].to_list() == [f"x{i}" for i in range(10)]
    assert_frame_equal(
        got.filter(pl.col("id") >= 10),
        rows.filter(pl.col("id").is_between(10, 49)),
        check_dtypes=False,
    )
    store.close()
