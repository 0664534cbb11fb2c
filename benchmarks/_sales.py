"""Shared data of the processing benchmarks: the sales data as Parquet, a dimension table, and
the 50M-row multi-file data set of ``batch_out_of_core``. Everything is made once and cached in
``benchmarks/.data/``; files are written to a temporary name and renamed, so an interrupted run
never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.data import sales_csv
from benchmarks.harness import DATA_DIR

#: the files of the out-of-core data set: FILES files of ROWS_PER_FILE rows each (50M rows)
FILES = 10
ROWS_PER_FILE = 5_000_000


def sales_parquet(rows: int) -> Path:
    """The sales data as Parquet (converted from the benchmark CSV once, cached beside it).

    Same path and conversion as ``viz_dashboard`` uses, so the two share the file.
    """
    path = DATA_DIR / f"sales_{rows}.parquet"
    if not path.exists():
        import polars as pl

        csv = sales_csv(rows)
        tmp = path.with_suffix(".parquet.tmp")
        pl.scan_csv(csv, try_parse_dates=True).sink_parquet(tmp)
        tmp.replace(path)
    return path


def warm_up(params: dict[str, Any], *variants: Any) -> None:
    """Run each variant once on the first 1,000 rows of ``params["frame"]``.

    Called from ``prepare`` (untimed), so one-off costs (Narwhals imports its backend modules
    lazily, Polars starts its thread pool) are not counted in the measured run.
    """
    small = dict(params, frame=params["frame"].head(1_000))
    for variant in variants:
        variant(small)


def dimension_table() -> Any:
    """A products x regions dimension (60 rows, unique on ``product_id, region``).

    Columns: ``product_id``, ``region``, ``region_manager``, ``margin``, ``target_units``.
    """
    import polars as pl
    from examples.sales.generate import PRODUCTS, REGIONS

    managers = {"north": "Ada", "south": "Bo", "east": "Cy", "west": "Di", "central": "Ed"}
    rows = [
        {
            "product_id": code,
            "region": region,
            "region_manager": managers[region],
            "margin": round(0.15 + 0.01 * i + 0.02 * j, 2),
            "target_units": 1_000 * (i + 1) + 100 * j,
        }
        for i, (code, *_rest) in enumerate(PRODUCTS)
        for j, region in enumerate(REGIONS)
    ]
    return pl.DataFrame(rows)


def out_of_core_files(files: int = FILES, rows_per_file: int = ROWS_PER_FILE) -> list[Path]:
    """``files`` Parquet files of ``rows_per_file`` sales rows each (seeds 1..files).

    Generated one file at a time (about 1 GB of memory at 5M rows) and skipped when present.
    """
    folder = DATA_DIR / f"sales_ooc_{files}x{rows_per_file}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(files):
        path = folder / f"part-{index:03d}.parquet"
        if not path.exists():
            from examples.sales.generate import generate

            frame = generate(rows_per_file, seed=index + 1)
            tmp = path.with_suffix(".parquet.tmp")
            frame.write_parquet(tmp)
            del frame
            tmp.replace(path)
        paths.append(path)
    return paths


# -- results and peaks of the measured child processes, read back by check() -------------------


def _runs_dir(bench: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"dp-bench-{bench}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_run(bench: str, variant: str, result: Any) -> None:
    """Save a variant's (small) result and its peak RSS so far, keyed by the parent's pid.

    The harness runs each variant in a child of the ``python -m benchmarks`` process; check()
    runs in that parent and reads back what its own children recorded.
    """
    folder = _runs_dir(bench)
    parent = os.getppid()
    result.write_parquet(folder / f"{variant}-{parent}.parquet")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(folder / f"{variant}-{parent}.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"peak_mb": peak_mb}) + "\n")


def recorded_run(bench: str, variant: str) -> tuple[Any, list[float]] | None:
    """The last result and all peaks (MB) recorded by this process's children, or None."""
    import polars as pl

    folder = _runs_dir(bench)
    me = os.getpid()
    result_path = folder / f"{variant}-{me}.parquet"
    peaks_path = folder / f"{variant}-{me}.jsonl"
    if not result_path.exists() or not peaks_path.exists():
        return None
    result = pl.read_parquet(result_path)
    peaks = [json.loads(line)["peak_mb"] for line in peaks_path.read_text().splitlines() if line]
    result_path.unlink()
    peaks_path.unlink()
    return result, peaks
