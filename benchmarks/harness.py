"""Run each variant of a benchmark in a fresh process; print times, peak memory and ratios.

Every variant runs in its own subprocess so that its peak RSS is its own. Variants alternate
(ours, baseline, ours, baseline, ...) so that machine noise hits both alike. Time is measured
around the work only (imports and data generation excluded); peak memory is the process's
high-water mark during the work (Linux ``VmHWM``, reset after ``prepare``, so a first run that
generates its data files measures the same as later ones; elsewhere ``ru_maxrss``, which
counts ``prepare`` too).
"""

from __future__ import annotations

import importlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / ".data"

BENCHMARKS = {
    "e2e_batch": "benchmarks.e2e_batch",
    "ingest_csv": "benchmarks.ingest_csv",
    "ingest_rest": "benchmarks.ingest_rest",
    "ingest_db": "benchmarks.ingest_db",
    "ingest_stream": "benchmarks.ingest_stream",
    "stream_e2e": "benchmarks.stream_e2e",
    "transform_chain": "benchmarks.transform_chain",
    "store_postgres": "benchmarks.store_postgres",
    "store_parquet": "benchmarks.store_parquet",
    "store_duckdb": "benchmarks.store_duckdb",
    "store_documents": "benchmarks.store_documents",
    "process_groupby": "benchmarks.process_groupby",
    "process_join": "benchmarks.process_join",
    "batch_out_of_core": "benchmarks.batch_out_of_core",
    "stream_window_inprocess": "benchmarks.stream_window_inprocess",
    "viz_dashboard": "benchmarks.viz_dashboard",
    "spark_scale_out": "benchmarks.spark_scale_out",
}


@dataclass
class Benchmark:
    """A benchmark module defines one of these as ``BENCHMARK``."""

    name: str
    description: str
    variants: dict[str, Callable[[dict[str, Any]], Any]]
    prepare: Callable[[int], dict[str, Any]]
    baseline: str
    targets: dict[str, dict[str, float]] = field(default_factory=dict)
    """``{"ours": {"time": 1.15, "memory": 1.5}}``: ratios against the baseline that must not be exceeded."""
    check: Callable[[dict[str, Any]], str] | None = None
    """Called after the runs with ``prepare()``'s params plus ``params["measured"]``:
    ``{variant: [seconds of each run]}``; returns lines to print (extra ratios, equality checks)."""
    default_rows: int = 5_000_000


def same_frame(result: Any, expected: Any) -> bool:
    """Whether two Polars results hold the same values (dtypes may differ; floats to 1e-9),
    printing the difference when they do not: the check of benchmarks with an oracle run."""
    from polars.testing import assert_frame_equal

    try:
        assert_frame_equal(result, expected, check_dtypes=False, rel_tol=1e-9)
    except AssertionError as exc:
        print(exc)
        return False
    return True


def load(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    module = importlib.import_module(BENCHMARKS[name])
    bench: Benchmark = module.BENCHMARK
    return bench


def _high_water_kb() -> int | None:
    """The process's peak RSS since the last :func:`_reset_high_water` (Linux ``VmHWM``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_high_water() -> bool:
    """Start the peak RSS afresh (Linux: ``5`` to ``/proc/self/clear_refs``), so what
    ``prepare`` did (generating data files on a first run) does not count; False where the
    kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return _high_water_kb() is not None


def child(name: str, variant: str, rows: int) -> None:
    """Entry point of one measured process: prints one JSON line."""
    import resource

    bench = load(name)
    params = bench.prepare(rows)
    fn = bench.variants[variant]
    fresh = _reset_high_water()
    start = time.perf_counter()
    fn(params)
    seconds = time.perf_counter() - start
    peak_kb = _high_water_kb() if fresh else None
    if peak_kb is None:  # the whole process's high-water mark, prepare included
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024}))


def run(name: str, rows: int | None, repeat: int) -> int:
    bench = load(name)
    rows = rows or bench.default_rows
    print(f"{bench.name}: {bench.description}")
    print(f"rows: {rows:,}; repeats: {repeat}; each run in a fresh process")
    bench.prepare(rows)  # make the data once, outside the timed runs
    results: dict[str, list[dict[str, float]]] = {v: [] for v in bench.variants}
    for _ in range(repeat):
        for variant in bench.variants:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks", "--child", name, variant, str(rows)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                print(out.stdout, out.stderr, sep="\n")
                raise SystemExit(f"variant {variant!r} failed")
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = results[bench.baseline]
    base_t = min(r["seconds"] for r in base)
    base_m = max(r["peak_mb"] for r in base)
    print()
    print(
        f"{'variant':<22}{'min s':>9}{'median s':>10}{'max s':>9}{'peak MB':>10}{'time x':>9}{'mem x':>8}  target"
    )
    failed = False
    for variant, rs in results.items():
        times = [r["seconds"] for r in rs]
        peak = max(r["peak_mb"] for r in rs)
        t_ratio = min(times) / base_t
        m_ratio = peak / base_m
        target = bench.targets.get(variant, {})
        verdict = ""
        if target:
            ok_t = t_ratio <= target.get("time", float("inf"))
            ok_m = m_ratio <= target.get("memory", float("inf"))
            verdict = " ".join(f"{k}<={v}x" for k, v in target.items()) + (
                "  OK" if ok_t and ok_m else "  MISSED"
            )
            failed |= not (ok_t and ok_m)
        print(
            f"{variant:<22}{min(times):>9.3f}{statistics.median(times):>10.3f}{max(times):>9.3f}"
            f"{peak:>10.1f}{t_ratio:>9.2f}{m_ratio:>8.2f}  {verdict}"
        )
    if bench.check is not None:
        params = bench.prepare(rows)
        # the seconds each variant measured above, so check() can print further ratios
        params["measured"] = {v: [r["seconds"] for r in rs] for v, rs in results.items()}
        print(bench.check(params))
    return 1 if failed else 0
