"""Benchmark data, generated once per row count and cached in benchmarks/.data/."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import DATA_DIR


def sales_csv(rows: int) -> Path:
    path = DATA_DIR / f"sales_{rows}.csv"
    if not path.exists():
        from examples.sales.generate import write_csv

        write_csv(path, rows)
    return path
