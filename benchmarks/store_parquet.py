"""store_parquet: FileSystemStorage writing the 5M-row sales data as Parquet vs polars.write_parquet.

Both write the same in-memory Polars DataFrame (read from the cached Parquet in prepare(),
before the timer starts) with Polars' defaults (zstd); ours also writes to a temporary file and
renames it (atomic write), which is part of what is measured. Target: ours at most 1.1x the time.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._sales import sales_parquet
from benchmarks.harness import Benchmark


def _out_dir(name: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"dp-bench-store-parquet-{name}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def prepare(rows: int) -> dict[str, Any]:
    import polars as pl

    frame = pl.read_parquet(sales_parquet(rows))
    params = {
        "frame": frame,
        "rows": rows,
        "ours_dir": _out_dir("ours"),
        "polars_dir": _out_dir("polars"),
    }
    # warm up (imports, thread pool) on a small slice, outside the timed run
    small = dict(params, frame=frame.head(1_000))
    ours(small)
    baseline(small)
    return params


def ours(params: dict[str, Any]) -> Path:
    from data_pipeline.storage import FileSystemStorage

    storage = FileSystemStorage(
        name="lake", config={"base_path": str(params["ours_dir"]), "format": "parquet"}
    )
    result = storage.store(params["frame"], "sales", if_exists="replace")
    return Path(result.target)


def baseline(params: dict[str, Any]) -> Path:
    path = params["polars_dir"] / "sales.parquet"
    params["frame"].write_parquet(path)
    return path


def check(params: dict[str, Any]) -> str:
    """Write both once more (in this process) and compare what was written."""
    import polars as pl
    from polars.testing import assert_frame_equal

    a, b = pl.read_parquet(ours(params)), pl.read_parquet(baseline(params))
    try:
        assert_frame_equal(a, b)
        same = True
    except AssertionError as exc:
        same = False
        print(exc)
    size_a, size_b = ours(params).stat().st_size, baseline(params).stat().st_size
    return f"files equal: {same} ({a.height:,} rows; {size_a / 1e6:.1f} MB ours, {size_b / 1e6:.1f} MB polars)"


BENCHMARK = Benchmark(
    name="store_parquet",
    description="5M sales rows in memory -> Parquet file (FileSystemStorage vs polars.write_parquet)",
    variants={"ours": ours, "polars_write_parquet": baseline},
    prepare=prepare,
    baseline="polars_write_parquet",
    targets={"ours": {"time": 1.1}},
    check=check,
)
