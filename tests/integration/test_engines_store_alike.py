"""One pipeline, every engine, one stored schema (issue 13, found by a new user on real data).

The stored schema of the same pipeline depended on the engine (counts UInt32 on Polars, Int64
elsewhere), which broke appends across engines; the pandas engine stored an extra
``__index_level_0__`` column after a DataFilter; ``time_zone: UTC`` on the DuckDB engine stored
``timestamp without time zone`` into PostgreSQL. Here one pipeline file runs on each engine and
appends to one DuckDB table; the oracle is DuckDB SQL over the CSV, written in the test.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import duckdb

from data_pipeline.pipeline import run_pipeline
from tests.conftest import require_service

CSV = """ts,shop,qty
2024-03-01 10:00:00,a,1
2024-03-01 11:30:00,a,
2024-03-02 09:00:00,b,4
2024-03-02 09:15:00.25,b,2
2024-03-03 18:00:00,,7
"""
ENGINES = ["polars", "pandas", "arrow", "duckdb"]


def spec(tmp_path: Path, engine: str, storage: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "alike",
        "engine": engine,
        "sources": {
            "raw": {"type": "FileSystemSource", "config": {"path": str(tmp_path / "in.csv")}}
        },
        "transformations": {
            "typed": [
                {
                    "type": "DataTypeConverter",
                    "config": {
                        "columns": {
                            "ts": {"type": "datetime", "time_zone": "UTC"},
                            "qty": "int64",
                        }
                    },
                }
            ]
        },
        "processing": {
            "kept": {
                "input": "typed",
                "steps": [{"type": "DataFilter", "config": {"condition": "qty > 1"}}],
            },
            "per_shop": {
                "input": "typed",
                "steps": [
                    {
                        "type": "DataAggregator",
                        "config": {
                            "group_by": ["shop"],
                            "aggregations": {"qty": ["count", "sum"], "ts": "n_unique"},
                        },
                    }
                ],
            },
        },
        "storage": storage,
    }


def test_every_engine_appends_to_one_table_with_one_schema(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(CSV, encoding="utf-8")
    database = str(tmp_path / "w.duckdb")
    storage = {
        "wh": {
            "type": "DataWarehouseStorage",
            "config": {"database": database},
            "store": [
                {"data": "kept", "table": "kept", "if_exists": "append"},
                {"data": "per_shop", "table": "per_shop", "if_exists": "append"},
            ],
        }
    }
    for engine in ENGINES:
        run_pipeline(spec(tmp_path, engine, storage))  # an append of another schema fails

    with duckdb.connect(database) as con:
        kept_types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'kept' ORDER BY ordinal_position").fetchall())  # fmt: skip
        shop_types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'per_shop' ORDER BY ordinal_position").fetchall())  # fmt: skip
        kept = sorted(con.execute("SELECT ts::VARCHAR, shop, qty FROM kept").fetchall(), key=str)
        per_shop = sorted(con.execute("SELECT * FROM per_shop").fetchall(), key=str)
        # the oracle: DuckDB SQL over the CSV, once per engine run
        source = f"read_csv('{tmp_path / 'in.csv'}', all_varchar = true)"
        want_kept = con.execute(
            f"SELECT (ts::TIMESTAMP AT TIME ZONE 'UTC')::VARCHAR, shop, qty::BIGINT FROM {source} "
            "WHERE qty::BIGINT > 1"
        ).fetchall()
        want_shop = con.execute(
            f"SELECT shop, count(qty)::BIGINT, coalesce(sum(qty::BIGINT), 0)::BIGINT, "
            f"count(DISTINCT ts)::BIGINT FROM {source} GROUP BY shop"
        ).fetchall()
    assert kept_types == {"ts": "TIMESTAMP WITH TIME ZONE", "shop": "VARCHAR", "qty": "BIGINT"}
    assert list(shop_types) == ["shop", "qty_count", "qty_sum", "ts"]
    assert set(shop_types.values()) - {"VARCHAR"} == {"BIGINT"}  # never UInt32, HUGEINT
    assert kept == sorted(want_kept * len(ENGINES), key=str)
    assert per_shop == sorted(want_shop * len(ENGINES), key=str)


def test_utc_from_the_duckdb_engine_is_timestamptz_in_postgresql(tmp_path: Path) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    (tmp_path / "in.csv").write_text(CSV, encoding="utf-8")
    table = f"dp_alike_{uuid.uuid4().hex[:10]}"
    storage = {
        "pg": {
            "type": "RelationalDBStorage",
            "config": {"url": "postgresql://postgres@127.0.0.1:5432/test"},
            "store": [{"data": "typed", "table": table, "if_exists": "replace"}],
        }
    }
    try:
        run_pipeline(spec(tmp_path, "duckdb", storage))
        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres") as conn:
            types = dict(
                conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = %s",
                    (table,),
                ).fetchall()
            )
            first = conn.execute(f"SELECT min(ts) FROM {table}").fetchone()
    finally:
        with psycopg.connect(
            "host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True
        ) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    assert types["ts"] == "timestamp with time zone"
    assert first is not None and first[0].isoformat().startswith("2024-03-01T10:00:00")
    assert first[0].utcoffset().total_seconds() == 0 or str(first[0].tzinfo) in ("UTC", "utc")
