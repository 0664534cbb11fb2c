"""StreamProcessor semantics: watermarks per partition, lateness, future and null times, idle
partitions, session and processing-time windows, emit final / updates, state snapshots.

Every answer is compared with the plain-Python event-at-a-time model in ``stream_oracle.py``
(or DuckDB SQL), never with the code under test.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline.core.errors import ColumnNotFoundError, ConfigError
from data_pipeline.processing import (
    DataFilter,
    ProcessingPipeline,
    StreamProcessor,
    WindowedAggregator,
)
from data_pipeline.processing.stream import LATE_REASON, REJECT_REASON, pack_state, unpack_state
from tests.conftest import to_polars
from tests.unit.processing.oracle import assert_same, duck
from tests.unit.processing.stream_oracle import Rules, fates, windows

T0 = dt.datetime(2024, 6, 1, 12, 0)
NOW = dt.datetime(2024, 6, 1, 13, 0, tzinfo=dt.timezone.utc)  # the injected processing clock
AGGS = {"v": ["sum", "max"], "*": "count"}

KINDS: dict[str, dict[str, Any]] = {
    "tumbling": {"window": "1m"},
    "sliding": {"window": "1m", "slide": "20s"},
    "session": {"session_gap": "30s"},
}


def rules_of(kind: str, *, lateness: int = 0, partitioned: bool = False, **extra: Any) -> Rules:
    shapes = {
        "tumbling": {"window": dt.timedelta(minutes=1)},
        "sliding": {"window": dt.timedelta(minutes=1), "slide": dt.timedelta(seconds=20)},
        "session": {"gap": dt.timedelta(seconds=30)},
    }
    return Rules(
        kind=kind,
        lateness=dt.timedelta(seconds=lateness),
        partitioned=partitioned,
        **shapes[kind],
        **extra,
    )


def stream_of(
    kind: str,
    *,
    emit: str = "final",
    lateness: int = 0,
    partitioned: bool = False,
    clock: Callable[[], dt.datetime] | None = None,
    pre_filter: bool = False,
    **config: Any,
) -> StreamProcessor:
    pipeline = ProcessingPipeline("p")
    if pre_filter:
        pipeline.add_processor(DataFilter(name="f", config={"condition": "v is null or v < 100"}))
    pipeline.add_processor(
        WindowedAggregator(
            name="w",
            config={"time_column": "ts", "group_by": "key", "aggregations": AGGS, **KINDS[kind]},
        )
    )
    stream_config = {"emit": emit, "allowed_lateness": f"{lateness}s", "output": "polars", **config}
    if partitioned:
        stream_config["partition_column"] = "part"
    return StreamProcessor(
        name="s", config=stream_config, pipeline=pipeline, clock=clock or (lambda: NOW)
    )


def event(second: int | None, key: str = "a", part: int = 0, v: int = 1) -> dict[str, Any]:
    ts = None if second is None else T0 + dt.timedelta(seconds=second)
    return {"ts": ts, "key": key, "part": part, "v": v}


def frame(events: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(
        events,
        schema={"ts": pl.Datetime("us"), "key": pl.String, "part": pl.Int64, "v": pl.Int64},
        orient="row",
    )


def run(stream: StreamProcessor, batches: list[list[dict[str, Any]]]) -> pl.DataFrame:
    """Every row emitted over the whole stream (final windows), as the oracle's columns."""
    outputs = [to_polars(o) for o in stream.process_stream(frame(b) for b in batches)]
    return emitted(outputs)


def emitted(outputs: list[pl.DataFrame]) -> pl.DataFrame:
    rows = [o for o in outputs if o.height]
    if not rows:
        return windows([], rules_of("tumbling"))
    return pl.concat(rows, how="vertical_relaxed").sort("window_start", "key")


def latest_per_window(outputs: list[pl.DataFrame]) -> pl.DataFrame:
    """``emit: updates``: the last row emitted for each (key, window start)."""
    rows = [o for o in outputs if o.height]
    if not rows:
        return windows([], rules_of("tumbling"))
    every = pl.concat(rows, how="vertical_relaxed")
    return every.unique(["key", "window_start"], keep="last", maintain_order=True).sort(
        "window_start", "key"
    )


def same(got: pl.DataFrame, expected: pl.DataFrame) -> None:
    assert_same(got.select(expected.columns), expected)


# -- out of order, late, future-stamped and null-time events ------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_out_of_order_and_late_events_against_the_oracle(kind: str) -> None:
    events = [
        event(0),
        event(50, "b"),
        event(10, "a", v=2),  # out of order, on time
        event(75, v=3),
        event(5, v=4),  # 5: its window [0, 60) closed at 75 -> late
        event(130, "b", v=5),
        event(62, v=6),  # 62: behind, window [60, 120) still open
        event(300, v=7),
        event(125, "b", v=8),  # 125 after 300: late
    ]
    rules = rules_of(kind)
    stream = stream_of(kind)
    got = run(stream, [events[:3], events[3:6], events[6:]])
    same(got, windows(events, rules))
    expected_fates = fates(events, rules)
    assert stream.progress["late_rows"] == expected_fates.count("late") > 0
    # every window emitted exactly once
    assert got.select("key", "window_start").is_duplicated().sum() == 0


