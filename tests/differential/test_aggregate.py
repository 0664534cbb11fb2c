"""DataAggregator on every engine against a plain-Python oracle: values and output schema.

Every option: ``group_by`` (0-2 keys of any kind), ``aggregations`` (every function, a name,
a ``{"agg", "as", "order_by"}`` mapping or a list; ``"*": "count"``), the config's
``order_by`` for first/last, ``having`` (on the row count) and ``sort`` (by the keys, descending,
by an output such as ``"count desc"``, or ``false``). BatchProcessor reuses these cases.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import strategies as st

from data_pipeline.core.errors import SchemaError, UnsupportedOperationError
from data_pipeline.processing import DataAggregator
from tests.differential import oracles
from tests.differential.frames import (
    KINDS,
    NUMERIC,
    Column,
    build,
    column_values,
    kinds_of,
    names,
    row_counts,
)
from tests.differential.harness import (
    LAZY,
    Expected,
    check,
    dtypes_of,
    engine_test,
    input_view,
    to_engine,
)

KEY_KINDS = ("int", "str", "bool", "date", "float", "datetime_utc", "decimal", "datetime")
FUNCS = ("sum", "mean", "min", "max", "count", "median", "n_unique", "first", "last", "std")


@st.composite
def order_values(draw: st.DrawFn, rows: int) -> tuple[Any, ...]:
    """Distinct order values (no ties: a tie has no defined first row on a lazy engine), some null."""
    values: list[Any] = list(draw(st.permutations(range(rows))))
    for i in draw(st.sets(st.integers(0, max(rows - 1, 0)), max_size=rows // 3)) if rows else []:
        values[i] = None
    return tuple(values)


@st.composite
def aggregation_case(draw: st.DrawFn) -> dict[str, Any]:
    rows = draw(row_counts())
    key_kinds = draw(st.lists(st.sampled_from(KEY_KINDS), max_size=2))
    value_kinds = draw(st.lists(st.sampled_from(list(KINDS)), min_size=1, max_size=3))
    ordered = draw(st.booleans())
    chosen = draw(names(len(key_kinds) + len(value_kinds) + int(ordered)))
    columns: list[Column] = []
    for name, kind in zip(chosen, key_kinds, strict=False):
        columns.append(Column(name, kind, draw(column_values(kind, rows, pool=True))))
    value_names = chosen[len(key_kinds) : len(key_kinds) + len(value_kinds)]
    for name, kind in zip(value_names, value_kinds, strict=True):
        columns.append(Column(name, kind, draw(column_values(kind, rows))))
    order_by: tuple[str, ...] = ()
    if ordered:
        order_by = (chosen[-1],)
        columns.append(Column(chosen[-1], "int", draw(order_values(rows))))
    aggregations: dict[str, Any] = {}
    plans: list[tuple[str, str, str, tuple[str, ...]]] = []
    config_order = ordered and draw(st.booleans())  # config order_by for first/last
    for name, kind in zip(value_names, value_kinds, strict=True):
        valid = [f for f in FUNCS if kind in NUMERIC or f not in oracles.NUMERIC_ONLY]
        if draw(st.integers(0, 9)) == 0:
            valid = list(FUNCS)  # now and then a numeric aggregation of a text column: an error
        funcs = draw(st.lists(st.sampled_from(valid), min_size=1, max_size=3, unique=True))
        specs: list[Any] = []
        for func in funcs:
            by = order_by if func in ("first", "last") and draw(st.booleans()) else ()
            if func in ("first", "last") and ordered and not by and draw(st.booleans()):
                by = order_by
            spec: dict[str, Any] = {"agg": func}
            if by:
                spec["order_by"] = list(by)
            elif func in ("first", "last") and config_order:
                by = order_by  # from the config's order_by
            output = f"{name}_{func}"
            if draw(st.integers(0, 3)) == 0:
                output = spec["as"] = f"out {len(plans)}"
            specs.append(spec if len(spec) > 1 else func)
            plans.append((name, func, output, by))
        aggregations[name] = specs
    if draw(st.booleans()):
        aggregations["*"] = "count"
        plans.append(("*", "count", "count", ()))
    group_by = [c.name for c in columns[: len(key_kinds)]]
    sort = draw(st.sampled_from(["default", "default", "desc", "false"])) if group_by else "default"
    config: dict[str, Any] = {"group_by": group_by, "aggregations": aggregations}
    if config_order:
        config["order_by"] = order_by[0]
    having = None
    if "*" in aggregations and draw(st.booleans()):
        having = draw(st.sampled_from([">= 2", "< 2", "= 1"]))
        config["having"] = f"count {having}"
        if group_by and sort == "default" and draw(st.booleans()):
            sort = "count"  # by an output: "count desc", then the keys (no ties)
            config["sort"] = ["count desc", *group_by]
    if sort == "desc":
        config["sort"] = [{"column": group_by[0], "descending": True}] + [
            {"column": k} for k in group_by[1:]
        ]
    elif sort == "false":
        config["sort"] = False
    return {"columns": columns, "config": config, "plans": plans, "sort": sort, "having": having}


def expected_aggregate(case: dict[str, Any], df: pl.DataFrame, engine: str) -> Expected:
    columns: list[Column] = case["columns"]
    kinds = kinds_of(columns)
    dtypes = dtypes_of(columns)
    plans = case["plans"]
    # errors: what the engine cannot do (first/last without an order on a lazy frame), then
    # what the data's types do not allow
    for _column, func, _, by in plans:
        if func in ("first", "last") and not by and engine in LAZY:
            return Expected(error=UnsupportedOperationError, match="order_by")
    for column, func, _, _by in plans:
        if column != "*" and func in oracles.NUMERIC_ONLY and kinds[column] not in NUMERIC:
            return Expected(error=SchemaError, match=repr(column))
    group_by = case["config"]["group_by"]
    rows, schema = oracles.aggregate(df.rows(named=True), kinds, dtypes, group_by, plans)
    if case["sort"] == "desc":
        keys = [(0, True)] + [(i, False) for i in range(1, len(group_by))]
        rows = oracles.sort_rows(rows, keys)
    if case.get("having") is not None:  # count is the last output
        op, limit = case["having"].split()
        test = {">=": lambda n: n >= int(limit), "<": lambda n: n < int(limit)}
        rows = [r for r in rows if test.get(op, lambda n: n == int(limit))(r[-1])]
    if case["sort"] == "count":
        count_first = [(len(schema) - 1, True)] + [(i, False) for i in range(len(group_by))]
        rows = oracles.sort_rows(rows, count_first)
    return Expected(rows=rows, schema=schema, ordered=case["sort"] != "false")


CASE = aggregation_case()


def run_case(engine: str, case: dict[str, Any], request: Any) -> None:
    df = build(case["columns"])
    native = to_engine(df, engine, request)
    expected = expected_aggregate(case, input_view(df, engine), engine)
    aggregator = DataAggregator(name="agg", config=case["config"])
    check(engine, aggregator.process, native, expected, context=repr(case["config"]))


test_data_aggregator = engine_test(CASE, run_case)
