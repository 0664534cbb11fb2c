"""A DatabaseSource with ``chunk_size`` in a pipeline file, on every engine: the batches go
through the source's transformations into storage one at a time (the table is never one frame),
and a processing pipeline reading the transformed data still sees all of it.

Oracle: the same rows and steps in plain Polars. SQLite (a file in tmp_path) is the database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data_pipeline.pipeline import run_pipeline
from data_pipeline.storage import FileSystemStorage
from tests.conftest import to_polars

ROWS = 50
CHUNK = 7


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, region TEXT, amount REAL)")
    con.executemany(
        "INSERT INTO orders VALUES (?, ?, ?)",
        [(i, ("n", "s", "e")[i % 3], None if i % 5 == 0 else i * 1.5) for i in range(ROWS)],
    )
    con.commit()
    con.close()
    return path


@pytest.mark.parametrize(
    "engine",
    ["polars", "pandas", "duckdb", "arrow", pytest.param("spark", marks=pytest.mark.spark)],
)
def test_chunk_size_flows_batch_by_batch(
    database: Path, tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch, request: Any
) -> None:
    if engine == "spark":
        request.getfixturevalue("spark")
    calls: list[tuple[str, int, str]] = []
    original = FileSystemStorage.store

    def spy(self: Any, data: Any, table: Any = None, **kw: Any) -> Any:
        calls.append((table, int(to_polars(data).height), kw.get("if_exists")))
        return original(self, data, table, **kw)

    monkeypatch.setattr(FileSystemStorage, "store", spy)
    lake = tmp_path / f"lake_{engine}"
    spec = {
        "engine": engine,
        "sources": {
            "orders": {
                "type": "DatabaseSource",
                "config": {
                    "db_type": "sqlite",
                    "database": str(database),
                    "table": "orders",
                    "chunk_size": CHUNK,
                },
            }
        },
        "transformations": {
            "clean": {
                "input": "orders",
                "steps": [
                    {
                        "type": "MissingValueHandler",
                        "config": {"strategy": "constant", "value": 0, "columns": ["amount"]},
                    }
                ],
            }
        },
        "processing": {
            "by_region": {
                "input": "clean",
                "steps": [
                    {
                        "type": "DataAggregator",
                        "config": {"group_by": ["region"], "aggregations": {"amount": "sum"}},
                    }
                ],
            }
        },
        "storage": {
            "lake": {
                "type": "FileSystemStorage",
                "config": {"base_path": str(lake)},
                "store": [
                    {"data": "clean", "if_exists": "replace"},
                    {"data": "by_region"},
                ],
            }
        },
    }
    run = run_pipeline(spec)

    rows = [(i, ("n", "s", "e")[i % 3], 0.0 if i % 5 == 0 else i * 1.5) for i in range(ROWS)]
    want = pl.DataFrame(rows, schema=["id", "region", "amount"], orient="row")
    batches = [c for c in calls if c[0] == "clean"]
    assert [n for _, n, _ in batches] == [CHUNK] * (ROWS // CHUNK) + [ROWS % CHUNK]
    assert [m for _, _, m in batches] == ["replace"] + ["append"] * (len(batches) - 1)
    stored = to_polars(
        FileSystemStorage(name="l", config={"base_path": str(lake)}).retrieve("clean")
    )
    assert_frame_equal(stored.sort("id"), want, check_dtypes=False)
    by_region = want.group_by("region").agg(pl.col("amount").sum()).sort("region")
    assert_frame_equal(
        to_polars(run.data["by_region"]).sort("region"), by_region, check_dtypes=False
    )
    assert run.stages["storage"].rows == ROWS + 3
