"""DataTypeConverter's text options on every engine against a plain-Python oracle.

Hypothesis draws text and a target with the options test_converter.py leaves at their defaults:
``strip_whitespace`` (``false``: blanks around a number make it bad; ``true``: stripped, and a
blank text is missing), ``format`` for dates and datetimes (``%d/%m/%Y``, ``%Y%m%d``,
``%d.%m.%Y %H:%M``; an impossible day is bad), ``time_zone: UTC`` (naive text read as UTC
times) and ``errors`` (``raise``: a DataTypeError naming the column; ``coerce``: null;
``reject``: the good rows). The oracle is Python's ``int`` and ``datetime.strptime``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import narwhals as nw
import polars as pl
from hypothesis import strategies as st

from data_pipeline.core.errors import DataTypeError, UnsupportedOperationError
from data_pipeline.transformation import DataTypeConverter
from tests.differential.harness import LAZY, Expected, check, engine_test, to_engine

UTC = dt.timezone.utc
#: format -> the shape a value must have (zero-padded fields) before strptime reads it
FORMATS = {
    "%d/%m/%Y": r"\d{2}/\d{2}/\d{4}",
    "%Y%m%d": r"\d{8}",
    "%d.%m.%Y %H:%M": r"\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}",
}
DAYS = st.dates(dt.date(1950, 1, 1), dt.date(2050, 12, 31))


@st.composite
def text_for(draw: Any, target: str, fmt: str | None) -> str:
    kind = draw(st.sampled_from(["good", "good", "padded", "blank", "bad"]))
    if kind == "blank":
        return draw(st.sampled_from(["", " ", "\t"]))
    if kind == "bad":
        return draw(st.sampled_from(["x", "1.5", "30/02/2024", "20240230", "31.04.2024 10:00"]))
    if target == "int64":
        value = str(draw(st.integers(-(10**6), 10**6)))
    elif fmt is None:
        value = draw(DAYS).isoformat()
    else:
        moment = dt.datetime.combine(draw(DAYS), dt.time(draw(st.integers(0, 23)), 30))
        value = moment.strftime(fmt)
    return f" {value} " if kind == "padded" else value


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    target = draw(st.sampled_from(["int64", "date", "datetime", "datetime_utc"]))
    fmt = None
    if target != "int64" and draw(st.booleans()):
        fmt = draw(st.sampled_from(sorted(FORMATS)))
        if target == "date" and "%H" in fmt:
            fmt = "%d/%m/%Y"
    size = draw(st.integers(0, 6))
    values = draw(st.lists(st.none() | text_for(target, fmt), min_size=size, max_size=size))
    spec: dict[str, Any] = {"type": "datetime" if target == "datetime_utc" else target}
    if fmt is not None:
        spec["format"] = fmt
    if target == "datetime_utc":
        spec["time_zone"] = "UTC"
    config = {
        "columns": {"x": spec},
        "errors": draw(st.sampled_from(["coerce", "raise", "reject"])),
        "strip_whitespace": draw(st.booleans()),
    }
    frame = pl.DataFrame(
        {"id": list(range(size)), "x": values}, schema={"id": pl.Int64, "x": pl.String}
    )
    return {"frame": frame, "target": target, "format": fmt, "config": config}


def parse(text: str, target: str, fmt: str | None) -> tuple[bool, Any]:
    """(good, value) for a non-missing text, exactly as written (no stripping here)."""
    if target == "int64":
        good = re.fullmatch(r"[+-]?\d+", text) is not None
        return (True, int(text)) if good else (False, None)
    layout = fmt or "%Y-%m-%d"  # the drawn default-format texts are dates alone
    shape = FORMATS.get(layout, r"\d{4}-\d{2}-\d{2}")
    if re.fullmatch(shape, text) is None:
        return False, None
    try:
        moment = dt.datetime.strptime(text, layout)
    except ValueError:
        return False, None
    if target == "date":
        return True, moment.date()
    return True, moment.replace(tzinfo=UTC) if target == "datetime_utc" else moment


def run_case(engine: str, case: dict[str, Any], request: Any) -> None:
    frame, target, fmt, config = case["frame"], case["target"], case["format"], case["config"]
    rows, bad = [], False
    for row_id, text in frame.iter_rows():
        if text is not None and config["strip_whitespace"]:
            text = text.strip()
        if text is None or text == "":
            good, value = True, None  # missing, never bad
        else:
            good, value = parse(text, target, fmt)
        bad = bad or not good
        if good or config["errors"] == "coerce":
            rows.append((row_id, value))
    dtype = {"int64": nw.Int64(), "date": nw.Date(), "datetime": nw.Datetime("us")}.get(
        target, nw.Datetime("us", "UTC")
    )
    if engine == "pandas" and target == "date":  # numpy-backed pandas has no date type
        expected = Expected(error=UnsupportedOperationError, match="no date type")
    elif bad and config["errors"] == "raise":
        expected = Expected(error=DataTypeError, match="'x'")
    else:
        expected = Expected(
            rows=rows, schema={"id": nw.Int64(), "x": dtype}, ordered=engine not in LAZY
        )
    step = DataTypeConverter(name="t", config=config)
    check(engine, step.transform, to_engine(frame, engine, request), expected, context=repr(config))


test_data_type_converter_text_options = engine_test(cases(), run_case)
