"""DataTypeConverter on every engine against a plain-Python oracle (text to int64, float64,
bool, date and datetime, ``errors: coerce``): hypothesis draws text that is valid, blank, padded,
signed, out of range, fractional, an impossible day, or garbage, with nulls."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import narwhals as nw
import polars as pl
from hypothesis import strategies as st

from data_pipeline.transformation import DataTypeConverter
from tests.differential.harness import LAZY, Expected, check, engine_test, to_engine

PIECES = {
    "int64": st.one_of(
        st.integers(-(2**63), 2**63 - 1).map(str),
        st.integers(-(2**70), 2**70).map(str),  # out of range too
        st.integers(-99, 99).map(lambda i: f"+{i}" if i >= 0 else str(i)),
        st.sampled_from(["1.5", "1e3", "0x10", "12a", "", "  ", " 42 ", "-0", "007"]),
    ),
    "float64": st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),
        st.sampled_from(["inf", "-Infinity", "nan", "1e308", ".5", "5.", "+2", "1,5", "", "x"]),
    ),
    "bool": st.sampled_from(["true", "False", "T", "f", "yes", "N", "1", "0", "2", "", "maybe"]),
    "date": st.one_of(
        st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)).map(lambda d: d.isoformat()),
        st.sampled_from(["2023-02-29", "2024-02-29", "2024-04-31", "2024-13-01", "24-01-01", ""]),
    ),
    "datetime": st.one_of(
        st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2100, 1, 1)).map(
            lambda d: d.isoformat(sep=" ")  # with a fraction of 6 digits when there is one
        ),
        st.sampled_from(
            ["2024-03-01T10:30", "2024-03-01", "2024-03-01 10:30:00.5", "2024-03-01 25:00:00"]
        ),
    ),
}
INT_TEXT = re.compile(r"^[+-]?\d{1,19}$")
FLOAT_TEXT = re.compile(r"(?i)^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf|infinity|nan)$")
DATETIME_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?$")


def oracle(kind: str, text: str | None) -> Any:
    """The documented answer (docs/semantics.md, transformation.md), from Python alone."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    if kind == "int64":
        if not INT_TEXT.match(value):
            return None
        number = int(value)
        return number if -(2**63) <= number < 2**63 else None
    if kind == "float64":
        return float(value) if FLOAT_TEXT.match(value) else None
    if kind == "bool":
        low = value.lower()
        return (
            True
            if low in ("true", "t", "yes", "y", "1")
            else (False if low in ("false", "f", "no", "n", "0") else None)
        )
    if kind == "date":
        try:
            return dt.date.fromisoformat(value) if re.match(r"^\d{4}-\d{2}-\d{2}$", value) else None
        except ValueError:
            return None
    value = value.replace("T", " ")
    if not DATETIME_TEXT.match(value):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


SCHEMA = {
    "int64": nw.Int64(),
    "float64": nw.Float64(),
    "bool": nw.Boolean(),
    "date": nw.Date(),
    "datetime": nw.Datetime("us"),
}


@st.composite
def cases(draw: Any) -> tuple[str, list[str | None]]:
    kind = draw(st.sampled_from(sorted(PIECES)))
    values = draw(st.lists(st.one_of(st.none(), PIECES[kind]), max_size=6))
    return kind, values


def run_case(engine: str, kind: str, values: list[str | None], request: Any) -> None:
    if engine == "pandas" and kind == "date":
        return  # numpy-backed pandas has no date type: an UnsupportedOperationError (tested)
    data = pl.DataFrame(
        {"id": list(range(len(values))), "x": values}, schema={"id": pl.Int64, "x": pl.String}
    )
    rows = [(i, oracle(kind, v)) for i, v in enumerate(values)]
    if engine == "pandas" and kind == "float64":
        rows = [(i, None if isinstance(v, float) and math.isnan(v) else v) for i, v in rows]
    expected = Expected(
        rows=rows, schema={"id": nw.Int64(), "x": SCHEMA[kind]}, ordered=engine not in LAZY
    )
    step = DataTypeConverter(name="t", config={"columns": {"x": kind}, "errors": "coerce"})
    check(engine, step.transform, to_engine(data, engine, request), expected, context=repr(values))


test_data_type_converter = engine_test(cases(), run_case, unpack=True)
