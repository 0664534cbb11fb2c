"""DataEnricher on every engine against a plain-Python oracle: values and output schema.

Every frame option: ``derived`` (mapping or ``"name = expression"`` list; a later expression
uses an earlier one; an existing column replaced in place), ``date_parts`` (every part, on a
date, a naive and a UTC datetime column; ``date`` is refused on pandas), ``buckets``
(``breaks``, ``labels`` or the default ones, ``as`` or ``<column>_bucket``; over ints and over
floats with NaN and ±inf) and ``lookups`` (``on`` or ``left_on``/``right_on``, ``columns`` or
all, ``defaults``, null and missing keys, a reference with duplicate keys). Half the cases name
the columns with spaces, a dot and unicode (quoted in the expressions). ``rest_lookups``
need an HTTP server and are left to tests/unit/processing/test_enrich.py (a local server, on
every engine): a REST lookup ends in the same left join as ``lookups``, checked here.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from typing import Any

import narwhals as nw
import polars as pl
from hypothesis import strategies as st

from data_pipeline.core.errors import UnsupportedOperationError
from data_pipeline.processing import DataEnricher
from data_pipeline.processing.join import JoinValidationError
from tests.differential.frames import TEMPORAL, column_values, row_counts
from tests.differential.harness import (
    LAZY,
    Expected,
    check,
    engine_test,
    input_view,
    nw_dtype,
    to_engine,
)

#: (output, expression, oracle on a row dict, output dtype); "r2" needs "r" before it
DERIVED: list[tuple[str, str, Any, Any]] = [
    ("r", "q * 2", lambda r: None if r["q"] is None else r["q"] * 2, nw.Int64()),
    ("r2", "r + 1", lambda r: None if r["r"] is None else r["r"] + 1, nw.Int64()),
    (
        "s",
        "q + p",
        lambda r: None if r["q"] is None or r["p"] is None else r["q"] + r["p"],
        nw.Float64(),
    ),
    ("c", "coalesce(q, 0)", lambda r: 0 if r["q"] is None else r["q"], nw.Int64()),
    # NaN > 1 is true (docs/semantics.md: NaN sorts above every number)
    (
        "big",
        "p > 1",
        lambda r: None if r["p"] is None else (math.isnan(r["p"]) or r["p"] > 1),
        nw.Boolean(),
    ),
    ("q", "q + 1", lambda r: None if r["q"] is None else r["q"] + 1, nw.Int64()),
]

DATE_PARTS = ("year", "quarter", "month", "day", "weekday", "day_of_year")
TIME_PARTS = ("hour", "minute", "second")


def date_part(value: Any, part: str) -> Any:
    if value is None:
        return None
    if part == "date":
        return value.date() if isinstance(value, dt.datetime) else value
    if part == "quarter":
        return (value.month - 1) // 3 + 1
    if part == "weekday":
        return value.isoweekday()
    if part == "day_of_year":
        return value.timetuple().tm_yday
    return getattr(value, part)


def bucket_of(value: Any, breaks: list[float], labels: list[str]) -> Any:
    """``[low, high)`` intervals; NaN above every number (the top bucket), null: null."""
    if value is None:
        return None
    for limit, label in zip(breaks, labels, strict=False):
        if not (isinstance(value, float) and math.isnan(value)) and value < limit:
            return label
    return labels[-1]


def default_labels(breaks: list[float]) -> list[str]:
    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    middle = [f"{fmt(a)} - {fmt(b)}" for a, b in itertools.pairwise(breaks)]
    return [f"< {fmt(breaks[0])}", *middle, f">= {fmt(breaks[-1])}"]


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    n = draw(row_counts())
    kind = draw(st.sampled_from(TEMPORAL))
    frame = pl.DataFrame(
        {
            "k": draw(column_values("int32", n, pool=True)),
            "q": draw(column_values("int32", n)),
            "p": draw(column_values("float", n)),
            "d": draw(column_values(kind, n)),
        },
        schema={"k": pl.Int64, "q": pl.Int64, "p": pl.Float64, "d": pl.Datetime("us")}
        | ({"d": pl.Date} if kind == "date" else {})
        | ({"d": pl.Datetime("us", "UTC")} if kind == "datetime_utc" else {}),
        strict=False,
    )
    config: dict[str, Any] = {}
    chosen = draw(st.lists(st.sampled_from([d[0] for d in DERIVED]), unique=True, max_size=3))
    if "r2" in chosen and "r" not in chosen:
        chosen.insert(0, "r")
    chosen.sort(key=lambda name: name == "r2")  # r before r2
    derived = [d for name in chosen for d in DERIVED if d[0] == name]
    if derived:
        as_list = draw(st.booleans())
        config["derived"] = (
            [f"{o} = {e}" for o, e, _, _ in derived]
            if as_list
            else {o: e for o, e, _, _ in derived}
        )
    allowed = DATE_PARTS + ("date",) + (() if kind == "date" else TIME_PARTS)
    parts = draw(st.lists(st.sampled_from(allowed), unique=True, max_size=3))
    if parts:
        config["date_parts"] = {"d": parts[0] if len(parts) == 1 else parts}
    buckets = []
    for column in draw(st.lists(st.sampled_from(["q", "p"]), unique=True, max_size=2)):
        breaks = sorted(
            draw(
                st.lists(st.sampled_from([-2, 0, 0.5, 3, 100]), min_size=1, max_size=3, unique=True)
            )
        )
        bucket: dict[str, Any] = {"column": column, "breaks": breaks}
        if draw(st.booleans()):
            bucket["labels"] = [f"L{i}" for i in range(len(breaks) + 1)]
        if draw(st.booleans()):
            bucket["as"] = f"{column}_band"
        buckets.append(bucket)
    if buckets:
        config["buckets"] = buckets
    reference = None
    if draw(st.booleans()):
        m = draw(st.integers(0, 4))
        keys = draw(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=m, max_size=m))
        key_name = draw(st.sampled_from(["k", "rk"]))
        reference = pl.DataFrame(
            {
                key_name: keys,
                "w": [10 * i for i in range(m)],
                "name": draw(
                    st.lists(st.sampled_from(["x", "é", "", None]), min_size=m, max_size=m)
                ),
                "t": draw(st.lists(st.booleans(), min_size=m, max_size=m)),
            },
            schema={key_name: pl.Int64, "w": pl.Int64, "name": pl.String, "t": pl.Boolean},
        )
        lookup: dict[str, Any] = {"reference": "ref"}
        if key_name == "k":
            lookup["on"] = "k"
        else:
            lookup |= {"left_on": ["k"], "right_on": ["rk"]}
        columns = draw(st.lists(st.sampled_from(["w", "name", "t"]), unique=True, max_size=3))
        if columns:
            lookup["columns"] = columns
        defaults = {"w": -1, "name": "unknown", "t": False}
        chosen_defaults = draw(
            st.lists(st.sampled_from(columns or ["w", "name", "t"]), unique=True)
        )
        if chosen_defaults:
            lookup["defaults"] = {c: defaults[c] for c in chosen_defaults}
        config["lookups"] = [lookup]
    hostile = draw(st.booleans())
    return {
        "frame": frame,
        "kind": kind,
        "config": config,
        "reference": reference,
        "names": HOSTILE if hostile else {c: c for c in HOSTILE},
    }


#: the frame's columns under names with spaces, a dot and unicode (half the cases)
HOSTILE = {"k": "k ey", "q": "q.x", "p": "prix é", "d": "Dätum 1"}


def real_name(name: str, names: dict[str, str]) -> str:
    """An output of the logical config under the frame's real names (``d_year``, ``q_band``)."""
    if name in names:
        return names[name]
    head, sep, tail = name.partition("_")
    return f"{names[head]}_{tail}" if sep and head in names else name


