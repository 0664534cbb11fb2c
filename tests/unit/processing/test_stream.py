"""StreamProcessor: micro-batches with aggregation state kept across them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import ConfigError
from data_pipeline.processing import (
    DataAggregator,
    DataFilter,
    ProcessingPipeline,
    StreamProcessor,
    WindowedAggregator,
)
from tests.conftest import to_polars
from tests.unit.processing.oracle import assert_same, duck

T0 = dt.datetime(2024, 6, 1, 12, 0)


def events(n: int = 240) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [T0 + dt.timedelta(seconds=17 * k) for k in range(n)],
            "sensor": [None if k % 23 == 0 else f"s{k % 3}" for k in range(n)],
            "value": [None if k % 11 == 0 else float((k * 7) % 13) for k in range(n)],
        }
    )


def windowed_pipeline(**extra: Any) -> ProcessingPipeline:
    config = {
        "time_column": "ts",
        "window": "1m",
        "group_by": "sensor",
        "aggregations": {"value": ["sum", "mean", "max"], "*": "count"},
        **extra,
    }
    return (
        ProcessingPipeline("p")
        .add_processor(DataFilter(name="f", config={"condition": "value is null or value < 12"}))
        .add_processor(WindowedAggregator(name="w", config=config))
    )


WINDOW_SQL = """select sensor, time_bucket(interval '1 minute', ts, timestamp '1970-01-01') as window_start,
    time_bucket(interval '1 minute', ts, timestamp '1970-01-01') + interval '1 minute' as window_end,
    coalesce(sum(value), 0) as value_sum, avg(value) as value_mean, max(value) as value_max, count(*) as "count"
    from t where value is null or value < 12 group by all"""


def test_final_windows_across_micro_batches(make_frame: Any) -> None:
    data = events()
    stream = StreamProcessor(name="s", config={"emit": "final"}, pipeline=windowed_pipeline())
    batches = [make_frame(data.slice(k, 25)) for k in range(0, data.height, 25)]
    outputs = list(stream.process_stream(batches))
    assert all(type(o) is type(batches[0]) for o in outputs)
    emitted = pl.concat([to_polars(o) for o in outputs], how="vertical_relaxed")
    assert_same(emitted, duck(WINDOW_SQL, t=data))
    # every window emitted exactly once
    assert emitted.select(["sensor", "window_start"]).is_duplicated().sum() == 0


def test_late_rows_are_dropped_and_counted() -> None:
    data = events(120)
    late = pl.DataFrame({"ts": [T0 + dt.timedelta(seconds=5)], "sensor": ["s1"], "value": [1.0]})
    stream = StreamProcessor(name="late", config={"emit": "final"}, pipeline=windowed_pipeline())
    outputs = [stream.process_batch(data.slice(0, 60)), stream.process_batch(late)]
    outputs += list(stream.process_stream([data.slice(60, 60)]))
    emitted = pl.concat([to_polars(o) for o in outputs], how="vertical_relaxed")
    assert_same(emitted, duck(WINDOW_SQL, t=data))
    assert stream.progress["late_rows"] == 1


def test_allowed_lateness_keeps_late_rows() -> None:
    data = events(120)
    late = pl.DataFrame({"ts": [data["ts"][50]], "sensor": ["s1"], "value": [1.0]})
    stream = StreamProcessor(
        name="lat", config={"emit": "final", "allowed_lateness": "5m"}, pipeline=windowed_pipeline()
    )
    outputs = [stream.process_batch(data.slice(0, 60)), stream.process_batch(late)]
    outputs += list(stream.process_stream([data.slice(60, 60)]))
    emitted = pl.concat([to_polars(o) for o in outputs], how="vertical_relaxed")
    assert_same(emitted, duck(WINDOW_SQL, t=pl.concat([data, late])))
    assert stream.progress["late_rows"] == 0


def test_updates_last_value_per_key_equals_whole_aggregate(make_frame: Any) -> None:
    data = events()
    pipeline = ProcessingPipeline("u").add_processor(
        DataAggregator(
            name="a",
            config={"group_by": "sensor", "aggregations": {"value": ["sum", "mean", "std"]}},
        )
    )
    stream = StreamProcessor(name="u", pipeline=pipeline)
    seen: dict[Any, tuple[Any, ...]] = {}
    for k in range(0, data.height, 40):
        out = to_polars(stream.process_batch(make_frame(data.slice(k, 40))))
        for row in out.rows():
            seen[row[0]] = row
    got = pl.DataFrame(
        list(seen.values()), schema=["sensor", "value_sum", "value_mean", "value_std"], orient="row"
    )
    expected = duck(
        "select sensor, coalesce(sum(value), 0) as value_sum, avg(value) as value_mean, "
        "stddev_samp(value) as value_std from t group by 1",
        t=data,
    )
    assert_same(got, expected, rel_tol=1e-7)


def test_without_aggregation_each_batch_passes_through(make_frame: Any) -> None:
    data = events(50)
    pipeline = ProcessingPipeline("f").add_processor(
        DataFilter(name="f", config={"condition": "value > 6"})
    )
    stream = StreamProcessor(name="pt", pipeline=pipeline)
    batch = make_frame(data)
    out = stream.process_batch(batch)
    assert type(out) is type(batch)
    assert_same(out, duck("select * from t where value > 6", t=data))
    assert stream.get_metadata()["details"]["progress"]["batches"] == 1


def test_process_iterable_concatenates_and_final_needs_windows() -> None:
    data = events(100)
    stream = StreamProcessor(
        name="it", config={"emit": "final", "output": "polars"}, pipeline=windowed_pipeline()
    )
    result = stream.process([data.slice(0, 50), data.slice(50, 50)])
    assert_same(result, duck(WINDOW_SQL, t=data))
    bad = StreamProcessor(
        name="bad",
        config={"emit": "final"},
        pipeline=ProcessingPipeline("x").add_processor(
            DataAggregator(name="a", config={"aggregations": {"value": "sum"}})
        ),
    )
    with pytest.raises(ConfigError, match="needs a WindowedAggregator"):
        bad.process_batch(data)
    with pytest.raises(ConfigError, match="bad duration"):
        StreamProcessor(name="x", config={"allowed_lateness": "soon"})


def test_window_updates_last_value_per_window_equals_whole(make_frame: Any) -> None:
    data = events(180)
    stream = StreamProcessor(name="wu", pipeline=windowed_pipeline())
    latest: dict[Any, tuple[Any, ...]] = {}
    columns: list[str] = []
    for k in range(0, data.height, 45):
        out = to_polars(stream.process_batch(make_frame(data.slice(k, 45))))
        columns = out.columns
        for row in out.rows():
            latest[(row[0], row[1])] = row
    assert stream.flush() is None  # updates mode has nothing left to flush
    got = pl.DataFrame(list(latest.values()), schema=columns, orient="row")
    assert_same(got, duck(WINDOW_SQL, t=data))
