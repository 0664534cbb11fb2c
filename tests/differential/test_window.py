"""WindowedAggregator (one pass and in batches) and StreamProcessor against the oracle.

Windows are epoch-aligned ``[start, start + window)``; a sliding window starts every ``slide``.
The oracle assigns each row to its windows in plain Python and aggregates with the same
functions as the DataAggregator suite.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
from hypothesis import strategies as st

from data_pipeline.core.errors import UnsupportedOperationError
from data_pipeline.processing import (
    BatchProcessor,
    ProcessingPipeline,
    StreamProcessor,
    WindowedAggregator,
)
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
    DOT_REFUSAL,
    Expected,
    check,
    dotted_on_spark,
    dtypes_of,
    engine_test,
    input_view,
    skip_dotted_names_on_spark,
    to_engine,
)
from tests.differential.test_aggregate import FUNCS, order_values

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1)
#: (window, slide): tumbling windows and sliding ones (the window a multiple of the slide)
WINDOWS = [("1m", None), ("1h", None), ("1d", None), ("30m", None), ("2h", "1h"), ("1h", "30m")]
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> int:
    return int(text[:-1]) * SECONDS[text[-1]]


@st.composite
def window_case(draw: st.DrawFn) -> dict[str, Any]:
    rows = draw(row_counts())
    time_kind = draw(st.sampled_from(["datetime", "datetime_utc"]))
    key_kinds = draw(st.lists(st.sampled_from(["int", "str"]), max_size=1))
    value_kinds = draw(st.lists(st.sampled_from(list(KINDS)), min_size=1, max_size=2))
    chosen = draw(names(2 + len(key_kinds) + len(value_kinds)))
    time_name, order_name = chosen[0], chosen[1]
    base = dt.datetime(2024, 3, 30, 22)  # across a day boundary
    offsets = draw(
        st.lists(st.one_of(st.none(), st.integers(0, 6 * 3600)), min_size=rows, max_size=rows)
    )
    times = tuple(None if o is None else base + dt.timedelta(seconds=o) for o in offsets)
    if time_kind == "datetime_utc":
        times = tuple(None if t is None else t.replace(tzinfo=UTC) for t in times)
    columns = [
        Column(time_name, time_kind, times),
        Column(order_name, "int", draw(order_values(rows))),
    ]
    for name, kind in zip(chosen[2:], key_kinds, strict=False):
        columns.append(Column(name, kind, draw(column_values(kind, rows, pool=True))))
    value_names = chosen[2 + len(key_kinds) :]
    aggregations: dict[str, Any] = {}
    plans: list[tuple[str, str, str, tuple[str, ...]]] = []
    for name, kind in zip(value_names, value_kinds, strict=True):
        columns.append(Column(name, kind, draw(column_values(kind, rows))))
        valid = [f for f in FUNCS if kind in NUMERIC or f not in oracles.NUMERIC_ONLY]
        funcs = draw(st.lists(st.sampled_from(valid), min_size=1, max_size=2, unique=True))
        specs: list[Any] = []
        for func in funcs:
            if func in ("first", "last"):  # a row's copies for sliding windows have no row order
                specs.append({"agg": func, "order_by": order_name})
                plans.append((name, func, f"{name}_{func}", (order_name,)))
            else:
                specs.append(func)
                plans.append((name, func, f"{name}_{func}", ()))
        aggregations[name] = specs
    if draw(st.booleans()):
        aggregations["*"] = "count"
        plans.append(("*", "count", "count", ()))
    window, slide = draw(st.sampled_from(WINDOWS))
    config: dict[str, Any] = {
        "time_column": time_name,
        "window": window,
        "group_by": [c.name for c in columns[2 : 2 + len(key_kinds)]],
        "aggregations": aggregations,
    }
    if slide:
        config["slide"] = slide
    return {
        "columns": columns,
        "config": config,
        "plans": plans,
        "batch_size": draw(st.integers(1, 5)),
    }


def windowed_rows(df: pl.DataFrame, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Each row once per window it falls in, with its window start (rows without time: none)."""
    time = config["time_column"]
    size = seconds(config["window"])
    step = seconds(config.get("slide") or config["window"])
    out = []
    for row in df.rows(named=True):
        t = row[time]
        if t is None:
            continue
        naive = t.replace(tzinfo=None)
        since = int((naive - EPOCH).total_seconds())
        last = since - since % step
        for start in range(last, since - size, -step):
            begin = EPOCH + dt.timedelta(seconds=start)
            out.append({**row, "window_start": begin.replace(tzinfo=t.tzinfo)})
    return out


