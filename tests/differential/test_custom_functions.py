"""CustomTransformer's functions and its list of assignments on every engine, against Python.

Hypothesis draws an Int64 column with nulls, a Float64 column with NaN, ±inf and -0.0, a text
column (``ß``, ``ﬁ``, blanks, unicode, nulls) and a list of 1-3 assignments, each a function of
the language (docs/transformation.md, "Expressions"): ``abs``, ``round(x[, n])`` (half away
from zero of ``x * 10^n`` in floating point), ``floor``, ``ceil``, ``coalesce``, ``nullif``,
``case when``, ``%`` (the dividend's sign, null by 0), comparisons (NaN equals NaN, above every
number), ``upper``/``lower`` (Unicode's full mapping), ``length``, ``trim``, ``||``. A later
assignment may use an earlier output, and one may replace an input column. The oracle is
Python (``math``, ``decimal``, ``str``).
"""

from __future__ import annotations

import decimal
import math
from typing import Any

import narwhals as nw
import polars as pl
from hypothesis import strategies as st

from data_pipeline.transformation import CustomTransformer
from tests.differential.harness import LAZY, Expected, check, engine_test, input_view, to_engine

TEXT = ("", "a", "ß", "ﬁx", " x ", "\tA b\n", "é", "名前", "İ", "Straße")
FLOATS = (math.nan, math.inf, -math.inf, -0.0, 0.0, 2.5, -2.5, 2.675, 0.49999999999999994, 7.25)


def null_safe(func: Any) -> Any:
    return lambda *args: None if any(a is None for a in args) else func(*args)


def is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def round_half_away(x: float, places: int) -> float:
    if not math.isfinite(x):
        return x
    scaled = x * float(10**places)
    whole = decimal.Decimal(scaled).quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP)
    result = float(whole) / float(10**places)
    return math.copysign(0.0, x) if result == 0 else result


def greater(a: float, b: float) -> bool:
    """NaN equals NaN and is above every number."""
    return (is_nan(a) and not is_nan(b)) or (not is_nan(a) and not is_nan(b) and a > b)


def sql_mod(a: int, b: int) -> int | None:
    return None if b == 0 else int(math.fmod(a, b))


def strip(s: str) -> str:
    return s.strip(" \t\n\r\f\v")


#: (expression, oracle on the row, output dtype); ``r`` is the name of the previous output
FUNCTIONS: list[tuple[str, Any, Any]] = [
    ("abs(i)", lambda r: null_safe(abs)(r["i"]), nw.Int64()),
    ("abs(f)", lambda r: null_safe(abs)(r["f"]), nw.Float64()),
    ("round(f)", lambda r: null_safe(round_half_away)(r["f"], 0), nw.Float64()),
    ("round(f, 1)", lambda r: null_safe(round_half_away)(r["f"], 1), nw.Float64()),
    ("round(f, 2)", lambda r: null_safe(round_half_away)(r["f"], 2), nw.Float64()),
    ("coalesce(i, 0)", lambda r: 0 if r["i"] is None else r["i"], nw.Int64()),
    ("nullif(i, 1)", lambda r: None if r["i"] in (None, 1) else r["i"], nw.Int64()),
    (
        "case when f > 1 then 'big' when f is null then 'none' else 'small' end",
        lambda r: "none" if r["f"] is None else "big" if greater(r["f"], 1.0) else "small",
        nw.String(),
    ),
    ("i % 3", lambda r: null_safe(sql_mod)(r["i"], 3), nw.Int64()),
    ("i % i", lambda r: null_safe(sql_mod)(r["i"], r["i"]), nw.Int64()),
    (
        "f > i",
        lambda r: null_safe(greater)(r["f"], None if r["i"] is None else float(r["i"])),
        nw.Boolean(),
    ),
    ("upper(s)", lambda r: null_safe(str.upper)(r["s"]), nw.String()),
    ("lower(s)", lambda r: null_safe(str.lower)(r["s"]), nw.String()),
    ("length(s)", lambda r: null_safe(len)(r["s"]), nw.Int64()),
    ("trim(s)", lambda r: null_safe(strip)(r["s"]), nw.String()),
    ("s || '!'", lambda r: null_safe(lambda s: s + "!")(r["s"]), nw.String()),
]


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    size = draw(st.integers(0, 6))

    def column(values: Any) -> list[Any]:
        return draw(st.lists(st.none() | values, min_size=size, max_size=size))

    frame = pl.DataFrame(
        {
            "id": list(range(size)),
            "i": column(st.integers(-7, 7)),
            "f": column(st.sampled_from(FLOATS)),
            "s": column(st.sampled_from(TEXT)),
        },
        schema={"id": pl.Int64, "i": pl.Int64, "f": pl.Float64, "s": pl.String},
    )
    picks = draw(st.lists(st.integers(0, len(FUNCTIONS) - 1), min_size=1, max_size=3))
    targets = [
        draw(st.sampled_from(["r", "q", "i" if FUNCTIONS[p][2] == nw.Int64() else "r"]))
        for p in picks
    ]
    return {"frame": frame, "picks": picks, "targets": targets}


def run_case(engine: str, case: dict[str, Any], request: Any) -> None:
    frame: pl.DataFrame = case["frame"]
    rows = [dict(r) for r in input_view(frame, engine).iter_rows(named=True)]
    schema = {"id": nw.Int64(), "i": nw.Int64(), "f": nw.Float64(), "s": nw.String()}
    assignments = []
    for pick, target in zip(case["picks"], case["targets"], strict=True):
        text, oracle, dtype = FUNCTIONS[pick]
        assignments.append(f"{target} = {text}")
        for row in rows:
            row[target] = oracle(row)
        schema[target] = dtype
    expected = Expected(
        rows=[tuple(row[c] for c in schema) for row in rows],
        schema=schema,
        ordered=engine not in LAZY,
    )
    step = CustomTransformer(name="c", config={"expression": assignments})
    check(
        engine,
        step.transform,
        to_engine(frame, engine, request),
        expected,
        context=repr(assignments),
    )


test_custom_functions = engine_test(cases(), run_case)
