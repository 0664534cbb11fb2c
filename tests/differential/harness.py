"""Run a component on one engine and compare its answer with an oracle: values and schema.

The oracle's answer is an :class:`Expected`: rows of plain Python values and a schema of
Narwhals dtypes (names, order, logical types and widths), or the error class every engine must
raise. :func:`check` runs the component on the engine's native frame, collects the result
(through Arrow) and compares both, strictly: NaN is not null, Int64 is not UInt32, a decimal
keeps its precision and scale. The one exception is numpy-backed pandas, where NaN *is* the
missing value of a float column (documented in docs/semantics.md): there a float NaN and a
null are the same answer.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import narwhals as nw
import polars as pl
import pyarrow as pa
import pytest

from tests.differential.frames import KINDS, Column
from tests.differential.oracles import AnyOf

#: the engines of the suite; Spark runs with fewer examples (the shared local session is slow)
ENGINES: list[Any] = [
    "pandas",
    "polars",
    "polars-lazy",
    "pyarrow",
    "duckdb",
    pytest.param("pyspark", marks=pytest.mark.spark),
]
LAZY = frozenset({"polars-lazy", "duckdb", "pyspark"})

#: examples per test and engine (CI budget); Spark gets fewer
EXAMPLES = int(os.environ.get("DATA_PIPELINE_DIFF_EXAMPLES", "30"))
SPARK_EXAMPLES = int(os.environ.get("DATA_PIPELINE_DIFF_SPARK_EXAMPLES", "6"))


def examples(engine: str) -> int:
    return SPARK_EXAMPLES if engine == "pyspark" else EXAMPLES


def engine_test(strategy: Any, run_case: Callable[..., None], *, unpack: bool = False) -> Any:
    """The suite's test of one property, parametrized over :data:`ENGINES`: for
    :func:`examples` cases drawn from ``strategy`` (seeded: the profile in tests/conftest.py
    derandomizes), ``run_case(engine, case, request)``, or ``run_case(engine, *case, request)``
    with ``unpack``. Bind it to a ``test_*`` name of the module."""
    from hypothesis import given, settings

    @pytest.mark.parametrize("engine", ENGINES)
    def test(engine: str, request: pytest.FixtureRequest) -> None:
        def body(case: Any) -> None:
            if unpack:
                run_case(engine, *case, request)
            else:
                run_case(engine, case, request)

        settings(max_examples=examples(engine))(given(case=strategy)(body))()

    return test


# -- input: one polars frame -> each engine's native frame -----------------------------------


def pandas_frame(df: pl.DataFrame) -> Any:
    """The pandas frame a user would hold for these values, each column in a dtype that keeps
    them: numpy int64/bool without nulls, the nullable Int64/boolean with nulls, numpy float64
    (NaN is the missing value there), pandas' str, datetime64[us] (naive or UTC), and Arrow
    dtypes for date and decimal (numpy has neither)."""
    import pandas as pd

    data: dict[str, Any] = {}
    for name, dtype in df.schema.items():
        series = df[name]
        has_null = series.null_count() > 0
        values = series.to_list()
        if dtype.is_integer():
            width = str(dtype)  # "Int64", "Int32": pandas' nullable name, lower case for numpy
            data[name] = pd.array(values, dtype=width if has_null else width.lower())
        elif dtype == pl.Boolean:
            data[name] = pd.array(values, dtype="boolean" if has_null else "bool")
        elif dtype.is_float():
            data[name] = pd.array([math.nan if v is None else v for v in values], dtype="float64")
        elif dtype == pl.String:
            data[name] = pd.array(values, dtype="str")
        elif isinstance(dtype, pl.Datetime):
            arrow = series.to_arrow()
            data[name] = pd.Series(arrow.to_pandas(types_mapper=None)).astype(
                "datetime64[us]"
                if dtype.time_zone is None
                else f"datetime64[us, {dtype.time_zone}]"
            )
        else:  # date, decimal: Arrow-backed
            arrow = series.to_arrow()
            data[name] = pd.array(arrow.to_pylist(), dtype=pd.ArrowDtype(arrow.type))
    if not data:
        return pd.DataFrame()
    frame = pd.DataFrame({k: pd.Series(v) for k, v in data.items()})
    if df.height == 0:
        frame = frame.iloc[0:0]
    return frame


def to_engine(df: pl.DataFrame, engine: str, request: pytest.FixtureRequest) -> Any:
    """``df`` as a native frame of ``engine``."""
    if engine == "polars":
        return df
    if engine == "polars-lazy":
        return df.lazy()
    if engine == "pandas":
        return pandas_frame(df)
    if engine == "pyarrow":
        return df.to_arrow()
    if engine == "duckdb":
        con = request.getfixturevalue("duckdb_connection")
        return con.from_arrow(df.to_arrow())
    if engine == "pyspark":
        from tests.conftest import spark_frame

        return spark_frame(request.getfixturevalue("spark"), df)
    raise AssertionError(engine)


#: what a step that cannot address dotted PySpark names says (core.engines)
DOT_REFUSAL = "cannot address columns whose names hold a dot"


def dotted_on_spark(engine: str, df: pl.DataFrame) -> bool:
    """A PySpark frame with a dot in a column name that the step must refuse: Narwhals reads
    ``a.b`` as a struct field there (narwhals#3117); core.spark_names makes it quote names on
    the Narwhals versions it was checked against, and on other versions every step refuses such
    names with an UnsupportedOperationError (docs/semantics.md, Column names)."""
    if engine != "pyspark" or not any("." in c for c in df.columns):
        return False
    from data_pipeline.core import spark_names

    return not spark_names.install()


def skip_dotted_names_on_spark(engine: str, df: pl.DataFrame) -> None:
    """Batches and streams of WindowedAggregator on PySpark with dotted names where the step
    refuses them (:func:`dotted_on_spark`): not checked."""
    from hypothesis import assume

    assume(not dotted_on_spark(engine, df))


def input_view(df: pl.DataFrame, engine: str) -> pl.DataFrame:
    """The values the engine holds: on pandas a float NaN is null (numpy has one missing value)."""
    if engine != "pandas":
        return df
    return df.with_columns(pl.col(c).fill_nan(None) for c, t in df.schema.items() if t.is_float())


# -- output: a native result -> rows and schema ----------------------------------------------


@dataclass
class Outcome:
    rows: list[tuple[Any, ...]] | None = None
    schema: dict[str, Any] | None = None
    error: BaseException | None = None


def collect(native: Any) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """Rows (plain Python values, via Arrow) and the Narwhals schema of a native result."""
    frame = nw.from_native(native)
    schema = dict(frame.collect_schema())
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect()
    if frame.implementation is nw.Implementation.PANDAS:
        # the index is not data (a separate test checks no component leaks it into Arrow)
        table = pa.Table.from_pandas(frame.to_native(), preserve_index=False)
        rows = [tuple(None if _isnan(v) else v for v in r.values()) for r in table.to_pylist()]
        return rows, schema
    arrow: pa.Table = frame.to_arrow()
    return [tuple(r.values()) for r in arrow.to_pylist()], schema


def run(call: Callable[[Any], Any], native: Any) -> Outcome:
    try:
        result = call(native)
        rows, schema = collect(result)
    except Exception as exc:  # the comparison below decides whether an error was expected
        return Outcome(error=exc)
    return Outcome(rows=rows, schema=schema)


# -- the oracle's answer and the comparison --------------------------------------------------


@dataclass
class Expected:
    """The oracle's answer: rows and schema, or an error class (and message fragment)."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    schema: dict[str, Any] = field(default_factory=dict)
    error: type[BaseException] | None = None
    match: str | None = None
    ordered: bool = True


def nw_dtype(kind: str) -> Any:
    """The Narwhals dtype of a generated kind."""
    return nw.from_native(pl.DataFrame(schema={"x": KINDS[kind]})).schema["x"]


def dtypes_of(columns: Sequence[Column]) -> dict[str, Any]:
    """The Narwhals dtype of each generated column, by name (see frames.kinds_of)."""
    return {c.name: nw_dtype(c.kind) for c in columns}


UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Universal", "Zulu", "Etc/Zulu"})


def _norm_dtype(dtype: Any) -> Any:
    if isinstance(dtype, nw.Datetime) and dtype.time_zone in UTC_NAMES:
        return nw.Datetime(dtype.time_unit, "UTC")
    return dtype


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def same_value(got: Any, want: Any, *, nan_is_null: bool, rel: float = 1e-9) -> bool:
    if isinstance(want, AnyOf):
        return any(same_value(got, w, nan_is_null=nan_is_null, rel=rel) for w in want.values)
    if nan_is_null:
        got = None if _isnan(got) else got
        want = None if _isnan(want) else want
    if got is None or want is None:
        return got is None and want is None
    if isinstance(want, float) or isinstance(got, float):
        if not isinstance(got, (int, float, decimal.Decimal)) or isinstance(got, bool):
            return False
        g, w = float(got), float(want)
        if math.isnan(w) or math.isnan(g):
            return math.isnan(w) and math.isnan(g)
        if math.isinf(w) or math.isinf(g):
            return g == w
        return math.isclose(g, w, rel_tol=rel, abs_tol=1e-9)
    if isinstance(want, dt.datetime) and isinstance(got, dt.datetime):
        if (want.tzinfo is None) != (got.tzinfo is None):
            return False
        return got == want
    if type(got) is not type(want) and not (
        isinstance(got, int) and isinstance(want, int) and not isinstance(got, bool)
    ):
        return False
    return bool(got == want)


def describe(rows: Sequence[tuple[Any, ...]] | None) -> str:
    return "\n".join(f"    {r!r}" for r in (rows or [])) or "    (no rows)"


def check(
    engine: str,
    call: Callable[[Any], Any],
    native: Any,
    expected: Expected,
    *,
    context: str = "",
) -> Outcome:
    """Run ``call(native)`` and assert it gives ``expected`` (values and schema, or the error)."""
    outcome = run(call, native)
    where = f"[{engine}] {context}"
    if expected.error is not None:
        assert outcome.error is not None, (
            f"{where}: expected {expected.error.__name__}, got rows\n{describe(outcome.rows)}"
        )
        assert isinstance(outcome.error, expected.error), (
            f"{where}: expected {expected.error.__name__}, got "
            f"{type(outcome.error).__name__}: {outcome.error}"
        )
        if expected.match is not None:
            assert expected.match in str(outcome.error), (where, str(outcome.error))
        return outcome
    if outcome.error is not None:
        raise AssertionError(
            f"{where}: raised {type(outcome.error).__name__}: {outcome.error}"
        ) from outcome.error
    assert outcome.schema is not None and outcome.rows is not None
    got_schema = {k: _norm_dtype(v) for k, v in outcome.schema.items()}
    want_schema = {k: _norm_dtype(v) for k, v in expected.schema.items()}
    assert list(got_schema) == list(want_schema), (
        f"{where}: columns {list(got_schema)} != {list(want_schema)}"
    )
    assert got_schema == want_schema, f"{where}: schema {got_schema} != {want_schema}"
    nan_is_null = engine == "pandas"
    got, want = outcome.rows, list(expected.rows)

    def same_row(g: tuple[Any, ...], w: tuple[Any, ...]) -> bool:
        return len(g) == len(w) and all(
            same_value(a, b, nan_is_null=nan_is_null) for a, b in zip(g, w, strict=True)
        )

    if expected.ordered:
        ok = len(got) == len(want) and all(map(same_row, got, want))
    else:  # the same multiset of rows
        left = list(got)
        ok = len(got) == len(want)
        for w in want if ok else []:
            match = next((i for i, g in enumerate(left) if same_row(g, w)), None)
            if match is None:
                ok = False
                break
            left.pop(match)
    assert ok, f"{where}: rows differ\n  got:\n{describe(got)}\n  expected:\n{describe(want)}"
    return outcome
