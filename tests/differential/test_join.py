"""DataJoiner on every engine against DuckDB SQL over the same data: values and output schema.

Hypothesis draws two small frames and a config: every ``how`` (inner, left, right, full, semi,
anti, cross), keys by ``on`` (one or two columns) or by ``left_on`` + ``right_on``, a
``suffix`` for the right column whose name is already on the left, nullable keys (duplicates
often), and columns of several types (a numpy int64/bool column on pandas where it has no
null). The oracle is DuckDB SQL written here, with the output columns in the documented order
(DataJoinerConfig): null keys never match, duplicate keys multiply rows, a full join on ``on``
coalesces the keys (SQL ``USING``), and a column that gains nulls keeps its logical type on
every engine (pandas: the nullable Int64/boolean, docs/semantics.md).
"""

from __future__ import annotations

from typing import Any

import duckdb
import narwhals as nw
import polars as pl
from hypothesis import strategies as st

from data_pipeline.processing import DataJoiner
from tests.differential.harness import Expected, check, engine_test, to_engine

HOWS = ("inner", "left", "right", "full", "semi", "anti", "cross")

#: left: keys k (Int64) and g (String), then a (Int64, never null), v (Float64), t (Boolean,
#: never null); right: its keys, b (Int64, never null), v (String: the clashing name), u (Boolean)
LEFT = {"k": pl.Int64, "g": pl.String, "a": pl.Int64, "v": pl.Float64, "t": pl.Boolean}
RIGHT_REST = {"b": pl.Int64, "v": pl.String, "u": pl.Boolean}
NW = {
    pl.Int64: nw.Int64(),
    pl.String: nw.String(),
    pl.Float64: nw.Float64(),
    pl.Boolean: nw.Boolean(),
}


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    how = draw(st.sampled_from(HOWS))
    two_keys = draw(st.booleans())
    mode = "cross" if how == "cross" else draw(st.sampled_from(["on", "left_on"]))
    right_keys = ["k", "g"] if mode != "left_on" else ["rk", "rg"]
    if not two_keys:
        right_keys = right_keys[:1]
    key = st.one_of(st.none(), st.integers(0, 2))
    group = st.one_of(st.none(), st.sampled_from(["x", "y"]))
    n, m = draw(st.integers(0, 5)), draw(st.integers(0, 5))

    def column(values: Any, size: int) -> list[Any]:
        return draw(st.lists(values, min_size=size, max_size=size))

    left = pl.DataFrame(
        {
            "k": column(key, n),
            "g": column(group, n),
            "a": list(range(n)),
            "v": column(st.sampled_from([0.5, -0.0, float("nan"), None]), n),
            "t": column(st.booleans(), n),
        },
        schema=LEFT,
    )
    right_schema = (
        {right_keys[0]: pl.Int64} | ({right_keys[1]: pl.String} if two_keys else {}) | RIGHT_REST
    )
    right_data = {right_keys[0]: column(key, m)}
    if two_keys:
        right_data[right_keys[1]] = column(group, m)
    right_data |= {
        "b": list(range(100, 100 + m)),
        "v": column(st.sampled_from(["p", "é", ""]), m),
        "u": column(st.booleans(), m),
    }
    right = pl.DataFrame(right_data, schema=right_schema)
    left_keys = ["k", "g"][: len(right_keys)]
    config: dict[str, Any] = {"how": how}
    if mode == "on":
        config["on"] = left_keys
    elif mode == "left_on":
        config |= {"left_on": left_keys, "right_on": right_keys}
    suffix = draw(st.sampled_from(["_right", "_r"]))
    if suffix != "_right":
        config["suffix"] = suffix
    return {"left": left, "right": right, "config": config, "suffix": suffix}


def oracle(case: dict[str, Any]) -> Expected:
    """DuckDB SQL: the rows, and the schema in the documented column order."""
    left, right, config, suffix = case["left"], case["right"], case["config"], case["suffix"]
    how = config["how"]
    on = config.get("on")
    left_keys = on or config.get("left_on") or []
    right_keys = on or config.get("right_on") or []
    condition = " AND ".join(f"l.{a} = r.{b}" for a, b in zip(left_keys, right_keys, strict=True))
    out: list[tuple[str, str, Any]] = []  # (SQL expression, output name, polars dtype)
    if how in ("semi", "anti"):
        exists = "EXISTS" if how == "semi" else "NOT EXISTS"
        select = ", ".join(f'l."{c}"' for c in left.columns)
        sql = f"SELECT {select} FROM l WHERE {exists} (SELECT 1 FROM r WHERE {condition})"
        schema = {c: NW[t] for c, t in left.schema.items()}
        return _run(sql, left, right, schema)
    for c, t in left.schema.items():
        if on and c in on:
            expr = {"right": f"r.{c}", "full": f"coalesce(l.{c}, r.{c})"}.get(how, f"l.{c}")
            out.append((expr, c, t))
        elif not (how == "right" and not on and c in left_keys):
            out.append((f"l.{c}", c, t))
    for c, t in right.schema.items():
        if c in right_keys and how != "cross" and (on or how in ("inner", "left")):
            continue
        out.append((f"r.{c}", c + suffix if c in left.columns else c, t))
    select = ", ".join(f'{expr} AS "{name}"' for expr, name, _ in out)
    join = {"inner": "JOIN", "left": "LEFT JOIN", "right": "RIGHT JOIN", "full": "FULL JOIN"}
    if how == "cross":
        sql = f"SELECT {select} FROM l CROSS JOIN r"
    else:
        sql = f"SELECT {select} FROM l {join[how]} r ON {condition}"
    return _run(sql, left, right, {name: NW[t] for _, name, t in out})


def _run(sql: str, left: pl.DataFrame, right: pl.DataFrame, schema: dict[str, Any]) -> Expected:
    con = duckdb.connect()
    con.register("l", left.to_arrow())
    con.register("r", right.to_arrow())
    rows = con.execute(sql).fetchall()
    con.close()
    return Expected(rows=rows, schema=schema, ordered=False)


def run_case(engine: str, case: dict[str, Any], request: Any) -> None:
    expected = oracle(case)
    step = DataJoiner(
        name="j", config=case["config"], right=to_engine(case["right"], engine, request)
    )
    native = to_engine(case["left"], engine, request)
    check(engine, step.process, native, expected, context=repr(case["config"]))


test_data_joiner = engine_test(cases(), run_case)
