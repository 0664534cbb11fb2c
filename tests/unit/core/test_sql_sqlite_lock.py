"""One SQLite file written by RelationalDBStorage (sqlite3) and read by DatabaseSource (ConnectorX,
which links its own copy of SQLite) from two threads at once: the read path takes the same
per-file lock (core.sql.connect.database_file_lock) as the storage's connections. Without it the
reads failed with "disk I/O error" / "database is locked" or saw a torn table."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import polars as pl
import pytest

from data_pipeline.core.sql.read import choose_path
from data_pipeline.ingestion.database import DatabaseSource
from data_pipeline.storage import RelationalDBStorage

ROUNDS = 200
ROWS = 200

pytest.importorskip("connectorx")


def test_a_connectorx_read_and_a_sqlite3_write_of_one_file_in_two_threads(
    interleaved: None, tmp_path: Path
) -> None:
    path = str(tmp_path / "shared.db")
    storage = RelationalDBStorage("db", {"db_type": "sqlite", "database": path})
    storage.store(pl.DataFrame({"v": [0] * ROWS}), "t", if_exists="replace")
    source = DatabaseSource("src", {"db_type": "sqlite", "database": path, "table": "t"})
    assert choose_path(source.target, None) == "connectorx"  # the path under test

    failures: list[str] = []
    seen: list[set[int]] = []
    barrier = threading.Barrier(2)

    def write() -> None:
        barrier.wait()
        for i in range(1, ROUNDS + 1):
            try:
                storage.store(pl.DataFrame({"v": [i] * ROWS}), "t", if_exists="replace")
            except Exception as exc:  # collected: reported all at once
                failures.append(f"write {i}: {type(exc).__name__}: {exc}"[:300])

    def read() -> None:
        barrier.wait()
        for i in range(ROUNDS):
            try:
                values = source.ingest()["v"].to_list()  # a polars DataFrame
            except Exception as exc:
                failures.append(f"read {i}: {type(exc).__name__}: {exc}"[:300])
                continue
            seen.append(set(values))
            if len(values) != ROWS or len(set(values)) != 1:
                failures.append(f"read {i}: a torn table: {len(values)} rows, {set(values)}")

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    # the oracle: the file, read by the stdlib's sqlite3 after both threads are done
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*), min(v), max(v) FROM t").fetchone() == (
            ROWS,
            ROUNDS,
            ROUNDS,
        )
