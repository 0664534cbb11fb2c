"""DataFilter's structured form on every engine against a plain-Python oracle.

Hypothesis draws an integer column with nulls, a float column with NaN, ±inf and -0.0, a text
column (unicode, empty, ``%`` and ``_``, nulls) and a list of ``{column, op, value}`` joined by
``combine`` (``and``/``or``), with every documented operator and its SQL spelling: ``eq ne gt ge
lt le`` (``= != <> > >= < <=``), ``in``, ``not_in``, ``between`` (both ends inclusive),
``is_null``, ``is_not_null``, ``like`` (``%`` any run, ``_`` one character), ``contains``,
``starts_with``, ``ends_with`` (matched literally: a ``%`` in the value is a percent sign). The
oracle is SQL's three-valued logic in Python with the decided NaN rule (NaN equals NaN, above
every number); a row is kept when the whole condition is true.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any

import narwhals as nw
import polars as pl
from hypothesis import strategies as st

from data_pipeline.processing import DataFilter
from tests.differential.harness import LAZY, Expected, check, engine_test, input_view, to_engine
from tests.differential.test_filter import kleene_and, kleene_or

CMP = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt}
CMP |= {"ge": operator.ge, "lt": operator.lt, "le": operator.le}
SPELLINGS = {"eq": ["eq", "=", "=="], "ne": ["ne", "!=", "<>"], "gt": ["gt", ">"]}
SPELLINGS |= {"ge": ["ge", ">="], "lt": ["lt", "<"], "le": ["le", "<="]}
TEXT = ("", "a", "A", "ab", "ß", "é", "a%b", "a_b", "名前", " x ", "%", "_")
NUMBERS = {"i": st.integers(-2, 3), "f": st.sampled_from([0.0, 1.5, -2.25, 3.0, math.inf])}
PATTERNS = ("a%", "%b", "_", "a_b", "%", "", "é%", "%_%")


def order(value: Any) -> tuple[int, Any]:
    """NaN equals NaN and is above every number (+inf included)."""
    return (1, 0) if isinstance(value, float) and math.isnan(value) else (0, value)


def like(text: str, pattern: str) -> bool:
    """SQL LIKE (no escape character): ``%`` any run, ``_`` one character, case-sensitive."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


@st.composite
def condition(draw: Any) -> tuple[dict[str, Any], Any]:
    """A structured condition and its oracle (row -> True/False/None)."""
    column = draw(st.sampled_from(["i", "f", "s"]))
    text = column == "s"
    ops = ["cmp", "in", "not_in", "between", "is_null", "is_not_null"]
    ops += ["like", "contains", "starts_with", "ends_with"] if text else []
    op = draw(st.sampled_from(ops))
    value_of = st.sampled_from(TEXT) if text else NUMBERS[column]
    if op in ("is_null", "is_not_null"):
        want_null = op == "is_null"
        return {"column": column, "op": op}, lambda r: (r[column] is None) == want_null
    if op == "cmp":
        name = draw(st.sampled_from(sorted(CMP)))
        spelled = draw(st.sampled_from(SPELLINGS[name]))
        value = draw(value_of)

        def compare(r: dict[str, Any]) -> bool | None:
            v = r[column]
            return None if v is None else bool(CMP[name](order(v), order(value)))

        return {"column": column, "op": spelled, "value": value}, compare
    if op in ("in", "not_in"):
        values = draw(st.lists(value_of, min_size=1, max_size=3))

        def inside(r: dict[str, Any]) -> bool | None:
            v = r[column]
            if v is None:
                return None
            found = any(order(v) == order(x) for x in values)
            return found if op == "in" else not found

        return {"column": column, "op": op, "value": values}, inside
    if op == "between":
        low, high = sorted([draw(value_of), draw(value_of)], key=order)

        def between(r: dict[str, Any]) -> bool | None:
            v = r[column]
            return None if v is None else order(low) <= order(v) <= order(high)

        return {"column": column, "op": op, "value": [low, high]}, between
    if op == "like":
        pattern = draw(st.sampled_from(PATTERNS))
        return {
            "column": column,
            "op": op,
            "value": pattern,
        }, lambda r: None if r[column] is None else like(r[column], pattern)
    needle = draw(st.sampled_from(TEXT))
    test = {
        "contains": lambda v: needle in v,
        "starts_with": lambda v: v.startswith(needle),
        "ends_with": lambda v: v.endswith(needle),
    }[op]
    return {
        "column": column,
        "op": op,
        "value": needle,
    }, lambda r: None if r[column] is None else test(r[column])


@st.composite
def cases(draw: Any) -> tuple[pl.DataFrame, dict[str, Any], Any]:
    size = draw(st.integers(0, 8))

    def column(values: Any) -> list[Any]:
        return draw(st.lists(st.one_of(st.none(), values), min_size=size, max_size=size))

    frame = pl.DataFrame(
        {
            "id": list(range(size)),
            "i": column(st.integers(-2, 4)),
            "f": column(st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 1.5, 3.0])),
            "s": column(st.sampled_from(TEXT)),
        },
        schema={"id": pl.Int64, "i": pl.Int64, "f": pl.Float64, "s": pl.String},
    )
    drawn = draw(st.lists(condition(), min_size=1, max_size=3))
    config: dict[str, Any] = {"conditions": [c for c, _ in drawn]}
    combine = draw(st.sampled_from(["and", "or", None]))
    if combine is not None:
        config["combine"] = combine
    join = kleene_or if combine == "or" else kleene_and

    def predicate(row: dict[str, Any]) -> bool | None:
        result = drawn[0][1](row)
        for _, test in drawn[1:]:
            result = join(result, test(row))
        return result

    return frame, config, predicate


def run_case(
    engine: str, df: pl.DataFrame, config: dict[str, Any], predicate: Any, request: Any
) -> None:
    view = input_view(df, engine)  # pandas: NaN is the missing value
    rows = [tuple(r.values()) for r in view.iter_rows(named=True) if predicate(r) is True]
    expected = Expected(
        rows=rows,
        schema={"id": nw.Int64(), "i": nw.Int64(), "f": nw.Float64(), "s": nw.String()},
        ordered=engine not in LAZY,
    )
    step = DataFilter(name="f", config=config)
    check(engine, step.process, to_engine(df, engine, request), expected, context=repr(config))


test_data_filter_conditions = engine_test(cases(), run_case, unpack=True)
