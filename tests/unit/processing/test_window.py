"""WindowedAggregator (batch form) on every engine, compared with DuckDB SQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import ConfigError, UnsupportedOperationError
from data_pipeline.processing import WindowedAggregator
from tests.conftest import to_polars
from tests.unit.processing.oracle import assert_same, duck

T0 = dt.datetime(2024, 3, 1, 9, 0)
EVENTS = {
    "ts": [T0 + dt.timedelta(minutes=m) for m in (0, 7, 14, 15, 29, 31, 59, 60, 61, 125)] + [None],
    "région": ["n", "s", "n", None, "n", "s", "s", "n", None, "n", "s"],
    "amount": [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0],
}


def test_tumbling_matches_duckdb(make_frame: Any) -> None:
    config = {
        "time_column": "ts",
        "window": "1h",
        "group_by": ["région"],
        "aggregations": {"amount": ["sum", "mean", "max"], "*": "count"},
    }
    native = make_frame(EVENTS)
    result = WindowedAggregator(name="w", config=config).process(native)
    assert type(result) is type(native)
    expected = duck(
        """select "région", time_bucket(interval '1 hour', ts, timestamp '1970-01-01') as window_start,
           time_bucket(interval '1 hour', ts, timestamp '1970-01-01') + interval '1 hour' as window_end,
           coalesce(sum(amount), 0) as amount_sum, avg(amount) as amount_mean, max(amount) as amount_max,
           count(*) as "count"
           from t where ts is not null group by all order by window_start, "région" nulls last""",
        t=EVENTS,
    )
    assert_same(result, expected, ordered=True)


def test_tumbling_15m_and_duckdb_limit(make_frame: Any, engine: str) -> None:
    config = {"time_column": "ts", "window": "15m", "aggregations": {"amount": "sum"}}
    native = make_frame(EVENTS)
    agg = WindowedAggregator(name="w15", config=config)
    if engine == "duckdb":
        with pytest.raises(UnsupportedOperationError, match=r"'duckdb'.*'15m'"):
            agg.process(native)
        return
    result = agg.process(native)
    expected = duck(
        """select time_bucket(interval '15 minutes', ts, timestamp '1970-01-01') as window_start,
           time_bucket(interval '15 minutes', ts, timestamp '1970-01-01') + interval '15 minutes' as window_end,
           coalesce(sum(amount), 0) as amount from t where ts is not null group by all order by 1""",
        t=EVENTS,
    )
    assert_same(result, expected, ordered=True)


def test_sliding_matches_duckdb_range_join(make_frame: Any, engine: str) -> None:
    window, slide = ("2h", "1h") if engine == "duckdb" else ("1h", "30m")
    iw = {"2h": "2 hours", "1h": "1 hour"}[window]
    isl = {"1h": "1 hour", "30m": "30 minutes"}[slide]
    config = {
        "time_column": "ts",
        "window": window,
        "slide": slide,
        "group_by": "région",
        "aggregations": {"amount": {"agg": "sum", "as": "total"}, "*": "count"},
        "having": "count >= 1",
    }
    native = make_frame(EVENTS)
    result = WindowedAggregator(name="slide", config=config).process(native)
    assert type(result) is type(native)
    expected = duck(
        f"""with bounds as (select time_bucket(interval '{isl}', min(ts), timestamp '1970-01-01')
                 - interval '{iw}' as lo, max(ts) as hi from t),
           ws as (select unnest(generate_series(lo, hi, interval '{isl}')) as window_start from bounds)
           select t."région", ws.window_start, ws.window_start + interval '{iw}' as window_end,
                  coalesce(sum(amount), 0) as total, count(*) as "count"
           from t join ws on t.ts >= ws.window_start and t.ts < ws.window_start + interval '{iw}'
           group by all order by window_start, "région" nulls last""",
        t=EVENTS,
    )
    assert_same(result, expected, ordered=True)


def test_empty_input(make_frame: Any) -> None:
    native = make_frame(pl.DataFrame(EVENTS).clear())
    config = {"time_column": "ts", "window": "1h", "aggregations": {"amount": "sum"}}
    result = WindowedAggregator(name="e", config=config).process(native)
    assert type(result) is type(native)
    out = to_polars(result)
    assert out.height == 0
    assert out.columns == ["window_start", "window_end", "amount"]


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"time_column": "ts", "window": "1 hour", "aggregations": {"a": "sum"}}, "bad duration"),
        (
            {"time_column": "ts", "window": "1h", "slide": "25m", "aggregations": {"a": "sum"}},
            "not a multiple",
        ),
        (
            {"time_column": "ts", "window": "1h", "aggregations": {"a": "mode"}},
            "unknown aggregation 'mode'",
        ),
        (
            {"time_column": "ts", "window": "1h", "aggregations": {"a": "sum"}, "sort": ["x"]},
            "does not produce",
        ),
    ],
)
def test_bad_config(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        WindowedAggregator(name="bad", config=config)


def test_missing_time_column() -> None:
    agg = WindowedAggregator(
        name="m", config={"time_column": "when", "window": "1h", "aggregations": {"amount": "sum"}}
    )
    with pytest.raises(KeyError, match="'when' not found"):
        agg.process(pl.DataFrame(EVENTS))


def test_session_windows_match_duckdb(make_frame: Any) -> None:
    config = {
        "time_column": "ts",
        "session_gap": "10m",
        "group_by": ["région"],
        "aggregations": {"amount": ["sum", "max"], "*": "count"},
    }
    native = make_frame(EVENTS)
    result = WindowedAggregator(name="visits", config=config).process(native)
    assert type(result) is type(native)
    expected = duck(
        """with o as (select *, case when ts - lag(ts) over (partition by "région" order by ts)
                        <= interval 10 minute then 0 else 1 end as new
                      from t where ts is not null),
               s as (select *, sum(new) over (partition by "région" order by ts) as sid from o)
           select "région", min(ts) as window_start, max(ts) + interval 10 minute as window_end,
                  coalesce(sum(amount), 0) as amount_sum, max(amount) as amount_max,
                  count(*) as "count"
           from s group by "région", sid order by window_start, "région" nulls last""",
        t=EVENTS,
    )
    assert_same(result, expected, ordered=True)


def test_processing_time_windows_hold_the_rows_of_now() -> None:
    import datetime as _dt

    config = {"time": "processing", "window": "1h", "aggregations": {"amount": "sum"}}
    before = _dt.datetime.now(_dt.timezone.utc)
    result = WindowedAggregator(name="now", config=config).process(pl.DataFrame(EVENTS))
    after = _dt.datetime.now(_dt.timezone.utc)
    assert result.height == 1 and result["amount"][0] == sum(a for a in EVENTS["amount"] if a)
    start = result["window_start"][0]
    assert start <= before and after < result["window_end"][0]
    assert start.minute == start.second == 0
