"""The suite against deliberately broken variants: each drill must fail.

A differential suite that passes proves something only if it fails when an engine gives another
answer. Each test here breaks one guarantee of the code under test (monkeypatched for the test)
and asserts that the same property the suite runs reports it. Shrinking is skipped: the first
failing example is enough to show the drill bites.

The generated examples are not the same in every run, even derandomized: Hypothesis also draws
constants from the project modules loaded so far, so a run that collects or imports more (the
full suite, with every module under --doctest-modules) draws other examples. A defect the
generator reaches only now and then (a NaN under ``max``) is therefore also given as an
explicit example, so the drill does not depend on which examples the run drew.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from data_pipeline.processing import _aggregation
from tests.differential import (
    test_aggregate,
    test_batch,
    test_enrich,
    test_join,
    test_missing,
    test_rename_select,
)
from tests.differential.frames import Column

DRILL_EXAMPLES = 300


def must_fail(
    engine: str,
    run_case: Callable[[str, Any, Any], None],
    cases: st.SearchStrategy[Any],
    request: pytest.FixtureRequest,
    match: str | None,
    known: dict[str, Any] | None = None,
) -> None:
    """Run the suite's property on ``engine``; it must fail with a message containing ``match``.
    ``known``: a case showing the defect, tried first (then the generated ones)."""

    def test(case: Any) -> None:
        run_case(engine, case, request)

    if known is not None:
        test = example(case=known)(test)
    property_ = settings(
        max_examples=DRILL_EXAMPLES, phases=[Phase.explicit, Phase.reuse, Phase.generate]
    )(given(case=cases)(test))
    with pytest.raises(AssertionError, match=match):
        property_()


def one_aggregation(kind: str, values: tuple[Any, ...], func: str) -> dict[str, Any]:
    """An aggregation case (test_aggregate's shape) of one column ``v`` and one function."""
    return {
        "columns": [Column("v", kind, values)],
        "config": {"group_by": [], "aggregations": {"v": [func]}},
        "plans": [("v", func, f"v_{func}", ())],
        "sort": "default",
    }


def test_uint32_counts_on_polars_are_caught(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Without the cast to the logical types, Polars' counts are UInt32: a schema failure."""
    monkeypatch.setattr(_aggregation, "conform", lambda frame, dtypes: frame)
    known = one_aggregation("int", (1, None, 3), "count")
    must_fail("polars", test_aggregate.run_case, test_aggregate.CASE, request, "schema", known)


def test_nan_as_max_on_duckdb_is_caught(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """DuckDB's own max returns NaN when a NaN is present; the suite sees the other value."""
    monkeypatch.setattr(_aggregation, "_NAN_IS_MAX", frozenset())
    known = one_aggregation("float", (1.5, math.nan, None), "max")
    must_fail("duckdb", test_aggregate.run_case, test_aggregate.CASE, request, "rows differ", known)


def test_nulls_first_order_is_caught(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """first/last by an order with nulls first (Narwhals' default) is not the documented order."""
    monkeypatch.setattr(_aggregation, "_order_key", lambda order_by: list(order_by))
    must_fail("polars", test_aggregate.run_case, test_aggregate.CASE, request, "rows differ")


def test_pandas_group_by_in_pandas_is_caught(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """pandas' own group-by (the code before this suite) splits null keys, loses int types."""

    def native_pandas(frame: Any, group_by: Any, plans: Any, component: Any) -> Any:
        import narwhals as nw

        exprs = [
            (nw.len() if p.column == "*" else getattr(nw.col(p.column), p.func)()).alias(p.output)
            for p in plans
        ]
        if group_by:
            return frame.group_by(*group_by, drop_null_keys=False).agg(*exprs)
        return frame.select(*exprs)

    monkeypatch.setattr(_aggregation, "_pandas_via_polars", native_pandas)
    must_fail("pandas", test_aggregate.run_case, test_aggregate.CASE, request, None)


def test_batches_not_merged_are_caught(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A merge that keeps only the latest batch's partials gives the wrong counts and sums."""
    monkeypatch.setattr(_aggregation.PartialAggregation, "merge", lambda self, state: state.tail(1))
    must_fail("polars", test_batch.run_case, test_batch.CASE, request, "rows differ")


def test_unchecked_constant_is_caught(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A constant of another type written into the column (a datetime into Int64 was stored as
    946728000000000 on Polars) is what the suite's MissingValueHandler property refuses."""
    from data_pipeline.transformation import missing

    monkeypatch.setattr(missing, "_constant", lambda component, column, dtype, value: value)
    must_fail("polars", test_missing.run_case, test_missing.CASE, request, None)


def test_nan_left_unfilled_is_caught(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """NaN counts as missing (nan_as_null): a handler that only fills nulls is caught."""
    import narwhals as nw

    from data_pipeline.transformation import missing

    monkeypatch.setattr(missing, "value_expr", lambda column, dtype, *, nan_as_null: nw.col(column))
    must_fail("polars", test_missing.run_case, test_missing.CASE, request, "rows differ")


def test_pandas_join_float64_is_caught(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """pandas' own merge types (an unmatched numpy int64 column as float64, bool as object)
    are not the one output schema."""
    import polars as pl

    from data_pipeline.processing import join

    monkeypatch.setattr(join, "pandas_nullable", lambda result, templates: result)
    left = pl.DataFrame(
        {"k": [1], "g": ["x"], "a": [0], "v": [0.5], "t": [True]}, schema=test_join.LEFT
    )
    right = pl.DataFrame(schema={"k": pl.Int64, **test_join.RIGHT_REST})
    known = {
        "left": left,
        "right": right,
        "config": {"how": "left", "on": ["k"]},
        "suffix": "_right",
    }
    must_fail("pandas", test_join.run_case, test_join.cases(), request, "schema", known)


def test_date_parts_in_engine_widths_are_caught(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Date parts left in each engine's width (Polars: Int8/Int16/Int32) are a schema failure."""
    import narwhals as nw

    monkeypatch.setattr(nw.Expr, "cast", lambda self, dtype: self)
    must_fail("polars", test_enrich.run_case, test_enrich.cases(), request, "schema")


def test_selector_dtype_names_are_checked(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A ``temporal`` that forgets dates selects other columns than the documented ones."""
    import narwhals as nw

    from data_pipeline.transformation import columns

    real = columns._dtype_matches

    def no_dates(dtype: Any, kinds: Any) -> bool:
        return dtype != nw.Date and real(dtype, kinds)

    monkeypatch.setattr(columns, "_dtype_matches", no_dates)
    must_fail(
        "polars", test_rename_select.run_case, test_rename_select.select_cases(), request, None
    )
