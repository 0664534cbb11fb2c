"""DataTypeConverter on every engine, checked against DuckDB SQL (try_cast) or plain Python."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline.core.errors import (
    ColumnNotFoundError,
    ConfigError,
    DataTypeError,
    UnsupportedOperationError,
)
from data_pipeline.transformation.types import DataTypeConverter, format_pattern
from tests.conftest import to_polars
from tests.unit.transformation.conftest import LAZY_ENGINES, assert_same, oracle

TEXT = pl.DataFrame(
    {
        "id": [1, 2, 3, 4, 5, 6, 7],
        "n": ["1", " 2 ", "x", None, "", "+3", "-4"],
        "f": ["1.5", "2", "abc", None, "1e3", " -0.25 ", "."],
        "b": ["true", "No", "maybe", None, "1", "F", "y"],
        "day": ["05/01/2024", "31/12/2023", "2024-01-05", None, "", "01/02/2024", "32/01/2024"],
    }
)


def test_coerce_text(make_frame: Any, engine: str, check_type: Any) -> None:
    frame = make_frame(TEXT)
    converter = DataTypeConverter(
        name="t",
        config={
            "columns": {
                "n": "int",
                "f": "float",
                "day": {"type": "datetime", "format": "%d/%m/%Y"},
            },
            "errors": "coerce",
        },
    )
    result = converter.transform(frame)
    check_type(frame, result)
    expected = oracle(
        """select id, try_cast(nullif(trim(n), '') as bigint) as n,
                  try_cast(nullif(trim(f), '') as double) as f, b,
                  try_strptime(nullif(trim(day), ''), '%d/%m/%Y') as day from t""",
        t=TEXT,
    )
    assert_same(result, expected)
    if engine not in LAZY_ENGINES:
        assert converter.get_metadata()["details"]["coerced"] == {"n": 1, "f": 2, "day": 2}


def test_coerce_bool_and_decimal(make_frame: Any) -> None:
    result = DataTypeConverter(
        name="t",
        config={"columns": {"b": "bool", "f": {"type": "decimal", "scale": 2}}, "errors": "coerce"},
    ).transform(make_frame(TEXT))
    out = to_polars(result).sort("id")
    assert out["b"].to_list() == [True, False, None, None, True, False, True]
    assert out["f"].to_list() == [
        Decimal("1.50"),
        Decimal("2.00"),
        None,
        None,
        None,
        Decimal("-0.25"),
        None,
    ]


def test_date_type(make_frame: Any, engine: str) -> None:
    converter = DataTypeConverter(
        name="t",
        config={"columns": {"day": {"type": "date", "format": "%d/%m/%Y"}}, "errors": "coerce"},
    )
    if engine == "pandas":
        with pytest.raises(UnsupportedOperationError) as info:
            converter.transform(make_frame(TEXT))
        assert (
            "pandas" in str(info.value)
            and "date" in str(info.value)
            and "datetime" in str(info.value)
        )
        return
    out = to_polars(converter.transform(make_frame(TEXT))).sort("id")
    assert out["day"].to_list() == [
        dt.date(2024, 1, 5),
        dt.date(2023, 12, 31),
        None,
        None,
        None,
        dt.date(2024, 2, 1),
        None,
    ]


def test_raise_names_column_values_and_rows(make_frame: Any, engine: str) -> None:
    converter = DataTypeConverter(name="conv", config={"columns": {"n": "int", "id": "string"}})
    with pytest.raises(DataTypeError) as info:
        result = converter.transform(make_frame(TEXT))
        if engine == "polars-lazy":
            result.collect()  # a Polars LazyFrame is checked while its plan runs
    text = str(info.value)
    assert "DataTypeConverter 'conv'" in text and "column 'n'" in text and "'x'" in text
    assert "errors: 'coerce'" in text
    if engine not in LAZY_ENGINES:
        assert "'x' (row 2)" in text
    # good data passes and converts
    good = DataTypeConverter(name="conv", config={"columns": {"id": "string"}}).transform(
        make_frame(TEXT)
    )
    assert to_polars(good).sort("id")["id"].to_list() == [str(i) for i in range(1, 8)]


def test_reject_routes_bad_rows(make_frame: Any, engine: str, check_type: Any) -> None:
    frame = make_frame(TEXT)
    converter = DataTypeConverter(
        name="r", config={"columns": {"n": "int", "f": "float"}, "errors": "reject"}
    )
    result = converter.transform(frame)
    check_type(frame, result)
    expected = oracle(
        """select id, try_cast(nullif(trim(n), '') as bigint) as n,
                  try_cast(nullif(trim(f), '') as double) as f, b, day from t
           where (nullif(trim(n), '') is null or try_cast(trim(n) as bigint) is not null)
             and (nullif(trim(f), '') is null or try_cast(trim(f) as double) is not null)""",
        t=TEXT,
    )
    assert_same(result, expected)
    rejects = converter.last_rejects
    check_type(frame, rejects)
    rejected = to_polars(rejects).sort("id")
    assert rejected["id"].to_list() == [3, 7]
    assert rejected["_reject_reason"].to_list() == [
        "n: cannot convert x to int64; f: cannot convert abc to float64",
        "f: cannot convert . to float64",
    ]
    if engine not in LAZY_ENGINES:
        meta = converter.get_metadata()
        assert meta["rows_rejected"] == 2
        assert meta["rows_in"] == meta["rows_out"] + meta["rows_rejected"]


def test_numeric_sources(make_frame: Any) -> None:
    df = pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "x": [1.0, 2.5, None, 300.0],
            "k": [0, 1, 2, None],
            "ok": [True, False, False, True],
        }
    )
    out = to_polars(
        DataTypeConverter(
            name="t",
            config={"columns": {"x": "int16", "k": "bool", "ok": "int"}, "errors": "coerce"},
        ).transform(make_frame(df))
    ).sort("id")
    assert out["x"].to_list() == [1, None, None, 300]
    assert out["k"].to_list() == [False, True, None, None]
    assert out["ok"].to_list() == [1, 0, 0, 1]
    out = to_polars(
        DataTypeConverter(
            name="t", config={"columns": {"x": "int8"}, "errors": "coerce"}
        ).transform(make_frame(df))
    ).sort("id")
    assert out["x"].to_list() == [1, None, None, None]  # 300 does not fit int8


def test_category(make_frame: Any, engine: str) -> None:
    df = pl.DataFrame({"id": [1, 2, 3], "region": ["north", "south", "north"]})
    converter = DataTypeConverter(name="c", config={"columns": {"region": "category"}})
    if engine in ("duckdb", "pyspark"):
        with pytest.raises(UnsupportedOperationError) as info:
            converter.transform(make_frame(df))
        assert (
            engine in str(info.value)
            and "category" in str(info.value)
            and "'string'" in str(info.value)
        )
        return
    out = to_polars(converter.transform(make_frame(df))).sort("id")
    assert out.schema["region"] == pl.Categorical
    assert out["region"].cast(pl.String).to_list() == ["north", "south", "north"]


def test_datetime_time_zones(make_frame: Any, engine: str) -> None:
    df = pl.DataFrame({"id": [1, 2], "ts": ["2024-01-05T10:00:00", "2024-07-01 12:30:00"]})
    paris = DataTypeConverter(
        name="tz", config={"columns": {"ts": {"type": "datetime", "time_zone": "Europe/Paris"}}}
    )
    if engine in ("duckdb", "pyspark"):
        with pytest.raises(UnsupportedOperationError, match=engine):
            paris.transform(make_frame(df))
    else:
        out = to_polars(paris.transform(make_frame(df))).sort("id")
        utc = [v.astimezone(dt.timezone.utc).replace(tzinfo=None) for v in out["ts"].to_list()]
        assert utc == [dt.datetime(2024, 1, 5, 9, 0), dt.datetime(2024, 7, 1, 10, 30)]
    aware = pl.DataFrame({"id": [1], "ts": ["2024-01-05 10:00:00+0200"]})
    out = to_polars(
        DataTypeConverter(
            name="tz",
            config={
                "columns": {
                    "ts": {"type": "datetime", "format": "%Y-%m-%d %H:%M:%S%z", "time_zone": "UTC"}
                }
            },
        ).transform(make_frame(aware))
    )
    value = out["ts"][0]
    assert value.astimezone(dt.timezone.utc).replace(tzinfo=None) == dt.datetime(2024, 1, 5, 8, 0)


def test_edge_cases(make_frame: Any, check_type: Any) -> None:
    empty = make_frame(pl.DataFrame(schema={"id": pl.Int64, "n": pl.String}))
    result = DataTypeConverter(name="e", config={"columns": {"n": "int"}}).transform(empty)
    check_type(empty, result)
    assert to_polars(result).height == 0
    nulls = pl.DataFrame(
        {"id": [1, 2], "prix €": [None, None]}, schema={"id": pl.Int64, "prix €": pl.String}
    )
    out = to_polars(
        DataTypeConverter(name="e", config={"columns": {"prix €": "float"}}).transform(
            make_frame(nulls)
        )
    )
    assert out["prix €"].to_list() == [None, None]
    one = to_polars(
        DataTypeConverter(name="e", config={"columns": {"n": "float"}}).transform(
            make_frame(pl.DataFrame({"n": ["7.5"]}))
        )
    )
    assert one["n"].to_list() == [7.5]


def test_config_errors(make_frame: Any) -> None:
    assert (
        DataTypeConverter(name="t", config={"columns": {"a": "integer"}}).settings.spec("a").type
        == "int64"
    )  # one vocabulary: every name of core.types
    with pytest.raises(ConfigError) as info:
        DataTypeConverter(name="t", config={"columns": {"a": "intger"}})
    assert (
        "'intger'" in str(info.value)
        and "int64" in str(info.value)
        and "columns.a" in str(info.value)
    )
    with pytest.raises(ConfigError, match="cannot convert to time"):
        DataTypeConverter(name="t", config={"columns": {"a": "time"}})
    with pytest.raises(ConfigError, match="unsupported directive '%Q'"):
        DataTypeConverter(name="t", config={"columns": {"a": {"type": "date", "format": "%Q"}}})
    with pytest.raises(ConfigError, match="unknown time zone"):
        DataTypeConverter(
            name="t", config={"columns": {"a": {"type": "datetime", "time_zone": "Mars/Base"}}}
        )
    with pytest.raises(ConfigError, match="'raise'"):
        DataTypeConverter(name="t", config={"columns": {"a": "int"}, "errors": "ignore"})
    with pytest.raises(ColumnNotFoundError, match="'nn'"):
        DataTypeConverter(name="t", config={"columns": {"nn": "int"}}).transform(make_frame(TEXT))
    with pytest.raises(DataTypeError, match="cannot convert column 'id'"):
        DataTypeConverter(name="t", config={"columns": {"id": "date"}}).transform(
            pl.DataFrame({"id": [1]})
        )


def test_format_pattern() -> None:
    import re

    pattern = re.compile(format_pattern("%d/%m/%Y %H:%M"))
    assert pattern.match("05/01/2024 23:59")
    assert not pattern.match("05/13/2024 23:59")
    assert not pattern.match("2024-01-05")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-(2**62), 2**62)), max_size=30))
def test_property_int_string_round_trip(values: list[int | None]) -> None:
    df = pl.DataFrame({"x": values}, schema={"x": pl.Int64})
    as_text = DataTypeConverter(name="s", config={"columns": {"x": "string"}}).transform(df)
    back = DataTypeConverter(name="i", config={"columns": {"x": "int"}}).transform(as_text)
    assert back["x"].to_list() == values


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)), max_size=30)
)
def test_property_float_string_round_trip(values: list[float | None]) -> None:
    df = pl.DataFrame({"x": values}, schema={"x": pl.Float64})
    as_text = DataTypeConverter(name="s", config={"columns": {"x": "string"}}).transform(df)
    back = DataTypeConverter(name="f", config={"columns": {"x": "float"}}).transform(as_text)
    assert back["x"].to_list() == values


def test_polars_lazy_raise_checks_at_collect() -> None:
    converter = DataTypeConverter(name="lazy", config={"columns": {"n": "int", "f": "float"}})
    result = converter.transform(TEXT.lazy())
    assert isinstance(result, pl.LazyFrame)  # nothing ran yet
    with pytest.raises(DataTypeError) as info:
        result.collect()
    text = str(info.value)
    assert "DataTypeConverter 'lazy'" in text
    # Polars converts the columns in parallel: either bad column may be reported first
    assert ("column 'n'" in text and "'x' (row 2)" in text) or (
        "column 'f'" in text and "'abc' (row 2), '.' (row 6)" in text
    )
    good = DataTypeConverter(name="lazy", config={"columns": {"n": "int"}}).transform(
        TEXT.lazy().filter(pl.col("id") != 3)
    )
    assert good.collect()["n"].to_list() == [1, 2, None, None, 3, -4]


def test_strip_whitespace_off(make_frame: Any) -> None:
    out = DataTypeConverter(
        name="s", config={"columns": {"n": "int"}, "errors": "coerce", "strip_whitespace": False}
    ).transform(make_frame(TEXT))
    assert to_polars(out).sort("id")["n"].to_list() == [1, None, None, None, None, 3, -4]


@pytest.mark.parametrize("target", ["int", "float", "string", "bool"])
def test_untyped_all_null_column(make_frame: Any, engine: str, target: str) -> None:
    df = pl.DataFrame({"id": [1, 2], "x": [None, None]})  # Polars infers the Null type
    out = to_polars(
        DataTypeConverter(name="n", config={"columns": {"x": target}}).transform(make_frame(df))
    )
    assert out["x"].to_list() == [None, None]


def test_default_datetime_accepts_date_and_minutes(make_frame: Any) -> None:
    df = pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "ts": ["2024-01-05", "2024-01-05T10:30", "2024-01-05 10:30:15", "05.01.2024"],
        }
    )
    out = DataTypeConverter(
        name="d", config={"columns": {"ts": "datetime"}, "errors": "coerce"}
    ).transform(make_frame(df))
    assert to_polars(out).sort("id")["ts"].to_list() == [
        dt.datetime(2024, 1, 5),
        dt.datetime(2024, 1, 5, 10, 30),
        dt.datetime(2024, 1, 5, 10, 30, 15),
        None,
    ]


NUMBERS = pl.DataFrame(
    {
        "id": [1, 2, 3, 4, 5, 6],
        "x": [1.0, 2.5, None, float("nan"), 1e12, -7.0],
        "k": [1, 2, 3, 2**40, None, -5],
    }
)


@pytest.mark.parametrize("errors", ["raise", "coerce", "reject"])
def test_numbers_to_int(make_frame: Any, engine: str, errors: str, check_type: Any) -> None:
    """Numbers -> int32: fractions and values out of range are bad; NaN is missing (null)."""
    converter = DataTypeConverter(
        name="ints", config={"columns": {"x": "int32", "k": "int32"}, "errors": errors}
    )
    frame = make_frame(NUMBERS)
    if errors == "raise":
        with pytest.raises(DataTypeError) as info:
            result = converter.transform(frame)
            if engine == "polars-lazy":
                result.collect()  # checked while the plan runs
        text = str(info.value)
        assert "DataTypeConverter 'ints'" in text and "int32" in text
        if engine not in LAZY_ENGINES or engine == "polars-lazy":
            assert "2.5 (row 1)" in text or "1099511627776 (row 3)" in text
        return
    result = converter.transform(frame)
    check_type(frame, result)
    out = to_polars(result).sort("id")
    if errors == "coerce":
        assert out["x"].to_list() == [1, None, None, None, None, -7]
        assert out["k"].to_list() == [1, 2, 3, None, None, -5]
        if engine not in LAZY_ENGINES:
            assert converter.get_metadata()["details"]["coerced"] == {"x": 2, "k": 1}
        return
    assert out["id"].to_list() == [1, 3, 6]
    assert out["x"].to_list() == [1, None, -7]
    rejects = to_polars(converter.last_rejects).sort("id")
    assert rejects["id"].to_list() == [2, 4, 5]  # 2.5, k = 2**40, 1e12


def test_good_numbers_to_int_on_polars_lazy_and_pandas() -> None:
    """The quick path: whole numbers in range convert without a second query or row scan."""
    import pandas as pd

    df = pl.DataFrame({"q": [1.0, None, 3.0, float("nan")], "n": [1, 2, None, 4]})
    converter = DataTypeConverter(
        name="q", config={"columns": {"q": "int32", "n": "int16", "s": "string"}}
    )
    lazy = converter.transform(df.with_columns(s=pl.lit("a")).lazy())
    assert isinstance(lazy, pl.LazyFrame)
    out = lazy.collect()
    assert out.schema["q"] == pl.Int32 and out.schema["n"] == pl.Int16
    assert out["q"].to_list() == [1, None, 3, None] and out["n"].to_list() == [1, 2, None, 4]
    native = pd.DataFrame({"q": [1.0, None, 3.0], "n": [1, 2, 4], "s": ["a", "b", "c"]})
    result = converter.transform(native)
    assert str(result["q"].dtype) == "Int32" and str(result["n"].dtype) == "Int16"
    assert result["q"].tolist() == [1, pd.NA, 3] and result["n"].tolist() == [1, 2, 4]
    assert native["q"].dtype == "float64"  # the input is left as it was


IMPOSSIBLE = pl.DataFrame(
    {
        "id": [1, 2, 3, 4, 5, 6, 7, 8],
        "d": [
            "2023-01-05",
            "2023-02-30",  # impossible: February has 28 days in 2023
            "2024-02-29",  # a leap day
            "2023-02-29",  # not a leap year
            "2023-04-31",  # April has 30 days
            "x",
            None,
            "2023-2-5",  # unpadded month and day: fine, except on Spark (its MM/dd want two)
        ],
    }
)


@pytest.mark.parametrize("target", ["date", "datetime"])
@pytest.mark.parametrize("errors", ["coerce", "reject", "raise"])
def test_impossible_dates(
    make_frame: Any, engine: str, errors: str, target: str, check_type: Any
) -> None:
    """A day past the end of its month is a bad value on every engine (PyArrow used to roll it
    over to the next month, DuckDB and Spark to fail with their own error)."""
    converter = DataTypeConverter(
        name="days",
        config={"columns": {"d": {"type": target, "format": "%Y-%m-%d"}}, "errors": errors},
    )
    frame = make_frame(IMPOSSIBLE)
    if engine == "pandas" and target == "date":
        with pytest.raises(UnsupportedOperationError):
            converter.transform(frame)
        return
    good = {
        1: dt.date(2023, 1, 5),
        3: dt.date(2024, 2, 29),
        7: None,
        8: dt.date(2023, 2, 5),
    }
    bad_ids = [2, 4, 5, 6]
    if engine == "pyspark":
        del good[8]
        bad_ids.append(8)
    if target == "datetime":
        good = {
            k: None if v is None else dt.datetime(v.year, v.month, v.day) for k, v in good.items()
        }
    if errors == "raise":
        with pytest.raises(DataTypeError) as info:
            result = converter.transform(frame)
            if engine == "polars-lazy":
                result.collect()  # a Polars LazyFrame is checked while its plan runs
        text = str(info.value)
        assert "DataTypeConverter 'days'" in text and "column 'd'" in text
        for value in ("'2023-02-30'", "'2023-02-29'", "'2023-04-31'", "'x'"):
            assert value in text
        assert "'2024-02-29'" not in text
        assert ("'2023-2-5'" in text) == (engine == "pyspark")
        if engine not in LAZY_ENGINES:
            assert "'2023-02-30' (row 1)" in text
        return
    result = converter.transform(frame)
    check_type(frame, result)
    out = to_polars(result).sort("id")
    if errors == "coerce":
        expected = {i: good.get(i) for i in range(1, 9)}
        assert dict(zip(out["id"].to_list(), out["d"].to_list(), strict=True)) == expected
        return
    assert dict(zip(out["id"].to_list(), out["d"].to_list(), strict=True)) == good
    rejected = to_polars(converter.last_rejects).sort("id")
    assert rejected["id"].to_list() == bad_ids
    assert rejected["_reject_reason"].to_list()[0] == f"d: cannot convert 2023-02-30 to {target}"
    if engine not in LAZY_ENGINES:
        meta = converter.get_metadata()
        assert meta["rows_rejected"] == len(bad_ids)
        assert meta["rows_in"] == meta["rows_out"] + meta["rows_rejected"]


# -- Spark: a literal Z in the format, and the session zone named Etc/UTC ---------------------


def test_literal_z_in_the_format_on_spark(spark: Any) -> None:
    """Java reads ``Z`` as an offset field and raised CANNOT_PARSE_TIMESTAMP even with
    ``errors: coerce``; every engine now reads the letter as a letter (a naive timestamp)."""
    values = ["2024-01-01T10:00:00Z", "bad", None, "2024-02-29T23:59:59Z"]
    config = {
        "columns": {"ts": {"type": "datetime", "format": "%Y-%m-%dT%H:%M:%SZ"}},
        "errors": "coerce",
    }
    frame = pl.DataFrame({"ts": values})
    want = DataTypeConverter(name="c", config=config).transform(frame)
    got = DataTypeConverter(name="c", config=config).transform(
        spark.createDataFrame(frame.to_arrow())
    )
    assert (
        to_polars(got)["ts"].to_list()
        == want["ts"].to_list()
        == [
            dt.datetime(2024, 1, 1, 10),
            None,
            None,
            dt.datetime(2024, 2, 29, 23, 59, 59),
        ]
    )


def test_utc_on_a_spark_session_named_etc_utc(spark: Any) -> None:
    before = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "Etc/UTC")
    try:
        frame = spark.createDataFrame(pl.DataFrame({"ts": ["2024-01-01 10:00:00"]}).to_arrow())
        out = DataTypeConverter(
            name="c", config={"columns": {"ts": {"type": "datetime", "time_zone": "UTC"}}}
        ).transform(frame)
        value = to_polars(out)["ts"].to_list()[0]
        assert value.replace(tzinfo=None) == dt.datetime(2024, 1, 1, 10)
        assert value.utcoffset() == dt.timedelta(0)
    finally:
        spark.conf.set("spark.sql.session.timeZone", before)
