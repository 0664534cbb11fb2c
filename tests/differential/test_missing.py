"""MissingValueHandler on every engine against a plain-Python oracle: values and schema.

Every strategy and option: ``fill`` (with and without a value), ``mean``, ``median``, ``mode``,
``constant`` (values of the column's type and of others), ``forward_fill``/``backward_fill``
(with ``order_by`` and ``limit``), ``drop``, ``drop_columns`` (``max_missing_ratio``),
``columns``, ``column_strategies`` and ``nan_as_null``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections import Counter
from typing import Any

import polars as pl
from hypothesis import strategies as st

from data_pipeline.core.errors import MissingValueError, UnsupportedOperationError
from data_pipeline.transformation import MissingValueHandler
from tests.differential import oracles
from tests.differential.frames import (
    INTEGER,
    KINDS,
    NUMERIC,
    Column,
    build,
    column_values,
    kinds_of,
    names,
    row_counts,
    values_of,
)
from tests.differential.harness import (
    DOT_REFUSAL,
    LAZY,
    Expected,
    check,
    dotted_on_spark,
    dtypes_of,
    engine_test,
    input_view,
    nw_dtype,
    to_engine,
)

STRATEGIES = (
    "fill",
    "mean",
    "median",
    "mode",
    "constant",
    "forward_fill",
    "backward_fill",
    "drop",
    "drop_columns",
)
FILLS = ("fill", "mean", "median", "mode", "constant", "forward_fill", "backward_fill")


@st.composite
def constant_for(draw: st.DrawFn, kind: str) -> Any:
    """A constant: usually of the column's type, now and then of another (an error)."""
    if draw(st.integers(0, 5)) == 0:
        other = draw(st.sampled_from([k for k in KINDS if k != kind]))
        return draw(values_of(other, finite=True))
    return draw(values_of(kind, finite=True))


@st.composite
def missing_case(draw: st.DrawFn) -> dict[str, Any]:
    rows = draw(row_counts())
    kinds = draw(st.lists(st.sampled_from(list(KINDS)), min_size=1, max_size=3))
    chosen = draw(names(len(kinds) + 1))
    order_name = chosen[-1]
    columns = [
        Column(n, k, draw(column_values(k, rows))) for n, k in zip(chosen, kinds, strict=False)
    ]
    columns.append(Column(order_name, "int", tuple(draw(st.permutations(range(rows))))))
    data = columns[:-1]
    strategy = draw(st.sampled_from(STRATEGIES))
    config: dict[str, Any] = {"strategy": strategy}
    if draw(st.booleans()):
        config["columns"] = [
            c.name for c in draw(st.lists(st.sampled_from(data), min_size=1, unique=True))
        ]
    if strategy in ("constant", "fill") and (strategy == "constant" or draw(st.booleans())):
        targets = [c for c in data if c.name in config.get("columns", [c.name for c in data])]
        if draw(st.booleans()) or not targets:
            config["value"] = draw(constant_for(targets[0].kind if targets else "int"))
        else:
            config["value"] = {c.name: draw(constant_for(c.kind)) for c in targets[:1]}
    if draw(st.integers(0, 3)) == 0:
        column = draw(st.sampled_from(data))
        override = draw(st.sampled_from([s for s in FILLS if s not in ("fill", "constant")]))
        if draw(st.booleans()):
            config["column_strategies"] = {column.name: override}
        else:
            value = draw(constant_for(column.kind))
            config["column_strategies"] = {column.name: {"strategy": "constant", "value": value}}
    uses_order = strategy in ("forward_fill", "backward_fill") or any(
        (s if isinstance(s, str) else s["strategy"]) in ("forward_fill", "backward_fill")
        for s in config.get("column_strategies", {}).values()
    )
    if uses_order and draw(st.booleans()):
        config["order_by"] = order_name
    if uses_order and draw(st.booleans()):
        config["limit"] = draw(st.integers(1, 3))
    if strategy == "drop_columns":
        config["max_missing_ratio"] = draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))
    if draw(st.integers(0, 3)) == 0:
        config["nan_as_null"] = False
    return {"columns": columns, "config": config}


