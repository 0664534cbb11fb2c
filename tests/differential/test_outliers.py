"""OutlierHandler on every engine against a plain-Python oracle: values and schema.

Every method (``iqr``, ``zscore``, ``percentile``, ``bounds``) and action (``clip``,
``remove``, ``flag``, ``null``), ``columns``, ``column_settings``, ``flag_suffix`` and
``nan_as_null``. Statistics come from the finite values only: null and NaN are never outliers,
±inf never enter a statistic but are compared with the bounds like any value.
"""

from __future__ import annotations

import decimal
import math
from typing import Any

import polars as pl
from hypothesis import strategies as st

from data_pipeline.core.errors import DataTypeError, UnsupportedOperationError
from data_pipeline.transformation import OutlierHandler
from tests.differential.frames import (
    INTEGER,
    NUMERIC,
    Column,
    build,
    column_values,
    kinds_of,
    names,
    row_counts,
)
from tests.differential.harness import (
    DOT_REFUSAL,
    Expected,
    check,
    dotted_on_spark,
    dtypes_of,
    engine_test,
    input_view,
    nw_dtype,
    to_engine,
)

METHODS = ("iqr", "zscore", "percentile", "bounds")
CENT = decimal.Decimal("0.01")
ACTIONS = ("clip", "remove", "flag", "null")


@st.composite
def rule(draw: st.DrawFn, *, top: bool) -> dict[str, Any]:
    method = draw(st.sampled_from(METHODS))
    out: dict[str, Any] = {"method": method, "action": draw(st.sampled_from(ACTIONS))}
    if method == "iqr" and draw(st.booleans()):
        out["factor"] = draw(st.sampled_from([0.5, 1.5, 3.0]))
    if method == "zscore":
        out["threshold"] = draw(st.sampled_from([0.5, 1.0, 3.0]))
    if method == "percentile":
        low = draw(st.sampled_from([0.0, 0.05, 0.25]))
        out["lower_percentile"] = low
        out["upper_percentile"] = draw(st.sampled_from([0.5, 0.75, 0.95, 1.0]))
    if method == "bounds":
        lower = draw(st.one_of(st.none(), st.sampled_from([-5, -2.5, 0, 10])))
        upper = draw(
            st.sampled_from([None, 20, 100.5, 1000])
            if lower is not None
            else st.sampled_from([20, 100.5])
        )
        if lower is not None:
            out["lower"] = lower
        if upper is not None:
            out["upper"] = upper
    return out


@st.composite
def outlier_case(draw: st.DrawFn) -> dict[str, Any]:
    rows = draw(row_counts())
    kinds = draw(st.lists(st.sampled_from([*NUMERIC, "float", "str"]), min_size=1, max_size=3))
    chosen = draw(names(len(kinds)))
    columns = [
        Column(n, k, draw(column_values(k, rows))) for n, k in zip(chosen, kinds, strict=True)
    ]
    config: dict[str, Any] = draw(rule(top=True))
    if draw(st.booleans()):
        config["columns"] = [
            c.name
            for c in draw(st.lists(st.sampled_from(columns), min_size=1, unique=True))
            if c.kind in NUMERIC or draw(st.integers(0, 4)) == 0  # now and then a text column
        ] or [columns[0].name]
    if draw(st.integers(0, 2)) == 0:
        column = draw(st.sampled_from(columns))
        config["column_settings"] = {column.name: draw(rule(top=False))}
    if draw(st.integers(0, 3)) == 0:
        config["flag_suffix"] = draw(st.sampled_from(["_out", " ?"]))
    if draw(st.integers(0, 3)) == 0:
        config["nan_as_null"] = False
    return {"columns": columns, "config": config}


# -- the oracle ------------------------------------------------------------------------------


