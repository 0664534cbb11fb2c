"""Live micro-batches from a broker through a windowed StreamProcessor, checked against SQL.

Shared by the payload platforms' tests: the platform test publishes :func:`sensor_readings`,
then hands a source reading them to :func:`assert_windows_match_sql`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from data_pipeline.ingestion.streaming import StreamingSource
from data_pipeline.processing import ProcessingPipeline, StreamProcessor, WindowedAggregator
from tests.unit.processing.oracle import assert_same, duck


def sensor_readings(n: int = 57) -> list[dict[str, Any]]:
    """``n`` readings 13 s apart from three sensors (several per 1-minute window)."""
    t0 = dt.datetime(2024, 6, 1, 12, 0)
    return [
        {
            "ts": (t0 + dt.timedelta(seconds=13 * k)).isoformat(),
            "sensor": f"s{k % 3}",
            "value": float((k * 7) % 11),
        }
        for k in range(n)
    ]


def assert_windows_match_sql(source: StreamingSource, sent: list[dict[str, Any]]) -> None:
    """Every 1-minute window per sensor is emitted once, equal to DuckDB SQL over ``sent``.

    ``source`` must read ``sent`` in batches of 10 (``max_messages: 10``).
    """
    windows = WindowedAggregator(
        name="w",
        config={
            "time_column": "ts",
            "window": "1m",
            "group_by": "sensor",
            "aggregations": {"value": ["sum", "max"], "*": "count"},
        },
    )
    stream = StreamProcessor(
        name="live",
        config={"emit": "final"},
        pipeline=ProcessingPipeline("p").add_processor(windows),
    )
    live = (
        batch.select("ts", "sensor", "value").with_columns(pl.col("ts").str.to_datetime())
        for batch in source.batches()
    )
    outputs = list(stream.process_stream(live))
    assert stream.progress["batches"] == -(-len(sent) // 10)
    assert stream.progress["rows_in"] == len(sent)
    emitted = pl.concat([o for o in outputs if o.height], how="vertical_relaxed")
    expected = duck(
        """select sensor,
              time_bucket(interval '1 minute', ts::timestamp, timestamp '1970-01-01') as window_start,
              time_bucket(interval '1 minute', ts::timestamp, timestamp '1970-01-01')
                  + interval '1 minute' as window_end,
              sum(value) as value_sum, max(value) as value_max, count(*) as "count"
           from t group by all""",
        t=pl.DataFrame(sent),
    )
    assert_same(emitted, expected)
    assert emitted.select("sensor", "window_start").is_duplicated().sum() == 0