# -- the oracle ------------------------------------------------------------------------------


def _missing(value: Any, nan_as_null: bool) -> bool:
    return value is None or (nan_as_null and oracles.isnan(value))


def _fits(value: Any, kind: str) -> bool:
    """A constant is stored as given: only values the column's type holds exactly."""
    if isinstance(value, bool):
        return kind == "bool"
    if kind in INTEGER:
        ok = isinstance(value, int) or (
            isinstance(value, (float, decimal.Decimal))
            and math.isfinite(value)
            and value == int(value)
        )
        limit = 2**31 if kind == "int32" else 2**63
        return ok and -limit <= int(value) < limit
    if kind == "float":
        return isinstance(value, (int, float, decimal.Decimal))
    if kind == "decimal":
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if not isinstance(value, (int, float, decimal.Decimal)):
            return False
        exact = decimal.Decimal(str(value)) if isinstance(value, float) else decimal.Decimal(value)
        return exact == exact.quantize(decimal.Decimal("0.01")) and abs(exact) < 10**8
    if kind == "str":
        return isinstance(value, str)
    if kind == "date":
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    if kind == "datetime":
        return (isinstance(value, dt.datetime) and value.tzinfo is None) or (
            isinstance(value, dt.date) and not isinstance(value, dt.datetime)
        )
    if kind == "datetime_utc":
        return isinstance(value, dt.date)
    return False


def _stored(value: Any, kind: str) -> Any:
    """The constant as the column holds it."""
    if kind == "float":
        return float(value)
    if kind in INTEGER:
        return int(value)
    if kind == "decimal":
        exact = decimal.Decimal(str(value)) if isinstance(value, float) else decimal.Decimal(value)
        return exact.quantize(decimal.Decimal("0.01"))
    if kind in ("datetime", "datetime_utc") and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if kind == "datetime_utc":
        return (
            value.replace(tzinfo=dt.timezone.utc)
            if value.tzinfo is None
            else value.astimezone(dt.timezone.utc)
        )
    return value


def _mode(values: list[Any]) -> Any:
    counts: Counter[Any] = Counter()
    firsts: list[Any] = []
    for v in values:
        for f in firsts:
            if oracles.same_key(f, v):
                counts[id(f)] += 1
                break
        else:
            firsts.append(v)
            counts[id(v)] = 1
    if not firsts:
        return None
    top = max(counts.values())
    candidates = [f for f in firsts if counts[id(f)] == top]
    return min(candidates, key=oracles.sort_key)


def _ffill(values: list[Any], missing: list[bool], limit: int | None) -> list[Any]:
    out, last, run = [], None, 0
    for v, m in zip(values, missing, strict=True):
        if not m:
            last, run = v, 0
            out.append(v)
        elif last is not None and (limit is None or run < limit):
            run += 1
            out.append(last)
        else:
            run += 1
            out.append(v)
    return out