def _finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (as numpy, Polars, DuckDB)."""
    xs = sorted(values)
    h = (len(xs) - 1) * q
    lo = math.floor(h)
    frac = h - lo
    if frac == 0:
        return xs[lo]
    return xs[lo] + (xs[lo + 1] - xs[lo]) * frac


def bounds(values: list[Any], rule: dict[str, Any]) -> tuple[Any, Any]:
    method = rule["method"]
    if method == "bounds":
        return rule.get("lower"), rule.get("upper")
    xs = [float(v) for v in values if _finite(v)]
    if not xs:
        return None, None
    if method == "iqr":
        q1, q3 = quantile(xs, 0.25), quantile(xs, 0.75)
        spread = (q3 - q1) * rule.get("factor", 1.5)
        return q1 - spread, q3 + spread
    if method == "zscore":
        if len(xs) < 2:
            return None, None
        exact = [decimal.Decimal(x) for x in xs]
        mean = float(sum(exact) / len(exact))
        sd = float((sum((x - sum(exact) / len(exact)) ** 2 for x in exact) / (len(xs) - 1)).sqrt())
        t = rule.get("threshold", 3.0)
        return mean - sd * t, mean + sd * t
    return (
        quantile(xs, rule.get("lower_percentile", 0.01)),
        quantile(xs, rule.get("upper_percentile", 0.99)),
    )


def is_outlier(value: Any, lo: Any, hi: Any) -> bool:
    """Compared as floats (a decimal is compared with a float bound in floating point)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    value = float(value)
    return (lo is not None and value < lo) or (hi is not None and value > hi)


def expected_outliers(case: dict[str, Any], df: pl.DataFrame, engine: str) -> Expected:
    config = case["config"]
    columns: list[Column] = case["columns"]
    kinds = kinds_of(columns)
    dtypes = dtypes_of(columns)
    settings_ = config.get("column_settings", {})
    targets = list(config.get("columns", list(kinds)))
    targets += [c for c in settings_ if c not in targets]
    chosen = []
    for column in targets:
        if kinds[column] in NUMERIC:
            chosen.append(column)
        elif "columns" in config or column in settings_:
            return Expected(error=DataTypeError, match=repr(column))
    keys = (
        "method",
        "action",
        "factor",
        "threshold",
        "lower_percentile",
        "upper_percentile",
        "lower",
        "upper",
    )
    rules = {}
    for column in chosen:
        merged = {k: config[k] for k in keys if k in config}
        merged.setdefault("action", "clip")
        merged.setdefault("method", "iqr")
        merged.update(settings_.get(column, {}))
        rules[column] = merged
    rows = df.rows(named=True)
    limits = {c: bounds([r[c] for r in rows], rules[c]) for c in chosen}
    suffix = config.get("flag_suffix", "_outlier")
    schema = dict(dtypes)
    flags = [c for c in chosen if rules[c]["action"] == "flag"]
    for c in flags:
        schema[c + suffix] = nw_dtype("bool")
    clipped_float = set()
    for c in chosen:
        rule_ = rules[c]
        if rule_["action"] != "clip":
            continue
        fixed = [rule_.get("lower"), rule_.get("upper")]
        fixed_int = rule_["method"] == "bounds" and all(
            b is None or float(b).is_integer() for b in fixed
        )
        fixed_decimal = rule_["method"] == "bounds" and all(
            b is None or decimal.Decimal(str(b)) == decimal.Decimal(str(b)).quantize(CENT)
            for b in fixed
        )
        if (kinds[c] in INTEGER and not fixed_int) or (kinds[c] == "decimal" and not fixed_decimal):
            schema[c] = nw_dtype("float")
            clipped_float.add(c)
    out = []
    for r in rows:
        if any(rules[c]["action"] == "remove" and is_outlier(r[c], *limits[c]) for c in chosen):
            continue
        values = dict(r)
        for c in chosen:
            lo, hi = limits[c]
            v = r[c]
            action = rules[c]["action"]
            if c in clipped_float and v is not None:
                v = float(v)
            if action == "clip" and is_outlier(v, lo, hi):
                v = lo if lo is not None and v < lo else hi
                if kinds[c] in INTEGER and c not in clipped_float:
                    v = int(v)
                elif kinds[c] == "decimal" and c not in clipped_float:
                    v = decimal.Decimal(str(v)).quantize(CENT)
            elif action == "null" and is_outlier(v, lo, hi):
                v = None
            values[c] = v
        for c in flags:
            values[c + suffix] = is_outlier(r[c], *limits[c])
        out.append(tuple(values[k] for k in schema))
    return Expected(rows=out, schema=schema, ordered=engine not in ("duckdb", "pyspark"))


CASE = outlier_case()


def run_case(engine: str, case: dict[str, Any], request: Any) -> None:
    df = build(case["columns"])
    handler = OutlierHandler(name="outliers", config=case["config"])
    expected = expected_outliers(case, input_view(df, engine), engine)
    if dotted_on_spark(engine, df):
        expected = Expected(error=UnsupportedOperationError, match=DOT_REFUSAL)
    check(
        engine,
        handler.transform,
        to_engine(df, engine, request),
        expected,
        context=repr(case["config"]),
    )


test_outlier_handler = engine_test(CASE, run_case)
