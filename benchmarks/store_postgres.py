"""store_postgres: RelationalDBStorage loading the 5M-row sales data into PostgreSQL vs psql's
``\\copy ... from`` the same rows as a CSV file, and vs pandas ``to_sql(method="multi")``.

* ours: ``RelationalDBStorage.store(frame, table, if_exists="replace")`` into a table that does
  not exist yet (dropped in prepare()); the frame is in memory before the timer starts. Ours
  creates a staging table, COPYs into it and renames it, in one transaction.
* psql_copy (the baseline): ``psql -c "\\copy t from 'file.csv' csv header"`` run as a
  subprocess into an empty table created in prepare(); the CSV (the same rows) is written in
  prepare() too, so only psql's load is timed.
* pandas ``to_sql(method="multi")`` would take about 25 minutes on 5M rows, so check() runs it on
  a sample (SAMPLE rows, chunksize CHUNK: the largest that stays under PostgreSQL's 65,535 bind
  parameters for 12 columns) and extrapolates linearly to the full row count; it says so in
  its output.

Targets: ours at most 1.15x psql's ``\\copy`` and at least 50x faster than pandas.
PostgreSQL: 127.0.0.1:5432, user postgres, database test (trust auth).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks._sales import sales_parquet
from benchmarks.harness import DATA_DIR, Benchmark

HOST, PORT, USER, DATABASE = "127.0.0.1", 5432, "postgres", "test"
OURS_TABLE = "bench_store_ours"
COPY_TABLE = "bench_store_psql_copy"
PANDAS_TABLE = "bench_store_pandas"
SAMPLE = 50_000
CHUNK = 5_000
PANDAS_TARGET = 50.0

_PG_TYPES = {
    "Int64": "BIGINT",
    "Int32": "INTEGER",
    "Float64": "DOUBLE PRECISION",
    "String": "TEXT",
    "Date": "DATE",
    "Boolean": "BOOLEAN",
}


def _psql(sql: str) -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            HOST,
            "-p",
            str(PORT),
            "-U",
            USER,
            "-d",
            DATABASE,
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
        text=True,
    )


def _csv(frame: Any, rows: int) -> Path:
    """The rows as CSV with a header (written once, cached beside the other benchmark data)."""
    path = DATA_DIR / f"store_postgres_{rows}.csv"
    if not path.exists():
        tmp = path.with_suffix(".csv.tmp")
        frame.write_csv(tmp)
        tmp.replace(path)
    return path


def prepare(rows: int) -> dict[str, Any]:
    import polars as pl
    import psycopg  # noqa: F401  (imported before the timer)

    import data_pipeline.storage  # noqa: F401

    frame = pl.read_parquet(sales_parquet(rows))
    csv = _csv(frame, rows)
    columns = ", ".join(f'"{name}" {_PG_TYPES[str(dtype)]}' for name, dtype in frame.schema.items())
    _psql(
        f'DROP TABLE IF EXISTS "{OURS_TABLE}"; DROP TABLE IF EXISTS "{COPY_TABLE}"; '
        f'CREATE TABLE "{COPY_TABLE}" ({columns})'
    )
    return {"frame": frame, "rows": rows, "csv": csv}


def _storage() -> Any:
    from data_pipeline.storage import RelationalDBStorage

    return RelationalDBStorage(
        name="bench_pg",
        config={
            "db_type": "postgresql",
            "host": HOST,
            "port": PORT,
            "username": USER,
            "database": DATABASE,
        },
    )


def ours(params: dict[str, Any]) -> None:
    result = _storage().store(params["frame"], OURS_TABLE, if_exists="replace")
    assert result.rows == params["rows"]


def baseline(params: dict[str, Any]) -> None:
    _psql(f"\\copy \"{COPY_TABLE}\" from '{params['csv']}' csv header")


def _pandas_rate(frame: Any) -> tuple[float, int]:
    """Rows per second of pandas to_sql(method='multi') on the first SAMPLE rows."""
    import sqlalchemy

    sample = frame.head(SAMPLE).to_pandas()
    engine = sqlalchemy.create_engine(f"postgresql+psycopg://{USER}@{HOST}:{PORT}/{DATABASE}")
    try:
        with engine.begin() as con:
            con.execute(sqlalchemy.text(f'DROP TABLE IF EXISTS "{PANDAS_TABLE}"'))
        start = time.perf_counter()
        sample.to_sql(
            PANDAS_TABLE, engine, if_exists="replace", index=False, method="multi", chunksize=CHUNK
        )
        seconds = time.perf_counter() - start
        with engine.begin() as con:
            written = con.execute(
                sqlalchemy.text(f'SELECT COUNT(*) FROM "{PANDAS_TABLE}"')
            ).scalar_one()
            con.execute(sqlalchemy.text(f'DROP TABLE "{PANDAS_TABLE}"'))
    finally:
        engine.dispose()
    return len(sample) / seconds, int(written)


def check(params: dict[str, Any]) -> str:
    """Load both once more and compare the tables; extrapolate pandas to_sql from a sample."""
    import psycopg

    rows = params["rows"]
    ours_times = list(params.get("measured", {}).get("ours", []))
    where = "min of the measured runs above" if ours_times else "one run in this process"
    # the harness calls prepare() (which empties the tables) before check(): load both again
    start = time.perf_counter()
    _storage().store(params["frame"], OURS_TABLE, if_exists="replace")
    ours_times = ours_times or [time.perf_counter() - start]
    baseline(params)
    ours_s = min(ours_times)

    summary = (
        'SELECT COUNT(*), SUM("order_id"), SUM("quantity"), ROUND(SUM("revenue")::numeric, 2), '
        'COUNT(DISTINCT "product_id"), MIN("date"), MAX("date") FROM {}'
    )
    with psycopg.connect(host=HOST, port=PORT, user=USER, dbname=DATABASE) as con:
        a = con.execute(summary.format(f'"{OURS_TABLE}"')).fetchone()  # type: ignore[arg-type]
        b = con.execute(summary.format(f'"{COPY_TABLE}"')).fetchone()  # type: ignore[arg-type]
        types = [
            con.execute(
                "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) "
                "FROM information_schema.columns WHERE table_name = %s",
                [t],
            ).fetchone()
            for t in (OURS_TABLE, COPY_TABLE)
        ]
    same = a == b and types[0] == types[1]

    rate, written = _pandas_rate(params["frame"])
    pandas_s = rows / rate
    speedup = pandas_s / ours_s
    verdict = "OK" if speedup >= PANDAS_TARGET else "MISSED"
    return "\n".join(
        [
            f"tables equal (count, sums, distinct, dates, column types): {same} ({a[0] if a else 0:,} rows)",
            f"ours: {rows / ours_s:,.0f} rows/s ({ours_s:.3f} s, {where})",
            f"pandas to_sql(method='multi', chunksize={CHUNK:,}): measured on a SAMPLE of "
            f"{SAMPLE:,} rows ({written:,} written) at {rate:,.0f} rows/s; EXTRAPOLATED linearly "
            f"to {rows:,} rows: {pandas_s:,.1f} s",
            f"ours vs pandas to_sql (extrapolated): {speedup:,.1f}x faster  target>={PANDAS_TARGET:g}x  {verdict}",
        ]
    )


BENCHMARK = Benchmark(
    name="store_postgres",
    description="5M sales rows in memory -> PostgreSQL (RelationalDBStorage vs psql \\copy from CSV; pandas to_sql in check)",
    variants={"ours": ours, "psql_copy": baseline},
    prepare=prepare,
    baseline="psql_copy",
    targets={"ours": {"time": 1.15}},
    check=check,
)
