"""ingest_csv: FileSystemSource on the sales CSV vs ``polars.read_csv``, both to an in-memory frame.

Ours is ``FileSystemSource(config={"path": csv}).ingest()`` (a polars DataFrame, the default
output); the baseline is ``polars.read_csv(csv)``. Target: ours at most 1.1x the time of the
baseline. ``check`` compares the two frames (same shape, same columns, same values).
"""

from __future__ import annotations

from typing import Any

from benchmarks.data import sales_csv
from benchmarks.harness import Benchmark


def prepare(rows: int) -> dict[str, Any]:
    """The CSV path; the libraries are imported here, outside the timed part."""
    import polars  # noqa: F401

    import data_pipeline.ingestion  # noqa: F401

    return {"csv": sales_csv(rows), "rows": rows}


def ours(params: dict[str, Any]) -> Any:
    from data_pipeline.ingestion import FileSystemSource

    frame = FileSystemSource(name="sales", config={"path": str(params["csv"])}).ingest()
    assert frame.height == params["rows"], frame.height
    return frame


def baseline(params: dict[str, Any]) -> Any:
    import polars as pl

    frame = pl.read_csv(params["csv"])
    assert frame.height == params["rows"], frame.height
    return frame


def check(params: dict[str, Any]) -> str:
    """Read once more with both (in this process) and compare the frames."""
    a = ours(params)
    b = baseline(params)
    same = a.schema == b.schema and a.equals(b)
    return f"frames equal: {same} ({a.height:,} rows x {a.width} columns)"


BENCHMARK = Benchmark(
    name="ingest_csv",
    description="sales CSV -> in-memory polars DataFrame (FileSystemSource vs polars.read_csv)",
    variants={"ours": ours, "polars_read_csv": baseline},
    prepare=prepare,
    baseline="polars_read_csv",
    targets={"ours": {"time": 1.1}},
    check=check,
)
