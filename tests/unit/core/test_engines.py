"""core.engines: one detection and one conversion for every engine, checked against the data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data_pipeline.core import engines
from data_pipeline.core.engines import engine_of, match_engine, to_arrow, to_engine, to_polars
from data_pipeline.core.errors import UnsupportedOperationError

# values every engine holds exactly (pandas: no nulls in ints or bools, no NaN)
DATA = pl.DataFrame(
    {
        "id": [1, 2, 3],
        "price": [2.5, -0.0, 1e300],
        "name": ["a", "ünï cödé", ""],
        "flag": [True, False, True],
        "day": [dt.date(2024, 2, 29), dt.date(1970, 1, 1), dt.date(1, 1, 1)],
        "at": [dt.datetime(2024, 1, 5, 3, 4, 5, 120000), dt.datetime(1999, 12, 31), None],
    }
)
TARGETS = ["pandas", "polars", "polars-lazy", "pyarrow", "duckdb"]


def test_engine_of_names_every_engine(make_frame: Any, engine: str) -> None:
    import narwhals as nw

    native = make_frame(DATA)
    assert engine_of(native) == engine
    assert engine_of(nw.from_native(native)) == engine


@pytest.mark.parametrize("target", TARGETS)
def test_to_engine_keeps_values_and_types(make_frame: Any, engine: str, target: str) -> None:
    native = make_frame(DATA)
    moved = to_engine(native, target)
    assert engine_of(moved) == target
    got = to_polars(moved)
    want = DATA
    if "pandas" in (engine, target):  # numpy-backed pandas has no date type: datetime64
        got = got.with_columns(pl.col("day").cast(pl.Date), pl.col("at").dt.cast_time_unit("us"))
    assert_frame_equal(got, want)


def test_to_engine_spark_from_every_engine(make_frame: Any, engine: str, spark: Any) -> None:
    moved = to_engine(make_frame(DATA), "spark", session=spark)
    assert engine_of(moved) == "pyspark"
    got = to_polars(moved)
    if engine == "pandas":
        got = got.with_columns(pl.col("day").cast(pl.Date))
    assert_frame_equal(got.with_columns(pl.col("at").dt.cast_time_unit("us")), DATA)


def test_match_engine_registers_on_the_templates_duckdb_connection() -> None:
    import duckdb
    import narwhals as nw

    con = duckdb.connect()
    try:
        template = nw.from_native(con.from_arrow(DATA.to_arrow()))
        other = match_engine(template, DATA.select("id", "name"), what="reference")
        assert engine_of(other) == "duckdb"
        joined = template.join(other, on="id").collect("polars").to_native()
        assert joined.sort("id")["name_right"].to_list() == DATA["name"].to_list()
    finally:
        con.close()


# -- a pandas index is never a column --------------------------------------------------------


def _stored_columns_after_pandas_filter(tmp_path: Path) -> list[str]:
    """What a user sees: filter a pandas frame, store it in DuckDB, read the table back."""
    import pandas as pd

    from data_pipeline.processing import DataFilter
    from data_pipeline.storage import DataWarehouseStorage

    frame = pd.DataFrame({"x": [1, 2, 3, 4], "y": ["a", "b", "c", "d"]})
    kept = DataFilter("f", {"condition": "x <> 3"}).process(frame)  # index 0, 1, 3
    warehouse = DataWarehouseStorage("w", {"database": str(tmp_path / "w.duckdb")})
    warehouse.store(kept, "t", if_exists="replace")
    back = warehouse.retrieve("t")
    assert sorted(to_polars(back)["x"].to_list()) == [1, 2, 4]
    return list(to_polars(back).columns)


def test_pandas_index_is_not_stored(tmp_path: Path) -> None:
    assert _stored_columns_after_pandas_filter(tmp_path) == ["x", "y"]


def test_pandas_index_drill_sees_a_conversion_that_keeps_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa

    monkeypatch.setattr(engines, "_from_pandas", pa.Table.from_pandas)  # the broken variant
    assert "__index_level_0__" in _stored_columns_after_pandas_filter(tmp_path)


# -- names that differ only by case ------------------------------------------------------------

CASED = pl.DataFrame({"a": [1, 2], "A": [3, 4], "b": [5, 6]})


def test_duckdb_refuses_names_that_differ_only_by_case() -> None:
    with pytest.raises(UnsupportedOperationError) as info:
        to_engine(CASED, "duckdb")
    message = str(info.value)
    assert "'a' and 'A'" in message and "duckdb" in message and "rename" in message


def test_case_drill_sees_duckdb_rename_a_column(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "check_column_case", lambda *a, **k: None)  # the broken variant
    assert to_engine(CASED, "duckdb").columns == ["a", "A_1", "b"]


def test_other_engines_keep_names_that_differ_only_by_case() -> None:
    for target in ("pandas", "polars", "polars-lazy", "pyarrow"):
        assert_frame_equal(to_polars(to_engine(CASED, target)), CASED)


def test_pipeline_on_duckdb_refuses_names_that_differ_only_by_case(tmp_path: Path) -> None:
    from data_pipeline.pipeline import run_pipeline

    CASED.write_csv(tmp_path / "in.csv")
    spec = {
        "name": "cased",
        "engine": "duckdb",
        "sources": {
            "raw": {"type": "FileSystemSource", "config": {"path": str(tmp_path / "in.csv")}}
        },
    }
    with pytest.raises(UnsupportedOperationError, match="'a' and 'A'"):
        run_pipeline(spec)


@pytest.mark.spark
def test_spark_refuses_names_that_differ_only_by_case_unless_case_sensitive(spark: Any) -> None:
    with pytest.raises(UnsupportedOperationError, match="'a' and 'A'"):
        to_engine(CASED, "spark", session=spark)
    spark.conf.set("spark.sql.caseSensitive", "true")
    try:
        assert_frame_equal(to_polars(to_engine(CASED, "spark", session=spark)), CASED)
    finally:
        spark.conf.set("spark.sql.caseSensitive", "false")


@pytest.mark.spark
def test_a_step_refuses_a_spark_frame_with_names_that_differ_only_by_case(spark: Any) -> None:
    from data_pipeline.processing import DataFilter

    frame = spark.createDataFrame(CASED.to_arrow())  # Spark makes it, ambiguous names and all
    with pytest.raises(UnsupportedOperationError, match="'a' and 'A'"):
        DataFilter("f", {"condition": "b > 5"}).process(frame)


# -- UTC by one name ------------------------------------------------------------------------------


def _duckdb_utc() -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'Etc/UTC'")
    return con.sql("SELECT TIMESTAMPTZ '2024-03-01 10:30:00+00' AS t, 1 AS n")


def test_utc_columns_leave_every_engine_labelled_utc() -> None:
    """DuckDB (and Spark) name the zone of a UTC session ``Etc/UTC``; a stored schema must not
    depend on the engine, so frames leave the engines labelled ``UTC`` (same instants)."""
    import pyarrow as pa

    want = dt.datetime(2024, 3, 1, 10, 30, tzinfo=dt.timezone.utc)
    table = to_arrow(_duckdb_utc())
    assert table.schema.field("t").type == pa.timestamp("us", "UTC")
    assert table.column("t").to_pylist() == [want]
    frame = to_polars(_duckdb_utc())
    assert frame.schema["t"] == pl.Datetime("us", "UTC") and frame["t"].to_list() == [want]
    etc = pa.table({"t": pa.array([want], pa.timestamp("us", "Etc/UTC"))})
    assert to_arrow(etc).schema.field("t").type == pa.timestamp("us", "UTC")
    paris = pa.table({"t": pa.array([want], pa.timestamp("us", "Europe/Paris"))})
    assert to_arrow(paris) is paris  # another zone keeps its name, and nothing is copied


def test_utc_label_drill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "_utc_labels", lambda table: table)  # the broken variant
    assert to_arrow(_duckdb_utc()).schema.field("t").type.tz == "Etc/UTC"


# -- to_pandas(like=) -----------------------------------------------------------------------------


def test_to_pandas_like_a_template_keeps_its_dtypes() -> None:
    """A result computed on Polars comes back in the dtypes of the pandas frame it came from:
    numpy ints that must hold nulls become the nullable dtype, Arrow dates stay Arrow dates."""
    import pandas as pd
    import pyarrow as pa

    template = pd.DataFrame(
        {
            "n": pd.array([1, 2], dtype="int64"),
            "b": pd.array([True, False], dtype="bool"),
            "d": pd.array([dt.date(2024, 1, 1), None], dtype=pd.ArrowDtype(pa.date32())),
        }
    )
    result = pl.DataFrame(
        {"n": [1, None], "b": [None, True], "d": [dt.date(2024, 1, 2), None], "x": [1.5, None]}
    )
    out = engines.to_pandas(result, like=template)
    assert {c: str(t) for c, t in out.dtypes.items()} == {
        "n": "Int64",
        "b": "boolean",
        "d": "date32[day][pyarrow]",
        "x": "float64",
    }
    assert out["n"].tolist()[0] == 1 and out["n"].isna().tolist() == [False, True]
    assert out["d"].tolist()[0] == dt.date(2024, 1, 2)
    # Polars' own to_pandas(), the broken variant: int with nulls -> float, date -> datetime64
    plain = engines.to_pandas(result)
    assert str(plain["n"].dtype) == "float64" and str(plain["d"].dtype).startswith("datetime64")


# -- dots in PySpark column names -----------------------------------------------------------------


def test_dotted_names_are_refused_only_on_pyspark_without_the_quoting(monkeypatch: Any) -> None:
    """Refused only when Narwhals cannot be made to quote names (an unchecked version); every
    step kind on dotted names: tests/unit/test_spark_dotted_names.py."""
    from data_pipeline.core import spark_names

    monkeypatch.setattr(spark_names, "install", lambda: False)
    with pytest.raises(UnsupportedOperationError, match=r"'a\.b'") as info:
        engines.check_spark_dotted_names(["a.b", "k"], "pyspark", component="c")
    assert "withColumnRenamed" in str(info.value.hint)
    for engine in ("pandas", "polars", "polars-lazy", "pyarrow", "duckdb"):
        engines.check_spark_dotted_names(["a.b"], engine)  # they address it as it is