def test_late_rows_go_to_the_late_output_with_a_reason() -> None:
    stream = stream_of("tumbling")
    stream.process_batch(frame([event(0), event(70)]))
    stream.process_batch(frame([event(3, v=9), event(71)]))
    batch = stream.last_batch
    assert batch is not None
    late = batch.late
    assert late.height == 1 and late["v"].to_list() == [9]
    assert late[LATE_REASON][0].startswith("late:")
    assert batch.metrics["late"] == 1 and batch.metrics["accepted"] == 1
    assert batch.metrics["events_in"] == 2
    assert stream.get_metadata()["details"]["batch"]["late"] == 1


def test_allowed_lateness_keeps_late_rows_in_their_window() -> None:
    events = [event(0), event(70), event(3, v=9), event(130), event(4, v=100)]
    rules = rules_of("tumbling", lateness=60)
    got = run(stream_of("tumbling", lateness=60), [events[:2], events[2:]])
    same(got, windows(events, rules))
    assert fates(events, rules) == ["accepted", "accepted", "accepted", "accepted", "late"]


def test_null_event_time_is_rejected_with_a_reason_and_counted() -> None:
    stream = stream_of("tumbling", emit="updates")
    stream.process_batch(frame([event(0), event(None, v=5), event(10), event(None, v=6)]))
    batch = stream.last_batch
    assert batch is not None
    assert batch.rejected["v"].to_list() == [5, 6]
    assert set(batch.rejected[REJECT_REASON]) == {"null event time in 'ts'"}
    m = batch.metrics
    assert (m["events_in"], m["accepted"], m["late"], m["rejected"]) == (4, 2, 0, 2)
    assert stream.progress["rejected_rows"] == 2
    assert stream.last_rejects is batch.rejected
    assert stream.get_metadata()["rows_rejected"] == 2


def test_a_future_stamped_event_does_not_move_the_watermark() -> None:
    far = {"ts": dt.datetime(2099, 1, 1), "key": "a", "part": 0, "v": 50}
    events = [event(0), event(10), far, event(20, v=2), event(65), event(30, v=3)]
    # without a bound, the 2099 event closes every window: the rest is late
    unbounded = stream_of("tumbling")
    run(unbounded, [events[:3], events[3:]])
    assert unbounded.progress["late_rows"] == 3
    # with a bound against the processing clock, it goes to the late output as "future"
    bounded = stream_of("tumbling", max_out_of_orderness="1h")
    got = run(bounded, [events[:3], events[3:]])
    rules = rules_of("tumbling", future=dt.timedelta(hours=1), now=NOW.replace(tzinfo=None))
    same(got, windows(events, rules))
    assert fates(events, rules).count("future") == 1
    assert fates(events, rules).count("late") == 1  # the 30 after the 65
    assert bounded.progress["late_rows"] == 2
    first = stream_of("tumbling", max_out_of_orderness="1h")
    first.process_batch(frame(events[:3]))
    assert first.last_batch is not None
    assert first.last_batch.late[LATE_REASON].to_list() == [
        "future: more than 1h ahead of the processing-time clock"
    ]
    assert first.watermark == T0 + dt.timedelta(seconds=10)


def test_lazy_micro_batches_are_counted_per_event() -> None:
    stream = stream_of("tumbling", pre_filter=True)
    events = [event(0), event(70), event(3, v=9), event(None), event(5, v=200)]
    stream.process_batch(frame(events[:2]).lazy())
    stream.process_batch(frame(events[2:]).lazy())
    assert stream.progress["rows_in"] == 5  # counted before the filter too
    assert stream.progress["late_rows"] == 1
    assert stream.progress["rejected_rows"] == 1
    assert stream.last_batch is not None
    assert stream.last_batch.metrics["events_in"] == 2  # the filter dropped v=200


# -- partitions and idleness ---------------------------------------------------------------


def test_the_slowest_partition_drives_the_watermark() -> None:
    events = [
        event(0, part=0),
        event(5, part=1),
        event(200, part=0, v=2),  # partition 0 runs ahead: the watermark stays at 5
        event(30, part=1, v=3),  # still on time: partition 1 holds the window open
        event(70, part=1, v=4),  # now the watermark is 70: [0, 60) closes
        event(40, part=0, v=5),  # late
    ]
    rules = rules_of("tumbling", partitioned=True)
    stream = stream_of("tumbling", partitioned=True)
    got = run(stream, [events[:3], events[3:]])
    same(got, windows(events, rules))
    assert fates(events, rules) == ["accepted"] * 5 + ["late"]
    # the single-watermark variant would have dropped the 30 of partition 1
    assert fates(events, rules_of("tumbling"))[3] == "late"
    assert stream.last_batch is not None
    marks = stream.last_batch.metrics["partition_watermarks"]
    assert marks == {"0": T0 + dt.timedelta(seconds=200), "1": T0 + dt.timedelta(seconds=70)}


