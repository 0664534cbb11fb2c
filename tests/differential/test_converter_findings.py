"""The issue's DataTypeConverter findings, one test each, on every engine, against answers
written out by hand (Python's int(), Decimal and datetime say what each value is)."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import narwhals as nw
import polars as pl
import pytest

from data_pipeline.core.errors import DataTypeError, UnsupportedOperationError
from data_pipeline.transformation import DataTypeConverter
from tests.differential.harness import ENGINES, LAZY, Expected, check, to_engine

D = decimal.Decimal
UTC = dt.timezone.utc


def converter(columns: dict[str, Any], errors: str = "coerce") -> Any:
    return DataTypeConverter(name="types", config={"columns": columns, "errors": errors}).transform


@pytest.mark.parametrize("engine", ENGINES)
def test_floats_to_int64(engine: str, request: pytest.FixtureRequest) -> None:
    """Failed on every PyArrow table, clean data too (ArrowInvalid: Integer value
    9223372036854775807 not in range): the bounds were int64 literals compared with floats."""
    values = [1.0, -2.0, None, 2.0**53, -(2.0**63), 2.0**63, 1.5]
    data = pl.DataFrame({"id": range(len(values)), "x": values})
    # int(v) where v is whole and within [-2**63, 2**63 - 1]; 2**63 and 1.5 are bad (null)
    rows = [(0, 1), (1, -2), (2, None), (3, 2**53), (4, -(2**63)), (5, None), (6, None)]
    expected = Expected(
        rows=rows, schema={"id": nw.Int64(), "x": nw.Int64()}, ordered=engine not in LAZY
    )
    check(engine, converter({"x": "int64"}), to_engine(data, engine, request), expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_decimals_at_precision_38(engine: str, request: pytest.FixtureRequest) -> None:
    """``decimal`` (precision 38, the default) overflowed on PyArrow (10**29 as an int64 bound)
    and Decimal(10,2) -> decimal(38,2) on DuckDB."""
    data = pl.DataFrame(
        {"id": [0, 1, 2], "x": [D("1.50"), D("-12345678.99"), None]},
        schema={"id": pl.Int64, "x": pl.Decimal(10, 2)},
    )
    rows = [(0, D("1.50"), D("1.500000000")), (1, D("-12345678.99"), D("-12345678.990000000"))]
    rows.append((2, None, None))
    expected = Expected(
        rows=rows,
        schema={"id": nw.Int64(), "x": nw.Decimal(38, 2), "y": nw.Decimal(38, 9)},
        ordered=engine not in LAZY,
    )

    def both(frame: Any) -> Any:
        native = nw.from_native(frame).with_columns(nw.col("x").alias("y")).to_native()
        return converter({"x": "decimal(38,2)", "y": "decimal"})(native)

    check(engine, both, to_engine(data, engine, request), expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_narrower_decimals_and_integers_to_decimal(
    engine: str, request: pytest.FixtureRequest
) -> None:
    """A value with more digits before the point than precision - scale is bad, on every engine
    (PyArrow failed on the bound, and cast an int64 only to a decimal of 21 digits or more)."""
    data = pl.DataFrame(
        {"id": [0, 1, 2], "d": [D("999.99"), D("1000.00"), None], "n": [999, -1000, 7]},
        schema={"id": pl.Int64, "d": pl.Decimal(38, 2), "n": pl.Int64},
    )
    # decimal(5,2) holds |v| < 10**3
    rows = [(0, D("999.99"), D("999.00")), (1, None, None), (2, None, D("7.00"))]
    expected = Expected(
        rows=rows,
        schema={"id": nw.Int64(), "d": nw.Decimal(5, 2), "n": nw.Decimal(5, 2)},
        ordered=engine not in LAZY,
    )
    call = converter({"d": "decimal(5,2)", "n": "decimal(5,2)"})
    check(engine, call, to_engine(data, engine, request), expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_time_zone_utc_is_utc_on_every_engine(engine: str, request: pytest.FixtureRequest) -> None:
    """On DuckDB ``time_zone: UTC`` gave a naive TIMESTAMP (PostgreSQL then got ``timestamp
    without time zone``)."""
    data = pl.DataFrame({"id": [0, 1], "t": ["2024-03-01 10:30:00", None]})
    rows = [(0, dt.datetime(2024, 3, 1, 10, 30, tzinfo=UTC)), (1, None)]
    expected = Expected(
        rows=rows,
        schema={"id": nw.Int64(), "t": nw.Datetime("us", "UTC")},
        ordered=engine not in LAZY,
    )
    call = converter({"t": {"type": "datetime", "time_zone": "UTC"}}, errors="raise")
    check(engine, call, to_engine(data, engine, request), expected)


FRACTIONS = [
    "2024-03-01 10:30:00.5",
    "2024-03-01T10:30:00.123456",
    "2024-03-01 10:30:00",
    "2024-03-01 10:30",
    "2024-03-01 10:30:00.1234567",  # finer than a microsecond: bad, never rounded
    None,
]
FRACTION_ROWS = [
    (0, dt.datetime(2024, 3, 1, 10, 30, 0, 500000)),
    (1, dt.datetime(2024, 3, 1, 10, 30, 0, 123456)),
    (2, dt.datetime(2024, 3, 1, 10, 30)),
    (3, dt.datetime(2024, 3, 1, 10, 30)),
    (4, None),
    (5, None),
]


@pytest.mark.parametrize("engine", ENGINES)
def test_fractional_seconds_by_default(engine: str, request: pytest.FixtureRequest) -> None:
    """The default datetime format refused fractional seconds (pandas took them)."""
    data = pl.DataFrame({"id": range(len(FRACTIONS)), "t": FRACTIONS})
    expected = Expected(
        rows=FRACTION_ROWS,
        schema={"id": nw.Int64(), "t": nw.Datetime("us")},
        ordered=engine not in LAZY,
    )
    check(engine, converter({"t": "datetime"}), to_engine(data, engine, request), expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_fractional_seconds_with_percent_f(engine: str, request: pytest.FixtureRequest) -> None:
    """``%S.%f`` silently read '.123456' as 123 microseconds on Polars (chrono's %f counts
    nanoseconds) and failed on PyArrow (no %f); a value without the fraction does not match."""
    values = ["01/03/2024 10:30:00.12", "01/03/2024 10:30:00.123456", "01/03/2024 10:30:00", None]
    data = pl.DataFrame({"id": range(len(values)), "t": values})
    call = converter({"t": {"type": "datetime", "format": "%d/%m/%Y %H:%M:%S.%f"}})
    if engine == "pyarrow":
        expected = Expected(error=UnsupportedOperationError, match="pyarrow engine cannot parse")
    else:
        rows = [
            (0, dt.datetime(2024, 3, 1, 10, 30, 0, 120000)),
            (1, dt.datetime(2024, 3, 1, 10, 30, 0, 123456)),
            (2, None),
            (3, None),
        ]
        schema = {"id": nw.Int64(), "t": nw.Datetime("us")}
        expected = Expected(rows=rows, schema=schema, ordered=engine not in LAZY)
    check(engine, call, to_engine(data, engine, request), expected)
    # the ISO layout with %f works on PyArrow too
    iso = pl.DataFrame({"id": [0, 1], "t": ["2024-03-01 10:30:00.25", "2024-03-01 10:30:00"]})
    rows = [(0, dt.datetime(2024, 3, 1, 10, 30, 0, 250000)), (1, None)]
    check(
        engine,
        converter({"t": {"type": "datetime", "format": "%Y-%m-%d %H:%M:%S.%f"}}),
        to_engine(iso, engine, request),
        Expected(
            rows=rows,
            schema={"id": nw.Int64(), "t": nw.Datetime("us")},
            ordered=engine not in LAZY,
        ),
    )


def test_numpy_pandas_decimals_are_refused_with_the_way_out() -> None:
    """numpy-backed pandas holds decimals as objects: a clear UnsupportedOperationError (it was a
    DataTypeError about an Object column)."""
    frame = pl.DataFrame({"x": [D("1.5")]}).to_pandas()
    with pytest.raises(UnsupportedOperationError, match=r"pandas engine.*decimal") as info:
        converter({"x": "decimal(10,2)"})(frame)
    assert "dtype_backend='pyarrow'" in str(info.value.hint)
    with pytest.raises(DataTypeError):  # text is still a data type error, as before
        converter({"x": "decimal"})(pl.DataFrame({"x": [True]}).to_pandas())


# -- found by tests/differential/test_converter_numbers.py --------------------------------------

NUMBERS = pl.DataFrame(
    {
        "id": [0, 1, 2, 3, 4],
        "d": [D("2.50"), D("-2.55"), D("99999.99"), D("1.00"), None],
        "i": [2**40, 1, -1, 0, None],
    },
    schema={"id": pl.Int64, "d": pl.Decimal(10, 2), "i": pl.Int64},
)


@pytest.mark.parametrize("engine", ENGINES)
def test_decimals_to_ints_and_floats(engine: str, request: pytest.FixtureRequest) -> None:
    """Decimal -> int took 2.50 as 2 on Polars, 3 on DuckDB and failed on PyArrow and pandas:
    a fraction is bad, as from a float. Decimal -> float64 gave -2.5500000000000003 on PyArrow
    and pandas: the nearest float is float('-2.55')."""
    rows = [(0, None, 2.5), (1, None, float("-2.55")), (2, None, 99999.99), (3, 1, 1.0)]
    rows.append((4, None, None))
    expected = Expected(
        rows=rows,
        schema={"id": nw.Int64(), "x": nw.Int32(), "y": nw.Float64()},
        ordered=engine not in LAZY,
    )

    def both(frame: Any) -> Any:
        native = nw.from_native(frame).select("id", x="d", y="d").to_native()
        return converter({"x": "int32", "y": "float64"})(native)

    check(engine, both, to_engine(NUMBERS, engine, request), expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_numbers_to_float32_and_narrower_decimals(
    engine: str, request: pytest.FixtureRequest
) -> None:
    """int64 -> float32 failed on PyArrow above 2**24; int64 -> decimal(6,1) failed on pandas
    (ArrowInvalid: Precision is not great enough); Decimal(10,2) -> decimal(6,1) failed on every
    engine for 99999.99 (it rounds to 100000.0: bad) and rounded -2.55 differently (half away
    from zero: -2.6). pandas cannot round a decimal the same way: UnsupportedOperationError."""
    if engine == "pandas":
        expected = Expected(error=UnsupportedOperationError, match="round a decimal")
    else:
        rows = [(0, float(2**40), None, D("2.5")), (1, 1.0, D("1.0"), D("-2.6"))]
        rows += [(2, -1.0, D("-1.0"), None), (3, 0.0, D("0.0"), D("1.0")), (4, None, None, None)]
        dec = nw.Decimal(6, 1)
        expected = Expected(
            rows=rows,
            schema={"id": nw.Int64(), "f": nw.Float32(), "n": dec, "r": dec},
            ordered=engine not in LAZY,
        )

    def three(frame: Any) -> Any:
        native = nw.from_native(frame).select("id", f="i", n="i", r="d").to_native()
        return converter({"f": "float32", "n": "decimal(6,1)", "r": "decimal(6,1)"})(native)

    check(engine, three, to_engine(NUMBERS, engine, request), expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_unsigned_targets_on_spark(engine: str, request: pytest.FixtureRequest) -> None:
    """Spark has no unsigned types: a raw UnsupportedDTypeError from Narwhals before."""
    data = pl.DataFrame({"x": [1, 255, 256]})
    if engine == "pyspark":
        expected = Expected(error=UnsupportedOperationError, match="no unsigned integer type")
    else:
        expected = Expected(
            rows=[(1,), (255,), (None,)], schema={"x": nw.UInt8()}, ordered=engine not in LAZY
        )
    check(engine, converter({"x": "uint8"}), to_engine(data, engine, request), expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_float_ties_to_decimals(engine: str, request: pytest.FixtureRequest) -> None:
    """Ties of float -> decimal went half to even on the text (Polars: 0.25 -> 0.2), half to
    even on the binary value (PyArrow: 0.15 -> 0.1) or away from zero (DuckDB: 0.3, 0.2): now
    as round(x, s), half away from zero of x * 10^s in binary floating point."""
    values = [0.25, -0.25, 0.15, 1.25, 0.05, 2.675, 1.005]
    data = pl.DataFrame({"id": range(len(values)), "x": values, "y": values})
    # x * 10: 2.5, -2.5, 1.5, 12.5, 0.5 (ties, away from zero); 26.75 -> 27; 10.05 -> 10
    tenths = ["0.3", "-0.3", "0.2", "1.3", "0.1", "2.7", "1.0"]
    # y * 100: 25, -25, 15, 125, 5; 2.675 * 100 is 267.5 (a tie) -> 268; 1.005 * 100 is
    # 100.49999999999999 (the float 1.005 is below 1.005) -> 100
    hundredths = ["0.25", "-0.25", "0.15", "1.25", "0.05", "2.68", "1.00"]
    rows = [(i, D(a), D(b)) for i, (a, b) in enumerate(zip(tenths, hundredths, strict=True))]
    expected = Expected(
        rows=rows,
        schema={"id": nw.Int64(), "x": nw.Decimal(6, 1), "y": nw.Decimal(6, 2)},
        ordered=engine not in LAZY,
    )
    step = converter({"x": "decimal(6,1)", "y": "decimal(6,2)"})
    check(engine, step, to_engine(data, engine, request), expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_floats_to_text_as_python_writes_them(engine: str, request: pytest.FixtureRequest) -> None:
    """Float -> string wrote 1e-7 and NaN on Polars, 1, -0 and 1e+15 on PyArrow: now Python's
    repr (DuckDB and pandas wrote it already); Spark writes Java's 1.0E-7: refused."""
    values = [1e-7, 1.0, -0.0, 1e15, 2.5e-5, 123456789012.5, float("nan"), None]
    data = pl.DataFrame(
        {"id": range(len(values)), "x": values}, schema={"id": pl.Int64, "x": pl.Float64}
    )
    texts = ["1e-07", "1.0", "-0.0", "1000000000000000.0", "2.5e-05", "123456789012.5", "nan", None]
    if engine == "pandas":
        texts[6] = None  # numpy-backed pandas: NaN is the missing value
    expected = Expected(
        rows=list(enumerate(texts)),
        schema={"id": nw.Int64(), "x": nw.String()},
        ordered=engine not in LAZY,
    )
    if engine == "pyspark":  # Java's text (1.0E-7, NaN): refused, naming the other engines
        expected = Expected(error=UnsupportedOperationError, match="writes floats as Java does")
    check(engine, converter({"x": "string"}), to_engine(data, engine, request), expected)
