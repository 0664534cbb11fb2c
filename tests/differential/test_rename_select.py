"""ColumnRenamer and ColumnSelector on every engine against a plain-Python oracle.

Hypothesis draws hostile column names (frames.NAMES) over integer columns with nulls, then a
rename mapping (to other hostile names) or an ``include`` list. The oracle renames/reorders the
Polars rows in Python: values, column order and dtypes must be unchanged apart from the names.
"""

from __future__ import annotations

from typing import Any

import narwhals as nw
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline.transformation import ColumnRenamer, ColumnSelector
from tests.differential.frames import names
from tests.differential.harness import (
    ENGINES,
    LAZY,
    Expected,
    check,
    examples,
    skip_dotted_names_on_spark,
    to_engine,
)


@st.composite
def cases(draw: Any) -> tuple[pl.DataFrame, str, list[str]]:
    count = draw(st.integers(1, 4))
    cols = draw(names(count))
    size = draw(st.integers(0, 5))
    value = st.one_of(st.none(), st.integers(-3, 9))
    data = {c: draw(st.lists(value, min_size=size, max_size=size)) for c in cols}
    frame = pl.DataFrame(data, schema={c: pl.Int64 for c in cols})
    kind = draw(st.sampled_from(["rename", "select"]))
    if kind == "rename":
        new = draw(names(count, taken=cols))
        return frame, kind, new
    chosen = draw(st.lists(st.sampled_from(cols), min_size=1, max_size=count, unique=True))
    return frame, kind, chosen


def run_case(engine: str, df: pl.DataFrame, kind: str, arg: list[str], request: Any) -> None:
    renamed = pl.DataFrame(schema={n: pl.Int64 for n in arg}) if kind == "rename" else None
    skip_dotted_names_on_spark(engine, df)
    if renamed is not None:
        skip_dotted_names_on_spark(engine, renamed)
    rows = [tuple(r) for r in df.rows()]
    if kind == "rename":
        mapping = dict(zip(df.columns, arg, strict=True))
        step: Any = ColumnRenamer(name="r", config={"mapping": mapping})
        out_names = arg
    else:
        step = ColumnSelector(name="s", config={"include": arg})
        index = [df.columns.index(c) for c in arg]
        rows = [tuple(r[i] for i in index) for r in rows]
        out_names = arg
    expected = Expected(
        rows=rows,
        schema={n: nw.Int64() for n in out_names},
        ordered=engine not in LAZY,
    )
    check(engine, step.transform, to_engine(df, engine, request), expected, context=f"{kind} {arg}")


@pytest.mark.parametrize("engine", ENGINES)
def test_rename_select(engine: str, request: pytest.FixtureRequest) -> None:
    settings(max_examples=examples(engine))(
        given(case=cases())(lambda case: run_case(engine, *case, request))
    )()
