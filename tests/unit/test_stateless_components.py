"""Components are stateless per call: one instance serves a pandas thread and a PyArrow thread.

A DataTypeConverter once kept "this call's engine" on ``self`` (``_pandas``, ``_arrow``, ...):
one converter shared by two threads built one thread's expressions with the other thread's
engine and gave wrong types or errors (74 in 600 calls). Each test runs one shared instance from
two threads on different engines, many times, with a tiny thread switch interval so the threads
interleave inside a call, and compares every result with the answer written in the test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.engines import to_engine, to_polars

ROUNDS = 50


def in_two_threads(work: dict[str, Callable[[int], None]]) -> list[str]:
    """Run each ``work[name](round)`` ROUNDS times in its own thread, started together; return
    what failed (the exceptions, as text)."""
    failures: list[str] = []
    barrier = threading.Barrier(len(work))

    def loop(name: str, call: Callable[[int], None]) -> None:
        barrier.wait()
        for i in range(ROUNDS):
            try:
                call(i)
            except Exception as exc:  # collected: the test reports them all
                failures.append(f"{name} round {i}: {type(exc).__name__}: {exc}"[:300])

    threads = [threading.Thread(target=loop, args=item) for item in work.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


# -- DataTypeConverter -------------------------------------------------------------------------

TEXT = pl.DataFrame({"n": ["+5", " 7 ", None, "-3"], "f": ["1.5", "+2", "", "x"]})
# oracle: int() / float() of the stripped text; '' is missing, 'x' is bad (coerced to null)
WANT = {"n": [5, 7, None, -3], "f": [1.5, 2.0, None, None]}


def test_one_converter_on_a_pandas_and_a_pyarrow_thread(interleaved: None) -> None:
    from data_pipeline.transformation import DataTypeConverter

    converter = DataTypeConverter(
        "types", {"columns": {"n": "int64", "f": "float64"}, "errors": "coerce"}
    )
    frames = {engine: to_engine(TEXT, engine) for engine in ("pandas", "pyarrow")}

    def call(engine: str) -> Callable[[int], None]:
        def run(_: int) -> None:
            out = to_polars(converter.transform(frames[engine]))
            assert out.schema == pl.Schema({"n": pl.Int64, "f": pl.Float64}), out.schema
            assert out.to_dict(as_series=False) == WANT

        return run

    assert in_two_threads({e: call(e) for e in frames}) == []


def test_a_pyarrow_call_in_the_middle_of_a_pandas_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic: the pandas call stops after it has looked at its frame and before it
    builds the first conversion, a PyArrow call of the same converter runs to its end on
    another thread, then the pandas call goes on. State kept on ``self`` would be PyArrow's now."""
    from data_pipeline.transformation import DataTypeConverter

    converter = DataTypeConverter(
        "types", {"columns": {"n": "int64", "f": "float64"}, "errors": "coerce"}
    )
    frames = {engine: to_engine(TEXT, engine) for engine in ("pandas", "pyarrow")}
    convert = DataTypeConverter._convert
    results: dict[str, Any] = {}

    def other_call_first(self: Any, *args: Any, **kwargs: Any) -> Any:
        if "pyarrow" not in results and threading.current_thread() is threading.main_thread():
            results["pyarrow"] = None
            thread = threading.Thread(
                target=lambda: results.update(pyarrow=converter.transform(frames["pyarrow"]))
            )
            thread.start()
            thread.join()
        return convert(self, *args, **kwargs)

    monkeypatch.setattr(DataTypeConverter, "_convert", other_call_first)
    results["pandas"] = converter.transform(frames["pandas"])
    for engine in ("pandas", "pyarrow"):
        out = to_polars(results[engine])
        assert out.schema == pl.Schema({"n": pl.Int64, "f": pl.Float64}), (engine, out.schema)
        assert out.to_dict(as_series=False) == WANT, engine


# -- Chart ---------------------------------------------------------------------------------------