def test_an_idle_partition_stops_holding_windows_open() -> None:
    clock = {"now": NOW}
    stream = stream_of("tumbling", partitioned=True, idle_timeout="30s", clock=lambda: clock["now"])
    quiet = stream_of("tumbling", partitioned=True, clock=lambda: clock["now"])
    first = frame([event(0, part=0), event(0, part=1), event(130, part=0)])
    later = frame([event(190, part=0, v=2)])
    for s in (stream, quiet):
        s.process_batch(first)
    clock["now"] = NOW + dt.timedelta(seconds=10)
    assert stream.process_batch(later).height == 0  # partition 1 is not idle yet
    assert quiet.process_batch(later).height == 0
    clock["now"] = NOW + dt.timedelta(seconds=45)  # partition 1 quiet for 45 s > 30 s
    now = frame([event(195, part=0)])
    out = stream.process_batch(now)
    assert out.select("key", "window_start", "v_sum").rows() == [
        ("a", T0, 2),
        ("a", T0 + dt.timedelta(minutes=2), 1),
    ]
    assert stream.last_batch is not None
    assert stream.last_batch.metrics["idle_partitions"] == ["1"]
    assert quiet.process_batch(now).height == 0  # without idle_timeout: held open
    # the partition comes back: it holds the watermark again, behind rows are late
    stream.process_batch(frame([event(20, part=1, v=9), event(195, part=1)]))
    assert stream.last_batch is not None
    assert stream.last_batch.metrics["late"] == 1
    assert stream.last_batch.metrics["idle_partitions"] == []


def test_a_missing_partition_column_is_named() -> None:
    stream = stream_of("tumbling", partition_column="_partition")
    with pytest.raises(ColumnNotFoundError, match="_partition"):
        stream.process_batch(frame([event(0)]))


# -- sessions, processing time, emit ----------------------------------------------------------


def test_session_windows_match_duckdb_gaps_and_islands() -> None:
    events = [
        event(s, k)
        for s, k in [
            (0, "a"),
            (20, "a"),
            (45, "a"),
            (100, "a"),
            (0, "b"),
            (31, "b"),
            (61, "b"),
            (62, "b"),
            (200, "a"),
        ]
    ]
    got = run(stream_of("session", lateness=300), [events[:4], events[4:7], events[7:]])
    expected = duck(
        """with o as (select *, case when ts - lag(ts) over (partition by key order by ts)
                       <= interval 30 second then 0 else 1 end as new from t),
               s as (select *, sum(new) over (partition by key order by ts) as sid from o)
           select key, min(ts) as window_start, max(ts) + interval 30 second as window_end,
                  sum(v) as v_sum, max(v) as v_max, count(*) as "count"
           from s group by key, sid order by window_start, key""",
        t=frame(events),
    )
    same(got, expected)


def test_sessions_merge_when_an_event_bridges_them() -> None:
    stream = stream_of("session", emit="updates", lateness=120)
    stream.process_batch(frame([event(0), event(50)]))  # two sessions: 0 and 50
    assert stream.get_state() is not None and stream.get_state().height == 2
    out = stream.process_batch(frame([event(25, v=5)]))  # within 30 s of both: one session
    assert out.select("window_start", "window_end", "v_sum", "count").rows() == [
        (T0, T0 + dt.timedelta(seconds=80), 7, 3)
    ]
    assert stream.get_state().height == 1


def test_processing_time_windows_close_with_the_clock() -> None:
    clock = {"now": dt.datetime(2024, 6, 1, 12, 0, 5, tzinfo=dt.timezone.utc)}
    steps = ProcessingPipeline("p").add_processor(
        WindowedAggregator(
            name="w",
            config={"time": "processing", "window": "10s", "aggregations": {"v": "sum"}},
        )
    )
    stream = StreamProcessor(
        name="pt",
        config={"emit": "final", "output": "polars"},
        pipeline=steps,
        clock=lambda: clock["now"],
    )
    assert stream.process_batch(pl.DataFrame({"v": [1, 2]})).height == 0
    clock["now"] += dt.timedelta(seconds=3)
    assert stream.process_batch(pl.DataFrame({"v": [3]})).height == 0
    clock["now"] += dt.timedelta(seconds=4)  # 12:00:12: [12:00:00, 12:00:10) closed
    out = stream.process_batch(pl.DataFrame({"v": [10]}))
    start = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert out.rows() == [(start, start + dt.timedelta(seconds=10), 6)]
    clock["now"] += dt.timedelta(seconds=30)
    out = stream.process_batch(pl.DataFrame({"v": []}, schema={"v": pl.Int64}))
    assert out["v"].to_list() == [10]  # an empty batch moves processing time on
    assert stream.progress["late_rows"] == 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_emit_updates_sends_only_changed_windows(kind: str) -> None:
    events = [event(0), event(10, "b"), event(70, v=2), event(75, "b", v=3), event(140, v=4)]
    rules = rules_of(kind, lateness=60)
    stream = stream_of(kind, emit="updates", lateness=60)
    outputs = [to_polars(stream.process_batch(frame([e]))) for e in events]
    # each batch sends only the windows the event changed
    expected_changed = {
        "tumbling": [1, 1, 1, 1, 1],
        "sliding": [3, 3, 3, 3, 3],
        "session": [1, 1, 1, 1, 1],
    }[kind]
    assert [o.height for o in outputs] == expected_changed
    same(latest_per_window(outputs), windows(events, rules))
    assert stream.flush() is None


