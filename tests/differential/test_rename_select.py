"""ColumnRenamer and ColumnSelector on every engine against a plain-Python oracle.

Hypothesis draws hostile column names (frames.NAMES) over columns of every kind (frames.KINDS:
ints, floats with NaN, text, booleans, dates, naive and UTC datetimes, decimals) and a config
using every option:

* ColumnRenamer: ``mapping`` (to other hostile names, or to a name another column ends with:
  a SchemaError), ``function`` (``lower``, ``upper``, ``strip``, ``snake_case``; ``mapping``
  wins for the columns it names), ``strict`` (a mapped name missing from the data).
* ColumnSelector: ``include`` (or its alias ``columns``), ``exclude``, ``include_regex``,
  ``exclude_regex``, ``include_dtypes``, ``exclude_dtypes`` (every dtype name) and ``strict``
  (a missing name), and a selection that keeps nothing.

The oracle renames or selects the Polars rows in Python; the expected snake_case of each
name is written out by hand. Values and dtypes must be unchanged apart from names and order.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st

from data_pipeline.core.errors import ColumnNotFoundError, SchemaError, UnsupportedOperationError
from data_pipeline.transformation import ColumnRenamer, ColumnSelector
from tests.differential.frames import KINDS, NAMES, Column, build, column_values, kinds_of, names
from tests.differential.harness import (
    DOT_REFUSAL,
    LAZY,
    Expected,
    check,
    dotted_on_spark,
    engine_test,
    input_view,
    nw_dtype,
    to_engine,
)

#: snake_case of every generated name, by hand (docs: "Unit Price", "unitPrice" -> unit_price)
SNAKE = {
    "a": "a",
    "b c": "b_c",
    "x.y": "x_y",
    "é": "é",
    "名前": "名前",
    "Ünï code": "ünï_code",
    "1st": "1st",
    "Upper": "upper",
    "v": "v",
    "with.dot space": "with_dot_space",
    "k": "k",
    "z": "z",
    "unitPrice": "unit_price",
    " pad ": "pad",
}
FUNCTIONS = {"lower": str.lower, "upper": str.upper, "strip": str.strip, "snake_case": SNAKE.get}
RENAME_NAMES = (*NAMES, "unitPrice", " pad ")

#: dtype name -> the kinds it selects (ColumnSelector's documented dtype names)
DTYPES = {
    "numeric": {"int", "int32", "float", "decimal"},
    "integer": {"int", "int32"},
    "float": {"float"},
    "string": {"str"},
    "boolean": {"bool"},
    "temporal": {"date", "datetime", "datetime_utc"},
    "date": {"date"},
    "datetime": {"datetime", "datetime_utc"},
    "categorical": set(),
}
REGEXES = ("^a", r"\.", " ", "^[A-Z]", "e$", "é|名", "^(k|v|z)$", "[0-9]")


@st.composite
def frames(draw: Any, pool: tuple[str, ...] = NAMES, first: tuple[str, ...] = ()) -> list[Column]:
    """1-5 columns of random kinds; ``first``: names drawn one at a time first (more often)."""
    count = draw(st.integers(1, 5))
    cols = draw(st.lists(st.sampled_from(first), max_size=1)) if first else []
    cols += draw(
        st.lists(
            st.sampled_from([n for n in pool if n not in cols]),
            min_size=count - len(cols),
            max_size=count - len(cols),
            unique_by=str.lower,
        )
    )
    size = draw(st.integers(0, 4))
    return [
        Column(name, kind, draw(column_values(kind, size)))
        for name in cols
        for kind in [draw(st.sampled_from(sorted(KINDS)))]
    ]


@st.composite
def rename_cases(draw: Any) -> dict[str, Any]:
    columns = draw(frames(RENAME_NAMES, first=("unitPrice", " pad ")))
    cols = [c.name for c in columns]
    config: dict[str, Any] = {}
    mapped = draw(st.lists(st.sampled_from([*cols, "missing"]), unique=True, max_size=len(cols)))
    targets = draw(names(len(mapped), taken=cols)) if draw(st.booleans()) else None
    if targets is None and mapped:  # onto the names of the other columns: clashes, swaps
        targets = draw(st.lists(st.sampled_from(cols), min_size=len(mapped), max_size=len(mapped)))
    if mapped:
        config["mapping"] = dict(zip(mapped, targets or [], strict=True))
    if draw(st.booleans()) or not mapped:
        config["function"] = draw(st.sampled_from(sorted(FUNCTIONS)))
    if draw(st.booleans()):
        config["strict"] = False
    return {"component": "rename", "columns": columns, "config": config}


@st.composite
def select_cases(draw: Any) -> dict[str, Any]:
    columns = draw(frames())
    cols = [c.name for c in columns]
    pick = st.lists(st.sampled_from([*cols, "missing"]), unique=True, max_size=3)
    config: dict[str, Any] = {}
    for key, strategy in {
        "include": pick,
        "exclude": pick,
        "include_regex": st.sampled_from(REGEXES),
        "exclude_regex": st.sampled_from(REGEXES),
        "include_dtypes": st.lists(st.sampled_from(sorted(DTYPES)), unique=True, min_size=1),
        "exclude_dtypes": st.lists(st.sampled_from(sorted(DTYPES)), unique=True, min_size=1),
    }.items():
        if draw(st.integers(0, 2)) == 0:
            value = draw(strategy)
            if isinstance(value, list) and len(value) == 1 and draw(st.booleans()):
                value = value[0]  # one name or dtype without a list
            config[key] = value
    if "include" in config and draw(st.booleans()):
        config["columns"] = config.pop("include")
    if draw(st.booleans()):
        config["strict"] = False
    return {"component": "select", "columns": columns, "config": config}


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value)


def rename_oracle(columns: list[Column], config: dict[str, Any]) -> list[str] | Expected:
    cols = [c.name for c in columns]
    mapping = config.get("mapping", {})
    if config.get("strict", True) and any(old not in cols for old in mapping):
        return Expected(error=ColumnNotFoundError, match="missing")
    func = FUNCTIONS.get(config.get("function", ""))
    out = [mapping[c] if c in mapping else func(c) if func else c for c in cols]
    if len(set(out)) < len(out):
        return Expected(error=SchemaError, match="same name")
    return out


def select_oracle(columns: list[Column], config: dict[str, Any]) -> list[str] | Expected:
    cols = [c.name for c in columns]
    kind = kinds_of(columns)
    include = _as_list(config.get("include", config.get("columns", [])))
    exclude = _as_list(config.get("exclude", []))
    if config.get("strict", True) and any(n not in cols for n in [*include, *exclude]):
        return Expected(error=ColumnNotFoundError, match="missing")
    include_regex, exclude_regex = config.get("include_regex"), config.get("exclude_regex")
    include_dtypes = _as_list(config.get("include_dtypes", []))
    exclude_dtypes = _as_list(config.get("exclude_dtypes", []))
    if "include" in config or "columns" in config or include_regex or include_dtypes:
        chosen = [n for n in include if n in cols]
        chosen += [c for c in cols if include_regex and re.search(include_regex, c)]
        chosen += [c for c in cols if any(kind[c] in DTYPES[d] for d in include_dtypes)]
    else:
        chosen = list(cols)
    dropped = set(exclude) | {c for c in cols if exclude_regex and re.search(exclude_regex, c)}
    dropped |= {c for c in cols if any(kind[c] in DTYPES[d] for d in exclude_dtypes)}
    out = [c for c in dict.fromkeys(chosen) if c not in dropped]
    if not out:
        return Expected(error=ColumnNotFoundError, match="keeps no column")
    return out


def run_case(engine: str, case: dict[str, Any], request: Any) -> None:
    columns, config = case["columns"], case["config"]
    df = build(columns)
    if case["component"] == "rename":
        step: Any = ColumnRenamer(name="r", config=config)
        call, answer = step.transform, rename_oracle(columns, config)
    else:
        step = ColumnSelector(name="s", config=config)
        call, answer = step.transform, select_oracle(columns, config)
    if isinstance(answer, Expected):
        expected = answer
    else:
        view = input_view(df, engine)
        if case["component"] == "rename":
            source = dict(zip(answer, df.columns, strict=True))
        else:
            source = {n: n for n in answer}
        kinds = kinds_of(columns)
        expected = Expected(
            rows=[tuple(row[source[n]] for n in answer) for row in view.iter_rows(named=True)],
            schema={n: nw_dtype(kinds[source[n]]) for n in answer},
            ordered=engine not in LAZY,
        )
    if dotted_on_spark(engine, df):
        expected = Expected(error=UnsupportedOperationError, match=DOT_REFUSAL)
    check(engine, call, to_engine(df, engine, request), expected, context=repr(config))


test_column_renamer = engine_test(rename_cases(), run_case)


test_column_selector = engine_test(select_cases(), run_case)