def expected_missing(case: dict[str, Any], df: pl.DataFrame, engine: str) -> Expected:
    config = case["config"]
    columns: list[Column] = case["columns"]
    kinds = kinds_of(columns)
    dtypes = dtypes_of(columns)
    nan_as_null = config.get("nan_as_null", True)
    explicit = "columns" in config
    targets = list(config.get("columns", list(kinds)))
    overrides = config.get("column_strategies", {})
    targets += [c for c in overrides if c not in targets]
    plan: list[tuple[str, str, Any]] = []
    for column in targets:
        override = overrides.get(column)
        if isinstance(override, dict):
            strategy, value = override["strategy"], override.get("value")
        elif override is not None:
            strategy, value = override, None
        else:
            strategy, value = config["strategy"], config.get("value")
            if isinstance(value, dict):
                value = value.get(column)
                if strategy == "constant" and value is None:
                    continue
        kind = kinds[column]
        numeric = kind in NUMERIC
        if strategy == "fill":
            strategy = "constant" if value is not None else ("median" if numeric else "mode")
        if strategy in ("mean", "median") and not numeric:
            if not explicit and override is None:
                continue
            return Expected(error=MissingValueError, match=repr(column))
        if strategy == "constant" and not _fits(value, kind):
            return Expected(error=MissingValueError, match=repr(column))
        plan.append((column, strategy, value))
    fills = [p for p in plan if p[1] not in ("drop", "drop_columns")]
    ordered_fill = any(s in ("forward_fill", "backward_fill") for _, s, _ in fills)
    if engine in LAZY and not config.get("order_by") and ordered_fill:
        return Expected(error=UnsupportedOperationError, match="order_by")

    rows = df.rows(named=True)
    names_out = list(kinds)
    # 1. drop columns whose missing ratio is above max_missing_ratio
    for column, strategy, _ in plan:
        if strategy == "drop_columns" and rows:
            ratio = sum(_missing(r[column], nan_as_null) for r in rows) / len(rows)
            if ratio > config.get("max_missing_ratio", 0.5):
                names_out.remove(column)
    # 2. drop rows with a missing value in the "drop" columns
    drop = [c for c, s, _ in plan if s == "drop"]
    rows = [r for r in rows if not any(_missing(r[c], nan_as_null) for c in drop)]
    # 3. fills, each from the rows left
    schema = {c: dtypes[c] for c in names_out}
    filled: dict[str, list[Any]] = {}
    order = config.get("order_by")
    for column, strategy, value in fills:
        # NaN is missing under nan_as_null: one that nothing fills comes out null
        values = [None if _missing(r[column], nan_as_null) else r[column] for r in rows]
        missing = [v is None for v in values]
        present = [v for v, m in zip(values, missing, strict=True) if not m]
        kind = kinds[column]
        if strategy in ("mean", "median"):
            schema[column] = nw_dtype("float")
            floats = [float(v) for v in present]
            stat = (
                oracles.agg_mean(floats, "float")
                if strategy == "mean"
                else oracles.agg_median(floats, "float")
            )
            values = [float(v) if v is not None else None for v in values]
            filled[column] = [stat if m else v for v, m in zip(values, missing, strict=True)]
        elif strategy == "mode":
            mode = _mode(present)
            filled[column] = [mode if m else v for v, m in zip(values, missing, strict=True)]
        elif strategy == "constant":
            stored = _stored(value, kind)
            filled[column] = [stored if m else v for v, m in zip(values, missing, strict=True)]
        else:
            index = list(range(len(rows)))
            if order:
                index.sort(key=lambda i: rows[i][order])
            if strategy == "backward_fill":
                index.reverse()
            seq = _ffill(
                [values[i] for i in index], [missing[i] for i in index], config.get("limit")
            )
            out = list(values)
            for i, v in zip(index, seq, strict=True):
                out[i] = v
            filled[column] = out
    result = [
        tuple(filled[c][i] if c in filled else r[c] for c in names_out) for i, r in enumerate(rows)
    ]
    return Expected(rows=result, schema=schema, ordered=engine not in ("duckdb", "pyspark"))


CASE = missing_case()


def run_case(engine: str, case: dict[str, Any], request: Any) -> None:
    df = build(case["columns"])
    try:
        handler = MissingValueHandler(name="missing", config=case["config"])
    except MissingValueError as exc:  # a bad constant may be refused when the handler is built
        expected = expected_missing(case, input_view(df, engine), engine)
        assert expected.error is MissingValueError, exc
        return
    expected = expected_missing(case, input_view(df, engine), engine)
    if dotted_on_spark(engine, df):
        expected = Expected(error=UnsupportedOperationError, match=DOT_REFUSAL)
    native = to_engine(df, engine, request)
    check(engine, handler.transform, native, expected, context=repr(case["config"]))


test_missing_value_handler = engine_test(CASE, run_case)