@pytest.mark.parametrize("kind", list(KINDS))
def test_closed_windows_leave_the_state(kind: str) -> None:
    stream = stream_of(kind, emit="updates")
    sizes = []
    for minute in range(30):
        stream.process_batch(frame([event(60 * minute + s, k) for s in (0, 20, 40) for k in "ab"]))
        sizes.append(stream.last_batch.metrics["state_rows"] if stream.last_batch else -1)
    assert max(sizes[5:]) == min(sizes[5:])  # bounded: it does not grow with the stream
    assert max(sizes) <= 8


def test_new_settings_are_validated() -> None:
    """(emit: final without windows: test_stream.py.)"""
    for key in ("allowed_lateness", "max_out_of_orderness", "idle_timeout"):
        with pytest.raises(ConfigError, match="bad duration"):
            StreamProcessor(name="x", config={key: "soon"})
    with pytest.raises(ConfigError, match="session_gap"):
        WindowedAggregator(name="w", config={"time_column": "ts", "aggregations": {"v": "sum"}})
    with pytest.raises(ConfigError, match="time_column"):
        WindowedAggregator(
            name="w",
            config={
                "time": "processing",
                "time_column": "ts",
                "window": "1m",
                "aggregations": {"v": "sum"},
            },
        )


# -- every engine ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_engine_gives_the_oracle_answer(kind: str, make_frame: Any) -> None:
    events = [
        event(0),
        event(50, "b", part=1),
        event(None, v=3),
        event(10, v=2),
        event(75, v=3),
        event(5, v=4),
        event(130, "b", part=1, v=5),
        event(62, v=6),
        event(300, part=1, v=7),
        event(125, "b", v=8),
        event(None, "b"),
        event(20, "b", v=9),
    ]
    rules = rules_of(kind, partitioned=True)
    stream = stream_of(kind, partitioned=True)
    batches = [events[:4], events[4:8], events[8:]]
    outputs = [to_polars(stream.process_batch(make_frame(frame(b)))) for b in batches]
    final = stream.flush()
    outputs.append(to_polars(final) if final is not None else pl.DataFrame())
    same(emitted(outputs), windows(events, rules))
    expected = fates(events, rules)
    assert stream.progress["late_rows"] == expected.count("late")
    assert stream.progress["rejected_rows"] == expected.count("rejected") == 2
    assert stream.progress["rows_in"] == len(events)


# -- state snapshot and restore ---------------------------------------------------------------


def long_stream() -> list[list[dict[str, Any]]]:
    """Two partitions, three keys, out of order, some late, some null; seven batches."""
    batches = []
    for b in range(7):
        rows = []
        for i in range(12):
            second = 40 * b + (i * 7) % 45 - (25 if i % 5 == 0 else 0)
            rows.append(event(second, "abc"[i % 3], part=i % 2, v=b * 12 + i))
        rows.append(event(None, "a", v=-1))
        batches.append(rows)
    return batches


def run_with_restart(
    kind: str, at: int, tamper: Callable[[bytes], bytes] | None = None, **options: Any
) -> list[pl.DataFrame]:
    """The outputs of the stream, restarted from a snapshot (through bytes) after ``at``."""
    batches = long_stream()
    first = stream_of(kind, partitioned=True, **options)
    outputs = [to_polars(first.process_batch(frame(b))) for b in batches[:at]]
    saved = first.state_snapshot()
    if tamper is not None:
        saved = tamper(saved)
    second = stream_of(kind, partitioned=True, **options)
    second.restore_state(saved)
    outputs += [to_polars(second.process_batch(frame(b))) for b in batches[at:]]
    final = second.flush()
    if final is not None:
        outputs.append(to_polars(final))
    outputs.append(pl.DataFrame({"late": [second.progress["late_rows"]]}))
    return outputs


@pytest.mark.parametrize(
    ("kind", "emit"),
    [("tumbling", "final"), ("sliding", "final"), ("session", "final"), ("sliding", "updates")],
)
def test_restore_mid_stream_gives_exactly_the_uninterrupted_result(kind: str, emit: str) -> None:
    uninterrupted = run_with_restart(kind, 7, emit=emit, lateness=10)
    for at in (1, 3, 5):
        restarted = run_with_restart(kind, at, emit=emit, lateness=10)
        assert len(restarted) == len(uninterrupted)
        for got, expected in zip(restarted, uninterrupted, strict=True):
            assert got.equals(expected), (at, got, expected)
    events = [e for b in long_stream() for e in b]
    rules = rules_of(kind, lateness=10, partitioned=True)
    if emit == "final":
        same(emitted(uninterrupted[:-1]), windows(events, rules))
    else:
        same(latest_per_window(uninterrupted[:-1]), windows(events, rules))
    assert uninterrupted[-1]["late"][0] == fates(events, rules).count("late") > 0


def _edit(snapshot: bytes, change: Callable[[dict[str, Any], dict[str, Any]], None]) -> bytes:
    meta, tables = unpack_state(snapshot)
    change(meta, tables)
    return pack_state(meta, tables)


def test_a_snapshot_without_the_emitted_marker_is_caught() -> None:
    """The broken variant: a snapshot that forgets what was emitted re-emits windows."""
    uninterrupted = run_with_restart("sliding", 7)

    def forget(meta: dict[str, Any], tables: dict[str, Any]) -> None:
        meta["emitted_until"] = None

    broken = run_with_restart("sliding", 3, tamper=lambda b: _edit(b, forget))
    assert emitted(broken[:-1]).select("key", "window_start").is_duplicated().any()
    assert not emitted(broken[:-1]).equals(emitted(uninterrupted[:-1]))