def real_config(config: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The logical config (columns k, q, p, d) for the frame's real names, quoted in
    expressions."""

    def quoted(match: re.Match[str]) -> str:
        return f'"{names[match.group(0)]}"'

    def expression(text: str) -> str:
        return re.sub(r"\b[qp]\b", quoted, text)

    out: dict[str, Any] = {}
    derived = config.get("derived")
    if isinstance(derived, list):
        out["derived"] = [
            f'"{names.get(o, o)}" = {expression(e)}'
            for o, e in (t.split(" = ", 1) for t in derived)
        ]
    elif derived:
        out["derived"] = {names.get(o, o): expression(e) for o, e in derived.items()}
    if "date_parts" in config:
        out["date_parts"] = {names["d"]: config["date_parts"]["d"]}
    if "buckets" in config:
        out["buckets"] = [
            b
            | {"column": names[b["column"]]}
            | ({"as": real_name(b["as"], names)} if "as" in b else {})
            for b in config["buckets"]
        ]
    if "lookups" in config:
        lookup = dict(config["lookups"][0])
        if "on" in lookup:
            lookup["on"] = names["k"]
        else:
            lookup["left_on"] = [names["k"]]
        out["lookups"] = [lookup]
    return out


def oracle(case: dict[str, Any], engine: str) -> Expected:
    frame: pl.DataFrame = input_view(case["frame"], engine)
    config, kind = case["config"], case["kind"]
    rows = [dict(r) for r in frame.iter_rows(named=True)]
    schema = {c: nw_dtype(k) for c, k in {"k": "int", "q": "int", "p": "float", "d": kind}.items()}
    derived = config.get("derived", {})
    pairs = (
        [t.split(" = ", 1) for t in derived] if isinstance(derived, list) else list(derived.items())
    )
    for out, expression in pairs:
        _, _, func, dtype = next(d for d in DERIVED if d[0] == out and d[1] == expression)
        for row in rows:
            row[out] = func(row)
        schema[out] = dtype
    parts = config.get("date_parts", {}).get("d", [])
    for part in [parts] if isinstance(parts, str) else parts:
        if part == "date" and engine == "pandas":
            return Expected(error=UnsupportedOperationError, match="'date'")
        for row in rows:
            row[f"d_{part}"] = date_part(row["d"], part)
        schema[f"d_{part}"] = nw.Date() if part == "date" else nw.Int64()
    for bucket in config.get("buckets", []):
        labels = bucket.get("labels") or default_labels(bucket["breaks"])
        out = bucket.get("as") or f"{bucket['column']}_bucket"
        for row in rows:
            row[out] = bucket_of(row[bucket["column"]], bucket["breaks"], labels)
        schema[out] = nw.String()
    for lookup in config.get("lookups", []):
        reference: pl.DataFrame = case["reference"]
        key = "k" if "on" in lookup else "rk"
        keys = [v for v in reference[key].to_list() if v is not None]
        if len(keys) != len(set(keys)):
            return Expected(error=JoinValidationError, match="duplicate keys")
        wanted = lookup.get("columns") or ["w", "name", "t"]
        by_key = {r[key]: r for r in reference.iter_rows(named=True) if r[key] is not None}
        defaults = lookup.get("defaults", {})
        for row in rows:
            match = by_key.get(row["k"])
            for c in wanted:
                row[c] = match[c] if match is not None else defaults.get(c)
        schema |= {c: {"w": nw.Int64(), "name": nw.String(), "t": nw.Boolean()}[c] for c in wanted}
    values = [tuple(row[c] for c in schema) for row in rows]
    names = case["names"]
    real = {real_name(c, names): dtype for c, dtype in schema.items()}
    return Expected(rows=values, schema=real, ordered=engine not in LAZY)


def run_case(engine: str, case: dict[str, Any], request: Any) -> None:
    names = case["names"]
    references = {}
    if case["reference"] is not None:
        reference = case["reference"].rename({"k": names["k"]}, strict=False)
        references["ref"] = to_engine(reference, engine, request)
    config = real_config(case["config"], names)
    step = DataEnricher(name="e", config=config, references=references)
    native = to_engine(case["frame"].rename(names), engine, request)
    check(engine, step.process, native, oracle(case, engine), context=repr(case["config"]))


test_data_enricher = engine_test(cases(), run_case)
