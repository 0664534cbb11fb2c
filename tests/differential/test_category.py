"""The ``category`` target of DataTypeConverter and ColumnSelector's ``categorical`` dtype name,
on every engine, against a plain-Python oracle.

Hypothesis draws a text column (unicode, empty texts, nulls) and an integer column; both are
converted to ``category`` and then selected by dtype. Where an engine has a categorical type
(pandas, Polars, PyArrow) the values are the texts as given (stripped with
``strip_whitespace``; an empty text stays a text, as for ``string``; an integer becomes its
decimal text) and the selection keeps exactly the converted columns; DuckDB and Spark have none
and refuse with UnsupportedOperationError.
"""

from __future__ import annotations

from typing import Any

import narwhals as nw
import polars as pl
from hypothesis import strategies as st

from data_pipeline.core.errors import UnsupportedOperationError
from data_pipeline.transformation import ColumnSelector, DataTypeConverter
from tests.differential.harness import LAZY, Expected, check, engine_test, to_engine

TEXT = st.text(alphabet=st.sampled_from("aZé ß-_😀"), max_size=3)


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    size = draw(st.integers(0, 6))
    texts = draw(st.lists(st.none() | TEXT, min_size=size, max_size=size))
    ints = draw(st.lists(st.none() | st.integers(-5, 5), min_size=size, max_size=size))
    frame = pl.DataFrame(
        {"id": list(range(size)), "t": texts, "n": ints},
        schema={"id": pl.Int64, "t": pl.String, "n": pl.Int64},
    )
    return {"frame": frame, "strip": draw(st.booleans())}


def run_case(engine: str, case: dict[str, Any], request: Any) -> None:
    frame, strip = case["frame"], case["strip"]
    converter = DataTypeConverter(
        name="c",
        config={"columns": {"t": "category", "n": "category"}, "strip_whitespace": strip},
    )
    selector = ColumnSelector(name="s", config={"include_dtypes": ["categorical"]})
    if engine in ("duckdb", "pyspark"):
        expected = Expected(error=UnsupportedOperationError, match="category")
    else:
        rows = []
        for _, text, number in frame.iter_rows():
            if text is not None and strip:
                text = text.strip()
            rows.append((text, None if number is None else str(number)))  # text stays text
        expected = Expected(
            rows=rows,
            schema={"t": nw.Categorical(), "n": nw.Categorical()},
            ordered=engine not in LAZY,
        )
    check(
        engine,
        lambda native: selector.transform(converter.transform(native)),
        to_engine(frame, engine, request),
        expected,
        context=f"strip_whitespace={strip}",
    )


test_category_target_and_selection = engine_test(cases(), run_case)