def test_one_chart_on_a_pandas_and_a_pyarrow_thread(interleaved: None) -> None:
    """The two threads render different data with different ``keep_fields`` (a dashboard
    filter's column kept as an extra group key on one thread only)."""
    from data_pipeline.visualization import BarChart

    chart = BarChart("bars", {"x": "k", "y": "v", "aggregate": "sum"})
    data = {
        "pandas": pl.DataFrame({"k": ["a", "b", "a"], "g": [1, 1, 2], "v": [1, 2, 3]}),
        "pyarrow": pl.DataFrame(
            {"k": ["x", "y", "y", "z"], "g": [1, 1, 2, 2], "v": [10, 20, 30, 40]}
        ),
    }
    keep = {"pandas": ("g",), "pyarrow": ()}
    # oracle: the sums per key (per key and g where g is kept), computed here
    want = {
        "pandas": {("a", 1): 1, ("b", 1): 2, ("a", 2): 3},
        "pyarrow": {("x",): 10, ("y",): 50, ("z",): 40},
    }
    frames = {engine: to_engine(df, engine) for engine, df in data.items()}

    def sums(spec: dict[str, Any], kept: tuple[str, ...]) -> dict[tuple[Any, ...], Any]:
        values = spec.get("data", {}).get("values")
        if values is None:  # inline datasets by name
            values = next(iter(spec["datasets"].values()))
        return {(row["k"], *(row[f] for f in kept)): row["v"] for row in values}

    def call(engine: str) -> Callable[[int], None]:
        def run(_: int) -> None:
            spec = chart.render(frames[engine], keep_fields=keep[engine])
            assert sums(spec, keep[engine]) == want[engine]

        return run

    assert in_two_threads({e: call(e) for e in frames}) == []


# -- a storage backend -----------------------------------------------------------------------------


# One storage object on one SQLite or DuckDB database (a file, or in memory) serves both threads:
# this used to fail now and then (SQLite "disk I/O error", DuckDB "Table Function with name
# python_arrow_scan does not exist" on a file, DuckDB errors on the one kept :memory: connection).
@pytest.mark.parametrize(
    "backend", ["filesystem", "sqlite", "sqlite-memory", "duckdb", "duckdb-memory", "duckdb-held"]
)
def test_one_storage_on_a_pandas_and_a_pyarrow_thread(
    interleaved: None, tmp_path: Path, backend: str
) -> None:
    from data_pipeline.storage import DataWarehouseStorage, FileSystemStorage, RelationalDBStorage

    storage: Any
    if backend == "filesystem":
        storage = FileSystemStorage("files", {"base_path": str(tmp_path)})
    elif backend.startswith("sqlite"):
        path = ":memory:" if backend.endswith("memory") else str(tmp_path / "s.db")
        storage = RelationalDBStorage("db", {"db_type": "sqlite", "database": path})
    else:
        path = ":memory:" if backend.endswith("memory") else str(tmp_path / "w.duckdb")
        storage = DataWarehouseStorage("wh", {"database": path})
        if backend.endswith("held"):  # inside `with`: one kept connection to the file
            storage.__enter__()
    data = {
        "pandas": pl.DataFrame({"id": [1, 2, 3], "name": ["a", "b", None]}),
        "pyarrow": pl.DataFrame({"id": [7, 8], "score": [0.5, -1.25]}),
    }

    def call(engine: str) -> Callable[[int], None]:
        def run(i: int) -> None:
            table = f"t_{engine}_{i % 3}"
            storage.store(to_engine(data[engine], engine), table, if_exists="replace")
            back = to_polars(storage.retrieve(table)).sort("id")
            assert back.to_dict(as_series=False) == data[engine].to_dict(as_series=False)

        return run

    rounds = {e: call(e) for e in data}
    try:
        assert in_two_threads(rounds) == []
    finally:
        close = getattr(storage, "close", None)
        if close is not None:
            close()
