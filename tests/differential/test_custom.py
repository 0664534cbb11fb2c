"""CustomTransformer on every engine against a plain-Python oracle of arithmetic.

Hypothesis draws an integer column with nulls and a float column with NaN, ±inf, -0.0 and
nulls, and an expression of ``+``, ``-``, ``*`` and ``/`` over them and literals. The oracle
computes it in Python: null propagates, ``/`` is IEEE 754 true division (by zero: ±inf or NaN),
an integer combined with a float is a float, and ``+ - *`` of integers stay Int64
(docs/transformation.md, the expression language).
"""

from __future__ import annotations

import math
from typing import Any

import narwhals as nw
import polars as pl
from hypothesis import strategies as st

from data_pipeline.transformation import CustomTransformer
from tests.differential.harness import LAZY, Expected, check, engine_test, input_view, to_engine

FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 1.5, -2.25, 3.0])
#: (text, value, is_float); never 0: a division by the constant zero is a ConfigError
LITERALS = st.sampled_from(
    [("2", 2, False), ("-3", -3, False), ("1.5", 1.5, True), ("0.5", 0.5, True)]
)


def divide(a: float, b: float) -> float:
    """IEEE 754 division, which Python refuses by zero."""
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def apply(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if op == "/":
        return divide(float(a), float(b))
    result = (
        {"+": a + b, "-": a - b, "*": a * b}[op]
        if not (isinstance(a, float) or isinstance(b, float))
        else {"+": float(a) + float(b), "-": float(a) - float(b), "*": float(a) * float(b)}[op]
    )
    return result


Node = tuple[str, Any, bool]  # (SQL text, row -> value, is_float)


@st.composite
def leaves(draw: Any) -> Node:
    choice = draw(st.sampled_from(["i", "f", "lit"]))
    if choice == "lit":
        text, value, is_float = draw(LITERALS)
        return text, lambda row: value, is_float
    return choice, lambda row: row[choice], choice == "f"


def expressions(depth: int = 2) -> Any:
    if depth == 0:
        return leaves()

    @st.composite
    def build(draw: Any) -> Node:
        if draw(st.booleans()):
            return draw(leaves())
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        left = draw(expressions(depth - 1))
        # a divisor with a column in it (a constant zero divisor is refused when configured)
        right = draw(
            leaves()
            if op != "/"
            else st.sampled_from(["i", "f"]).map(lambda c: (c, lambda row: row[c], c == "f"))
        )
        text = f"({left[0]} {op} {right[0]})"
        is_float = op == "/" or left[2] or right[2]
        return text, lambda row: apply(op, left[1](row), right[1](row)), is_float

    return build()


@st.composite
def cases(draw: Any) -> tuple[pl.DataFrame, Node]:
    size = draw(st.integers(0, 6))
    ints = draw(st.lists(st.one_of(st.none(), st.integers(-3, 8)), min_size=size, max_size=size))
    value = st.one_of(st.none(), st.just(math.nan), FLOATS)
    floats = draw(st.lists(value, min_size=size, max_size=size))
    frame = pl.DataFrame(
        {"id": list(range(size)), "i": ints, "f": floats},
        schema={"id": pl.Int64, "i": pl.Int64, "f": pl.Float64},
    )
    return frame, draw(expressions())


def run_case(engine: str, df: pl.DataFrame, node: Node, request: Any) -> None:
    text, compute, is_float = node
    view = input_view(df, engine)  # pandas: NaN is the missing value
    rows = []
    for r in view.rows(named=True):
        value = compute(r)
        if is_float and value is not None:
            value = float(value)
            if engine == "pandas" and math.isnan(value):
                value = None  # numpy-backed pandas: NaN is the missing value
        rows.append((r["id"], r["i"], r["f"], value))
    expected = Expected(
        rows=rows,
        schema={
            "id": nw.Int64(),
            "i": nw.Int64(),
            "f": nw.Float64(),
            "r": nw.Float64() if is_float else nw.Int64(),
        },
        ordered=engine not in LAZY,
    )
    step = CustomTransformer(name="c", config={"expression": f"r = {text}"})
    check(engine, step.transform, to_engine(df, engine, request), expected, context=text)


test_custom_transformer = engine_test(cases(), run_case, unpack=True)