def test_a_snapshot_without_one_partition_watermark_is_caught() -> None:
    """The broken variant: a snapshot that loses partition 1's watermark changes the answer."""
    uninterrupted = run_with_restart("tumbling", 7)

    def lose(meta: dict[str, Any], tables: dict[str, Any]) -> None:
        parts = tables["partitions"]
        tables["partitions"] = parts.filter(pl.col("partition") != 1)

    broken = run_with_restart("tumbling", 3, tamper=lambda b: _edit(b, lose))
    assert not emitted(broken[:-1]).equals(emitted(uninterrupted[:-1])) or not broken[-1].equals(
        uninterrupted[-1]
    )


def test_restore_refuses_a_snapshot_of_another_pipeline() -> None:
    stream = stream_of("tumbling")
    stream.process_batch(frame([event(0)]))
    saved = stream.state_snapshot()
    other = stream_of("sliding")
    with pytest.raises(ConfigError, match="another aggregation"):
        other.restore_state(saved)
    with pytest.raises(ConfigError, match="not a stream state snapshot"):
        other.restore_state(b"garbage")
    fresh = stream_of("tumbling")
    fresh.restore_state(None)
    assert fresh.get_state() is None and fresh.progress["batches"] == 0


@pytest.mark.parametrize(
    ("kind", "zone"), [("tumbling", None), ("tumbling", "Asia/Kolkata"), ("session", None)]
)
def test_rows_a_microsecond_either_side_of_the_late_line(kind: str, zone: str | None) -> None:
    """The watermark reaches 12:02:00; with no lateness a 1-minute pane [12:01, 12:02) has
    closed, so its last microsecond is late and 12:02:00 is not; a session row is late when
    its time is before the watermark. (The stream judges only rows older than the watermark
    minus the lateness: a bound one microsecond too tight loses the first of these.)"""
    edge = dt.timedelta(seconds=120)
    tiny = dt.timedelta(microseconds=1)
    times = [T0, T0 + edge, T0 + edge - tiny, T0 + edge, T0 + dt.timedelta(seconds=60)]
    data = pl.DataFrame(
        {"ts": times, "key": ["a"] * 5, "part": [0] * 5, "v": [1, 2, 3, 4, 5]},
        schema={"ts": pl.Datetime("us"), "key": pl.String, "part": pl.Int64, "v": pl.Int64},
    )
    if zone is not None:
        data = data.with_columns(pl.col("ts").dt.replace_time_zone(zone))
    stream = stream_of(kind)
    late: list[int] = []
    for i in range(data.height):  # one row a batch: each row meets the watermark before it
        stream.process_batch(data.slice(i, 1))
        late += stream.last_batch.late["v"].to_list()
    # 12:01:59.999999 and 12:01:00 are in the closed pane [12:01, 12:02) (a session: before
    # 12:02:00); 12:02:00 itself is on time
    assert late == [3, 5]


# -- the answer does not depend on how the events are cut into batches ----------------------

EVENTS = st.lists(
    st.builds(
        event,
        st.one_of(st.none(), st.integers(0, 240)) | st.integers(0, 240),
        st.sampled_from(["a", "b"]),
        st.integers(0, 2),
        st.integers(-5, 5),
    ),
    max_size=30,
)
SETUPS = st.sampled_from(
    [
        ("tumbling", "final", 0, False),
        ("tumbling", "updates", 20, True),
        ("sliding", "final", 0, True),
        ("sliding", "updates", 30, False),
        ("session", "final", 0, False),
        ("session", "final", 20, True),
        ("session", "updates", 0, True),
    ]
)


@settings(max_examples=60)
@given(events=EVENTS, cuts=st.lists(st.integers(0, 30), max_size=6), setup=SETUPS)
def test_final_windows_do_not_depend_on_batch_cuts(
    events: list[dict[str, Any]], cuts: list[int], setup: tuple[str, str, int, bool]
) -> None:
    kind, emit, lateness, partitioned = setup
    points = sorted({c for c in cuts if 0 < c < len(events)})
    bounds = [0, *points, len(events)]
    batches = [events[a:b] for a, b in itertools.pairwise(bounds)]
    stream = stream_of(kind, emit=emit, lateness=lateness, partitioned=partitioned)
    outputs = [to_polars(o) for o in stream.process_stream(frame(b) for b in batches)]
    rules = rules_of(kind, lateness=lateness, partitioned=partitioned)
    got = emitted(outputs) if emit == "final" else latest_per_window(outputs)
    same(got, windows(events, rules))
    if emit == "final":
        assert got.select("key", "window_start").is_duplicated().sum() == 0
    expected = fates(events, rules)
    assert stream.progress["late_rows"] == expected.count("late")
    assert stream.progress["rejected_rows"] == expected.count("rejected")


# -- the two ways of combining panes into sliding windows -------------------------------------


SIMPLE_AGGS: dict[str, Any] = {"v": ["sum", "mean", "min", "max", "count"], "*": "count"}
COMPOSITE_AGGS: dict[str, Any] = {
    "v": ["std", {"agg": "first", "as": "v_first"}, {"agg": "last", "as": "v_last"}, "sum"],
}


