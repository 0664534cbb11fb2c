"""DataFilter on every engine against a plain-Python oracle of SQL conditions.

Hypothesis draws an integer column with nulls, a float column with NaN, ±inf, -0.0 and nulls,
and a condition of comparisons with literals (ints and floats mixed), ``IS [NOT] NULL``,
``[NOT] IN`` lists (with NULL in them), ``NOT``, ``AND`` and ``OR``. The oracle evaluates it in
Python with SQL's three-valued (Kleene) logic and the decided NaN rule (NaN equals NaN and is
above every number, docs/semantics.md); a row is kept when the condition is true.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import narwhals as nw
import polars as pl
from hypothesis import strategies as st

from data_pipeline.processing import DataFilter
from tests.differential.harness import LAZY, Expected, check, engine_test, input_view, to_engine

FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 1.5, -2.25, 3.0, 7.0])
LITERALS = st.sampled_from(["0", "1", "3", "-2", "1.5", "3.0", "-0.0", "7"])
OPS = {"=": operator.eq, "<>": operator.ne, "<": operator.lt, "<=": operator.le}
OPS |= {">": operator.gt, ">=": operator.ge}


def key(value: float) -> tuple[int, float]:
    """The decided order: NaN equals NaN and is above every number (+inf included)."""
    return (1, 0.0) if math.isnan(value) else (0, float(value))


def compare(value: Any, op: str, literal: float | None) -> bool | None:
    if value is None or literal is None:
        return None
    return bool(OPS[op](key(value), key(literal)))


@st.composite
def atoms(draw: Any) -> tuple[str, Any]:
    """(SQL text, a function row -> True/False/None)."""
    column = draw(st.sampled_from(["i", "f"]))
    shape = draw(st.sampled_from(["cmp", "cmp", "null", "in"]))
    if shape == "cmp":
        op = draw(st.sampled_from(sorted(OPS)))
        text = draw(LITERALS)
        return f"{column} {op} {text}", lambda row: compare(row[column], op, float(text))
    if shape == "null":
        negate = draw(st.booleans())
        sql = f"{column} IS {'NOT ' if negate else ''}NULL"
        return sql, lambda row: (row[column] is not None) if negate else (row[column] is None)
    items = draw(st.lists(st.one_of(LITERALS, st.just("NULL")), min_size=1, max_size=3))
    negate = draw(st.booleans())

    def inside(row: dict[str, Any]) -> bool | None:
        found = [compare(row[column], "=", None if t == "NULL" else float(t)) for t in items]
        if True in found:
            result: bool | None = True
        elif None in found:
            result = None
        else:
            result = False
        return None if result is None else (not result if negate else result)

    return f"{column} {'NOT ' if negate else ''}IN ({', '.join(items)})", inside


def kleene_and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def kleene_or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def conditions(depth: int = 2) -> Any:
    if depth == 0:
        return atoms()

    @st.composite
    def build(draw: Any) -> tuple[str, Any]:
        shape = draw(st.sampled_from(["atom", "not", "and", "or"]))
        if shape == "atom":
            return draw(atoms())
        left = draw(conditions(depth - 1))
        if shape == "not":
            return f"NOT ({left[0]})", lambda row: None if (v := left[1](row)) is None else not v
        right = draw(conditions(depth - 1))
        combine = kleene_and if shape == "and" else kleene_or
        word = shape.upper()
        return f"({left[0]}) {word} ({right[0]})", lambda row: combine(left[1](row), right[1](row))

    return build()


@st.composite
def cases(draw: Any) -> tuple[pl.DataFrame, str, Any]:
    size = draw(st.integers(0, 8))
    ints = draw(st.lists(st.one_of(st.none(), st.integers(-3, 8)), min_size=size, max_size=size))
    value = st.one_of(st.none(), st.just(math.nan), FLOATS)  # NaN often: it splits engines
    floats = draw(st.lists(value, min_size=size, max_size=size))
    frame = pl.DataFrame(
        {"id": list(range(size)), "i": ints, "f": floats},
        schema={"id": pl.Int64, "i": pl.Int64, "f": pl.Float64},
    )
    text, predicate = draw(conditions())
    return frame, text, predicate


def run_case(engine: str, df: pl.DataFrame, text: str, predicate: Any, request: Any) -> None:
    view = input_view(df, engine)  # pandas: NaN is the missing value
    rows = [
        (r["id"], r["i"], r["f"])
        for r in view.rows(named=True)
        if predicate({k: (None if v is None else v) for k, v in r.items()}) is True
    ]
    expected = Expected(
        rows=rows,
        schema={"id": nw.Int64(), "i": nw.Int64(), "f": nw.Float64()},
        ordered=engine not in LAZY,
    )
    step = DataFilter(name="f", config={"condition": text})
    check(engine, step.process, to_engine(df, engine, request), expected, context=text)


test_data_filter = engine_test(cases(), run_case, unpack=True)
