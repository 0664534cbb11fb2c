"""Shared fixtures: the engine matrix, real-service checks, sample data."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl
import pytest

ENGINES = ["pandas", "polars", "polars-lazy", "pyarrow", "duckdb"]
if os.environ.get("DATA_PIPELINE_SPARK", "") == "1":  # the Spark engine joins with issue 4/6 work
    ENGINES.append("pyspark")

REQUIRE_SERVICES = os.environ.get("DATA_PIPELINE_REQUIRE_SERVICES") == "1"


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, under DATA_PIPELINE_REQUIRE_SERVICES=1, fail) when a server is unreachable."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{name} is not reachable on {host}:{port} ({exc})"
        if REQUIRE_SERVICES:
            pytest.fail(message + "; DATA_PIPELINE_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip(message)


@pytest.fixture(scope="session")
def duckdb_connection() -> Iterator[Any]:
    import duckdb

    con = duckdb.connect()
    yield con
    con.close()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


Maker = Callable[[Any], Any]


@pytest.fixture
def make_frame(engine: str, duckdb_connection: Any, request: pytest.FixtureRequest) -> Maker:
    """``make_frame(data)`` -> a native frame of the current engine from a dict or polars frame."""

    def make(data: Any) -> Any:
        df = data if isinstance(data, pl.DataFrame) else pl.DataFrame(data, strict=False)
        if engine == "polars":
            return df
        if engine == "polars-lazy":
            return df.lazy()
        if engine == "pandas":
            return df.to_pandas()
        if engine == "pyarrow":
            return df.to_arrow()
        if engine == "duckdb":
            return duckdb_connection.from_arrow(df.to_arrow())
        if engine == "pyspark":
            spark = request.getfixturevalue("spark")
            return spark.createDataFrame(df.to_pandas())
        raise AssertionError(engine)

    return make


def to_polars(native: Any) -> pl.DataFrame:
    """Any engine's result as a polars DataFrame, for comparison with the oracle."""
    from data_pipeline.core.frames import to_polars as convert

    return convert(native)


def native_type_name(native: Any) -> str:
    return f"{type(native).__module__.split('.')[0]}.{type(native).__name__}"


@pytest.fixture
def same_type() -> Callable[[Any, Any], bool]:
    def check(a: Any, b: Any) -> bool:
        return type(a) is type(b)

    return check
