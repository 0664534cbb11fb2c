"""store_duckdb: DataWarehouseStorage loading the 5M-row sales data into a DuckDB file vs
DuckDB's own ``CREATE TABLE ... AS SELECT * FROM <arrow table>``.

Both get the same in-memory Arrow table (read in prepare(), before the timer starts) and write a
fresh DuckDB file; both close the connection at the end (which checkpoints the data to the
file), so the time covers the data landing on disk. Target: ours at most 1.2x the time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._sales import sales_parquet
from benchmarks.harness import Benchmark


def _fresh(name: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"dp-bench-store-duckdb-{name}.duckdb"
    for p in (path, path.with_name(path.name + ".wal")):
        if p.exists():
            os.remove(p)
    return path


def prepare(rows: int) -> dict[str, Any]:
    import duckdb  # noqa: F401  (imported before the timer)
    import polars as pl

    table = pl.read_parquet(sales_parquet(rows)).to_arrow()
    small = {
        "table": table.slice(0, 1_000),
        "ours_db": _fresh("warm-ours"),
        "duckdb_db": _fresh("warm-duckdb"),
    }
    ours(small)
    baseline(small)
    return {"table": table, "rows": rows, "ours_db": _fresh("ours"), "duckdb_db": _fresh("duckdb")}


def ours(params: dict[str, Any]) -> None:
    from data_pipeline.storage import DataWarehouseStorage

    warehouse = DataWarehouseStorage(name="warehouse", config={"database": str(params["ours_db"])})
    warehouse.store(params["table"], "sales", if_exists="replace")


def baseline(params: dict[str, Any]) -> None:
    import duckdb

    source = params["table"]
    con = duckdb.connect(str(params["duckdb_db"]))
    try:
        con.register("source", source)
        con.execute("CREATE OR REPLACE TABLE sales AS SELECT * FROM source")
    finally:
        con.close()


def check(params: dict[str, Any]) -> str:
    """Load both once more (in this process) and compare the tables."""
    import duckdb

    ours(params)
    baseline(params)
    summaries = []
    for path in (params["ours_db"], params["duckdb_db"]):
        con = duckdb.connect(str(path), read_only=True)
        try:
            summaries.append(
                con.execute(
                    "SELECT COUNT(*), SUM(order_id), SUM(quantity), ROUND(SUM(revenue), 2), "
                    "COUNT(DISTINCT product_id), MIN(date), MAX(date) FROM sales"
                ).fetchone()
            )
            types = con.execute("DESCRIBE sales").fetchall()
        finally:
            con.close()
        summaries.append(tuple((name, ctype) for name, ctype, *_ in types))
    same = summaries[0] == summaries[2] and summaries[1] == summaries[3]
    return f"tables equal (count, sums, types): {same} ({summaries[0][0]:,} rows)"


BENCHMARK = Benchmark(
    name="store_duckdb",
    description="5M sales rows (Arrow) -> DuckDB file (DataWarehouseStorage vs CREATE TABLE AS)",
    variants={"ours": ours, "duckdb_ctas": baseline},
    prepare=prepare,
    baseline="duckdb_ctas",
    targets={"ours": {"time": 1.2}},
    check=check,
)