@pytest.mark.parametrize(
    ("aggregations", "path"),
    [(SIMPLE_AGGS, "numpy"), (SIMPLE_AGGS, "rolling"), (COMPOSITE_AGGS, "merge")],
    ids=["simple-numpy", "simple-rolling", "std-first-last-merge"],
)
@pytest.mark.parametrize(("window", "slide"), [("1m", "20s"), ("10m", "10s")])
@pytest.mark.parametrize("arrival", ["shuffled", "in-time-order"])
def test_every_aggregation_merges_exactly_on_each_combine_path(
    aggregations: dict[str, Any],
    path: str,
    window: str,
    slide: str,
    arrival: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sliding windows of every decomposable aggregation (nulls, a null group, values near
    1.7e9) equal DuckDB's, through each way of combining panes: NumPy blocks, Polars rolling
    windows, PartialAggregation's merge (std, first, last). Events shuffled in time close many
    windows at once; events in time order, in small batches, close about one window start per
    batch (the NumPy path's whole-block case)."""
    import random

    from data_pipeline.processing._window_state import WindowState

    used: list[str] = []
    for method, label in [
        ("_combine_dense", "numpy"),
        ("_combine_rolling", "rolling"),
        ("_combine_by_merge", "merge"),
    ]:
        original = getattr(WindowState, method)

        def spy(self: Any, windows: Any, _original: Any = original, _label: str = label) -> Any:
            if _label == "numpy" and path != "numpy":
                return None
            result = _original(self, windows)
            if result is not None:
                used.append(_label)
            return result

        monkeypatch.setattr(WindowState, method, spy)
    rng = random.Random(11)
    rows = []
    for i in range(400):
        value = None if i % 13 == 0 else rng.randint(-50, 50) + 1_700_000_000.0
        rows.append(
            {
                "ts": T0 + dt.timedelta(seconds=rng.randint(0, 1500)),
                "key": None if i % 17 == 0 else "abc"[i % 3],
                "v": value,
                "seq": i,
            }
        )
    data = pl.DataFrame(rows).sort("seq")
    size, lateness = 70, "1h"
    if arrival == "in-time-order":  # windows close as the watermark passes them
        data = data.sort("ts", "seq").with_columns(pl.int_range(pl.len()).alias("seq"))
        size, lateness = 5, "0s"
    steps = ProcessingPipeline("p").add_processor(
        WindowedAggregator(
            name="w",
            config={
                "time_column": "ts",
                "window": window,
                "slide": slide,
                "group_by": "key",
                "aggregations": aggregations,
            },
        )
    )
    stream = StreamProcessor(
        name="all",
        config={"emit": "final", "allowed_lateness": lateness, "output": "polars"},
        pipeline=steps,
        clock=lambda: NOW,
    )
    outputs = list(
        stream.process_stream(data.drop("seq").slice(i, size) for i in range(0, 400, size))
    )
    got = pl.concat([o for o in outputs if o.height], how="vertical_relaxed")
    width = {"1m": 60, "10m": 600}[window]
    sql = {
        "sum": "coalesce(sum(v), 0) as v_sum",
        "mean": "avg(v) as v_mean",
        "min": "min(v) as v_min",
        "max": "max(v) as v_max",
        "count": "count(v) as v_count",
        "std": "stddev_samp(v) as v_std",
        "v_first": "first(v order by seq) as v_first",
        "v_last": "last(v order by seq) as v_last",
    }
    names = [a if isinstance(a, str) else a["as"] for a in aggregations["v"]]
    columns = ", ".join(
        [sql[n] for n in names] + (['count(*) as "count"'] if "*" in aggregations else [])
    )
    step = {"20s": 20, "10s": 10}[slide]
    expected = duck(
        f"""with bounds as (select time_bucket(interval '{step} seconds', min(ts),
                                   timestamp '1970-01-01') - interval '{width} seconds' as lo,
                                   max(ts) as hi from t),
                 ws as (select unnest(generate_series(lo, hi, interval '{step} seconds')) as s
                        from bounds)
            select t.key, ws.s as window_start, ws.s + interval '{width} seconds' as window_end,
                   {columns}
            from t join ws on t.ts >= ws.s and t.ts < ws.s + interval '{width} seconds'
            group by all""",
        t=data,
    )
    assert stream.progress["late_rows"] == 0
    assert set(used) == {path}
    # std of values near 1.7e9 merged from partials: 1e-8 relative is the float64 floor there
    assert_same(got, expected, rel_tol=1e-7 if path == "merge" else 1e-12)


# -- the two ways of merging a batch into the open panes -------------------------------------

_BIG = 2**63 - 1


def _hostile_rows(values: str) -> pl.DataFrame:
    """400 events over 10 minutes with nulls (values and a group key); ``extremes`` adds the
    infinities and the Int64 / Int32 extremes (the values a NumPy grid uses as fills), ``nan``
    NaN."""
    import random

    rng = random.Random(5)
    floats: list[Any] = [None, 0.5, -2.25, 1e300, -1e-300]
    wide: list[Any] = [None, 7, -3, 2**40]
    narrow: list[Any] = [None, 5, -9]
    if values == "extremes":
        floats += [float("inf"), float("-inf")]
        wide += [_BIG, -_BIG - 1]
        narrow += [2**31 - 1, -(2**31)]
    if values == "nan":  # often enough that a batch's partial of some window is all NaN
        floats += [float("nan")] * len(floats)
    return pl.DataFrame(
        {
            "ts": [T0 + dt.timedelta(seconds=rng.randint(0, 600)) for _ in range(400)],
            "key": [None if i % 17 == 0 else "abc"[i % 3] for i in range(400)],
            "f": [rng.choice(floats) for _ in range(400)],
            "w": [rng.choice(wide) for _ in range(400)],
            "n": [rng.choice(narrow) for _ in range(400)],
            "d": [rng.choice([None, T0, T0 - dt.timedelta(days=400)]) for _ in range(400)],
        },
        schema={
            "ts": pl.Datetime("us"),
            "key": pl.String,
            "f": pl.Float64,
            "w": pl.Int64,
            "n": pl.Int32,
            "d": pl.Datetime("us"),
        },
    )


def _final_windows(config: dict[str, Any]) -> StreamProcessor:
    """A stream of one WindowedAggregator (``config``), ``emit: final``, an hour of lateness."""
    return StreamProcessor(
        name="w",
        config={"emit": "final", "allowed_lateness": "1h", "output": "polars"},
        pipeline=ProcessingPipeline("p").add_processor(WindowedAggregator(name="w", config=config)),
        clock=lambda: NOW,
    )


@pytest.mark.parametrize("values", ["plain", "extremes", "nan"])
@pytest.mark.parametrize("path", ["numpy", "polars"])
@pytest.mark.parametrize("slide", [None, "10s"], ids=["tumbling", "sliding"])
def test_a_batch_merges_into_the_open_panes_exactly_on_each_path(
    values: str, path: str, slide: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 s windows (tumbling, or sliding by 10 s) of sums, minima, maxima and counts over
    shuffled events (so every batch merges into panes already open) equal DuckDB's, with the
    NumPy grid merge and with the Polars group-by merge (sliding windows are then combined
    from the panes on the grid too). Minima and maxima ignore NaN unless every value is NaN
    (docs/semantics.md); a value equal to a grid fill (an infinity, an integer extreme) must
    come out as itself, never as null."""
    from data_pipeline.processing._window_state import WindowState

    used: list[str] = []
    original = WindowState._merge_dense

    def spy(self: Any, tail: Any, partial: Any) -> Any:
        result = None if path == "polars" else original(self, tail, partial)
        used.append("polars" if result is None else "numpy")
        return result

    monkeypatch.setattr(WindowState, "_merge_dense", spy)
    data = _hostile_rows(values)
    aggregations = {
        "f": ["sum", "min", "max", "count"],
        "w": ["min", "max"],
        "n": ["min", "max"],
        "d": ["min", "max"],
        "*": "count",
    }
    config: dict[str, Any] = {
        "time_column": "ts",
        "window": "30s",
        "group_by": "key",
        "aggregations": aggregations,
        **({"slide": slide} if slide else {}),
    }
    stream = _final_windows(config)
    outputs = list(stream.process_stream(data.slice(i, 37) for i in range(0, 400, 37)))
    got = pl.concat([o for o in outputs if o.height], how="vertical_relaxed")

    def extreme(how: str, column: str) -> str:
        if column != "f":
            return f"{how}({column}) as {column}_{how}"
        # NaN is ignored unless every value is NaN (DuckDB orders it above every number)
        return f"coalesce({how}(f) filter (where not isnan(f)), {how}(f)) as f_{how}"

    step = 10 if slide else 30
    expected = duck(
        f"""with ws as (select unnest(generate_series(timestamp '2024-06-01 11:59:30',
                                                      timestamp '2024-06-01 12:10:30',
                                                      interval '{step} seconds')) as s)
            select key, ws.s as window_start, ws.s + interval '30 seconds' as window_end,
                   coalesce(sum(f), 0) as f_sum, {extreme("min", "f")}, {extreme("max", "f")},
                   count(f) as f_count, {extreme("min", "w")}, {extreme("max", "w")},
                   {extreme("min", "n")}, {extreme("max", "n")}, {extreme("min", "d")},
                   {extreme("max", "d")}, count(*) as "count"
            from t join ws on t.ts >= ws.s and t.ts < ws.s + interval '30 seconds'
            group by all""",
        t=data,
    )
    assert stream.progress["late_rows"] == 0
    assert_same(got, expected)
    if path == "polars":
        assert set(used) == {"polars"}
    elif values == "plain":
        assert set(used) == {"numpy"}  # the grid takes every batch of plain values
    else:
        assert "polars" in used  # a fill-valued extreme or NaN sends a batch to Polars


@pytest.mark.parametrize(
    ("unit", "zone"), [("ns", None), ("ms", None), ("us", "UTC"), ("ns", "Asia/Kolkata")]
)
@pytest.mark.parametrize("slide", [None, "20s"], ids=["tumbling", "sliding"])
def test_windows_in_every_time_unit_and_zone(
    unit: str, zone: str | None, slide: str | None
) -> None:
    """Windows keep the time column's unit (nanoseconds survive) and zone: sums, minima,
    counts and the first / last timestamp of each window equal a plain-Python count over the
    physical integers (1-minute windows: +05:30 cuts them where UTC does)."""
    import random

    rng = random.Random(3)
    start_ns = 1_717_243_200_000_000_000  # 2024-06-01 12:00 UTC
    divide = {"ns": 1, "us": 1_000, "ms": 1_000_000}[unit]
    physical = [
        (start_ns + rng.randint(0, 600 * 10**9) + rng.randint(0, 999)) // divide for _ in range(300)
    ]
    keys = [rng.choice("ab") for _ in range(300)]
    values = [rng.randint(1, 9) for _ in range(300)]
    times = pl.Series("ts", physical, dtype=pl.Int64).cast(pl.Datetime(unit))
    if zone is not None:
        times = times.dt.replace_time_zone("UTC").dt.convert_time_zone(zone)
    data = pl.DataFrame({"ts": times, "key": keys, "v": values})
    config: dict[str, Any] = {
        "time_column": "ts",
        "window": "1m",
        "group_by": "key",
        "aggregations": {"v": ["sum", "min"], "ts": ["min", "max"], "*": "count"},
    }
    if slide:
        config["slide"] = slide
    stream = _final_windows(config)
    outputs = stream.process_stream(data.slice(i, 23) for i in range(0, 300, 23))
    got = pl.concat([o for o in outputs if o.height])
    assert got.schema["window_start"] == data.schema["ts"] == got.schema["ts_min"]
    width = 60 * 10**9 // divide
    step = (20 if slide else 60) * 10**9 // divide
    expected: dict[tuple[str, int], list[int]] = {}
    for t, key, v in zip(physical, keys, values, strict=True):
        for begin in range(t - t % step - width + step, t + 1, step):
            entry = expected.setdefault((key, begin), [0, 10, 0, t, t])
            entry[0] += v
            entry[1] = min(entry[1], v)
            entry[2] += 1
            entry[3] = min(entry[3], t)
            entry[4] = max(entry[4], t)
    rows = got.with_columns(pl.col("window_start", "ts_min", "ts_max").to_physical())
    seen = {
        (r["key"], r["window_start"]): [
            r["v_sum"],
            r["v_min"],
            r["count"],
            r["ts_min"],
            r["ts_max"],
        ]
        for r in rows.to_dicts()
    }
    assert seen == expected


def test_a_batch_level_watermark_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broken variant of the per-event watermark: judging a whole micro-batch against the
    watermark it started with makes the answer depend on the cuts; the oracle check sees it."""
    from data_pipeline.processing._watermark import Watermarks

    events = [event(0), event(70), event(5, v=9), event(130), event(10, v=7)]
    rules = rules_of("tumbling")
    expected = windows(events, rules)
    same(run(stream_of("tumbling"), [events]), expected)  # the real one: one batch or five
    same(run(stream_of("tumbling"), [[e] for e in events]), expected)
    original = Watermarks.before_each

    def batch_level(self: Watermarks, ticks: Any, parts: Any, now_us: int) -> Any:
        start = self.watermark
        original(self, ticks, parts, now_us)
        return pl.Series("wm", [start] * len(ticks), dtype=pl.Int64)

    monkeypatch.setattr(Watermarks, "before_each", batch_level)
    whole = run(stream_of("tumbling"), [events])
    single = run(stream_of("tumbling"), [[e] for e in events])
    assert not whole.equals(single)
    with pytest.raises(AssertionError):
        same(whole, expected)


def test_text_minima_and_decimal_sums_merge_through_partial_aggregation() -> None:
    """Neither NumPy nor Polars' rolling windows take text or decimals: those windows merge
    their panes with PartialAggregation (the answer DuckDB gives)."""
    import decimal

    rows = [
        {"ts": T0 + dt.timedelta(seconds=s), "key": k, "name": n, "amount": decimal.Decimal(a)}
        for s, k, n, a in [
            (0, "a", "pear", "1.10"),
            (15, "a", "apple", "2.25"),
            (30, "b", "fig", "0.05"),
            (45, "a", "kiwi", "3.00"),
            (70, "b", "date", "1.00"),
            (95, "a", "lime", "0.10"),
        ]
    ]
    data = pl.DataFrame(rows, schema_overrides={"amount": pl.Decimal(10, 2)})
    steps = ProcessingPipeline("p").add_processor(
        WindowedAggregator(
            name="w",
            config={
                "time_column": "ts",
                "window": "1m",
                "slide": "30s",
                "group_by": "key",
                "aggregations": {"name": ["min", "max"], "amount": "sum"},
            },
        )
    )
    stream = StreamProcessor(
        name="txt", config={"emit": "final", "output": "polars"}, pipeline=steps, clock=lambda: NOW
    )
    got = pl.concat([o for o in stream.process_stream([data.slice(0, 3), data.slice(3, 3)])])
    expected = duck(
        """with ws as (select unnest(generate_series(timestamp '2024-06-01 11:59:30',
                                                   timestamp '2024-06-01 12:01:30',
                                                   interval 30 second)) as s)
           select key, s as window_start, s + interval 1 minute as window_end,
                  min(name) as name_min, max(name) as name_max, sum(amount) as amount
           from t join ws on ts >= s and ts < s + interval 1 minute group by all""",
        t=data,
    )
    assert_same(got, expected)