def expected_windows(case: dict[str, Any], df: pl.DataFrame, engine: str) -> Expected:
    config = case["config"]
    columns: list[Column] = case["columns"]
    kinds = kinds_of(columns)
    dtypes = dtypes_of(columns)
    step = config.get("slide") or config["window"]
    if engine == "duckdb" and int(step[:-1]) != 1:
        return Expected(error=UnsupportedOperationError, match="duckdb")
    time = config["time_column"]
    kinds["window_start"] = kinds[time]
    dtypes["window_start"] = dtypes[time]
    keys = [*config["group_by"], "window_start"]
    rows, schema = oracles.aggregate(windowed_rows(df, config), kinds, dtypes, keys, case["plans"])
    size = dt.timedelta(seconds=seconds(config["window"]))
    n = len(config["group_by"])
    rows = [(*r[:n], r[n], r[n] + size, *r[n + 1 :]) for r in rows]
    schema = {
        **{k: schema[k] for k in config["group_by"]},
        "window_start": dtypes[time],
        "window_end": dtypes[time],
        **{p[2]: schema[p[2]] for p in case["plans"]},
    }
    # sorted by window start, then the keys (nulls last)
    rows = oracles.sort_rows(rows, [(n, False)] + [(i, False) for i in range(n)])
    return Expected(rows=rows, schema=schema)


def expected_merged(
    case: dict[str, Any], df: pl.DataFrame, engine: str, *, sliced: bool
) -> Expected:
    """Batches and micro-batches: median and n_unique are refused first (known from the config).
    ``sliced``: BatchProcessor reads a DuckDB relation in Arrow slices and StreamProcessor cuts
    panes itself: both cut any window on DuckDB."""
    if any(func in ("median", "n_unique") for _, func, _, _ in case["plans"]):
        return Expected(error=UnsupportedOperationError, match="cannot be combined")
    return expected_windows(case, df, "pyarrow" if sliced and engine == "duckdb" else engine)


CASE = window_case()
STREAM_CASE = CASE


def run_case(engine: str, case: dict[str, Any], request: Any) -> None:
    df = build(case["columns"])
    native = to_engine(df, engine, request)
    expected = expected_windows(case, input_view(df, engine), engine)
    if dotted_on_spark(engine, df):
        expected = Expected(error=UnsupportedOperationError, match=DOT_REFUSAL)
    step = WindowedAggregator(name="w", config=case["config"])
    check(engine, step.process, native, expected, context=repr(case["config"]))


def run_batch_case(engine: str, case: dict[str, Any], request: Any) -> None:
    df = build(case["columns"])
    skip_dotted_names_on_spark(engine, df)
    expected = expected_merged(case, input_view(df, engine), engine, sliced=True)
    pipeline = ProcessingPipeline("p").add_processor(
        WindowedAggregator(name="w", config=case["config"])
    )
    runner = BatchProcessor(name="b", config={"batch_size": case["batch_size"]}, pipeline=pipeline)
    check(engine, runner.process, to_engine(df, engine, request), expected, context=repr(case))


def run_stream_case(engine: str, case: dict[str, Any], request: Any) -> None:
    """emit: final gives each window once; together they are the one-pass answer."""
    df = build(case["columns"])
    skip_dotted_names_on_spark(engine, df)
    # the stream cuts windows itself (panes): no DuckDB limit there
    expected = expected_merged(case, input_view(df, engine), engine, sliced=True)
    size = case["batch_size"]
    parts = [df.slice(i, size) for i in range(0, df.height, size)] or [df]

    def stream(_: Any) -> Any:
        pipeline = ProcessingPipeline("p").add_processor(
            WindowedAggregator(name="w", config=case["config"])
        )
        processor = StreamProcessor(
            name="s",
            config={"emit": "final", "allowed_lateness": "7d", "output": "polars"},
            pipeline=pipeline,
        )
        batches = [to_engine(p, engine, request) for p in parts]
        emitted = [o for o in processor.process_stream(batches) if o is not None and o.width]
        return pl.concat(emitted, how="vertical_relaxed")

    expected.ordered = False
    check(engine, stream, None, expected, context=repr(case))


test_windowed_aggregator = engine_test(CASE, run_case)


test_windowed_aggregator_in_batches = engine_test(CASE, run_batch_case)


test_stream_processor_final_windows = engine_test(CASE, run_stream_case)
