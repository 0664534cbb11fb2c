"""A plain run with `checkpoint:`: the sources' cursors commit with what the run stored.

A SQLite table read incrementally into DuckDB; the run is killed in the middle of its store;
the next run must store every row exactly once. Without `checkpoint:` (the broken variant for
this guarantee: the cursor is saved when the rows are read) the killed run's rows are lost.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb

PIPELINE = """
name: orders_copy
sources:
  orders:
    type: DatabaseSource
    config:
      db_type: sqlite
      database: orders.db
      table: orders
      incremental: {{cursor_column: id}}
storage:
  wh:
    type: DataWarehouseStorage
    config: {{database: wh.duckdb}}
    store:
      - {{data: orders, table: orders, if_exists: append}}
{checkpoint}
"""

CHILD = textwrap.dedent(
    """
    import os, sys
    from data_pipeline.pipeline import run_pipeline
    from data_pipeline.storage.warehouse import DataWarehouseStorage

    if sys.argv[2] == "crash":  # killed in the middle of the run's store
        def store(self, *args, **kwargs):
            os._exit(9)
        DataWarehouseStorage._store_duckdb = store
    run_pipeline(sys.argv[1])
    """
)


def _rows(folder: Path, ids: range) -> None:
    with sqlite3.connect(folder / "orders.db") as con:
        con.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER, amount REAL)")
        con.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i * 1.5) for i in ids])


def _run(folder: Path, mode: str) -> int:
    script = folder / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, str(script), str(folder / "p.yaml"), mode], cwd=folder, check=False
    )
    return run.returncode


def drill(folder: Path, checkpoint: str) -> list[int]:
    (folder / "p.yaml").write_text(PIPELINE.format(checkpoint=checkpoint), encoding="utf-8")
    _rows(folder, range(0, 5))
    assert _run(folder, "ok") == 0
    _rows(folder, range(5, 9))
    assert _run(folder, "crash") == 9  # read rows 5..8, died before they were stored
    _rows(folder, range(9, 12))
    assert _run(folder, "ok") == 0
    with duckdb.connect(str(folder / "wh.duckdb"), read_only=True) as con:
        return sorted(r[0] for r in con.execute("select id from orders").fetchall())


def test_the_cursor_commits_with_the_stored_rows(tmp_path: Path) -> None:
    assert drill(tmp_path, "checkpoint: {storage: wh}") == list(range(12))


def test_without_a_checkpoint_a_killed_run_loses_its_rows(tmp_path: Path) -> None:
    """The broken variant: the cursor saved when the rows were read; the drill sees the loss."""
    assert drill(tmp_path, "") == [0, 1, 2, 3, 4, 9, 10, 11]
