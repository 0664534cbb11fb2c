"""StreamProcessor: run a processing pipeline over micro-batches, keeping windows and watermarks."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import narwhals as nw
from pydantic import field_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.engines import engine_of
from data_pipeline.core.errors import ColumnNotFoundError, ConfigError
from data_pipeline.core.frames import column_names, to_narwhals, to_polars
from data_pipeline.processing._incremental import IncrementalAggregation, split_steps
from data_pipeline.processing._watermark import Watermarks
from data_pipeline.processing._window_state import (
    WindowState,
    time_unit_per_second,
    unsupported_time,
)
from data_pipeline.processing.base import DataProcessor
from data_pipeline.processing.batch import _to_engine
from data_pipeline.processing.pipeline import ProcessingPipeline
from data_pipeline.processing.window import WindowedAggregator, parse_duration

__all__ = [
    "LATE_REASON",
    "REJECT_REASON",
    "StreamBatch",
    "StreamProcessor",
    "StreamProcessorConfig",
]

#: The column that says why a row went to the late output.
LATE_REASON = "_late_reason"
#: The column that says why a row was rejected (the name transformers use too).
REJECT_REASON = "_reject_reason"
_SNAPSHOT_KEY = b"data_pipeline.stream_state"
_SNAPSHOT_VERSION = 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _optional_duration(value: str | None) -> str | None:
    if value is not None and value.strip() not in ("0", "0s"):
        parse_duration(value)
    return value


def _delta(value: str | None) -> dt.timedelta | None:
    if value is None:
        return None
    text = value.strip()
    return dt.timedelta(0) if text in ("0", "0s") else parse_duration(text)[2]


class StreamProcessorConfig(ConfigModel):
    """Config of :class:`StreamProcessor` (see its docstring)."""

    emit: Literal["updates", "final"] = "updates"
    """``updates``: each micro-batch emits the windows / groups it changed; ``final``: a window
    is emitted once, when it closes."""
    allowed_lateness: str = "0s"
    """How far behind the watermark a window stays open: a window closes when the watermark
    passes its end plus this; a row for a closed window goes to the late output."""
    max_out_of_orderness: str | None = None
    """Bounded skew: a row stamped further than this ahead of the processing-time clock goes to
    the late output (reason ``future``) instead of moving the watermark. None: no bound."""
    partition_column: str | None = None
    """The column naming each row's source partition (``_partition`` for Kafka, ``_stream`` for
    Redis / NATS): each partition has its own watermark and the smallest drives closing.
    None: the stream is one partition."""
    idle_timeout: str | None = None
    """A partition with no row for this long (processing time) stops holding the watermark
    back, until its next row. None: never."""
    output: Literal["native", "polars"] = "native"
    """The type of what is emitted: ``native`` the micro-batches' own engine (pandas in,
    pandas out), ``polars`` a Polars DataFrame."""

    _durations = field_validator("allowed_lateness", "max_out_of_orderness", "idle_timeout")(
        classmethod(lambda cls, v: _optional_duration(v))
    )


@dataclass
class StreamBatch:
    """What one micro-batch did (:attr:`StreamProcessor.last_batch`).

    ``emitted``: the windows / groups the batch emitted (what :meth:`~StreamProcessor.
    process_batch` returned); ``late``: the rows that went to the late output, as they reached
    the aggregation, with ``_late_reason`` (``late: ...`` or ``future: ...``); ``rejected``: the
    rows rejected, with ``_reject_reason`` (a null event time); both Polars. ``metrics``:
    ``events_in`` (rows that reached the aggregation) = ``accepted + late + rejected``,
    ``emitted``, ``watermark``, ``partition_watermarks``, ``idle_partitions``,
    ``state_rows``, ``state_bytes``, ``seconds``.
    """

    emitted: Any
    late: Any
    rejected: Any
    metrics: dict[str, Any] = field(default_factory=dict)


class StreamProcessor(DataProcessor):
    """Process an iterable of micro-batches (frames) through a pipeline, keeping state.

    Steps before the pipeline's first aggregating step run on each micro-batch. A
    :class:`DataAggregator` or :class:`WindowedAggregator` keeps partial aggregates across
    micro-batches (the same exact merge as :class:`BatchProcessor`), so a group or window that
    spans batches is aggregated once, correctly.

    Windows (tumbling, sliding, session; event or processing time) follow a *watermark*: the
    largest event time seen, per source partition (``partition_column``), the smallest over the
    partitions that are not idle (``idle_timeout``) driving the stream. Each row is judged
    against the watermark left by the rows before it (so the answer never depends on how the
    events were cut into batches):

    * a row with a null event time is rejected (``last_batch.rejected``, ``_reject_reason``);
    * a row stamped more than ``max_out_of_orderness`` ahead of the processing-time clock goes
      to the late output (reason ``future``) and does not move the watermark;
    * a row whose window has closed goes to the late output (reason ``late``). A window closes
      when the watermark passes its end plus ``allowed_lateness``; a sliding window's row is
      late once the first window holding it has closed; a session row once its time is more
      than ``allowed_lateness`` behind the watermark;
    * every other row updates its windows.

    What each micro-batch emits:

    * ``emit: updates`` (default): the current aggregate of every group / window the
      micro-batch changed (an upsert stream on the group keys and window start);
    * ``emit: final`` (WindowedAggregator only): each window once, when it closes.
      :meth:`flush` (called at the end of :meth:`process_stream`) emits the windows still open.

    Closed windows leave the state. :meth:`state_snapshot` / :meth:`restore_state` save and
    restore everything needed to continue exactly (open windows' partial aggregates, the
    watermarks and idle clocks, what was emitted, the counters); a checkpoint stores it with
    the sink's output. Results have the micro-batch's engine (``output: native``) or are
    Polars (``output: polars``). Any iterator of frames works, e.g. a StreamingSource's
    ``batches()``; ``data-pipeline run --follow`` feeds one per processing pipeline.

    Raises:
        ConfigError: a duration key that is not a number and ``s``/``m``/``h``/``d``; ``emit:
            final`` with an aggregating step that is not a WindowedAggregator; a snapshot given
            to ``restore_state`` that is not one, or was taken with other settings.
        ColumnNotFoundError: ``partition_column`` is not in a micro-batch.
        ProcessingPipelineError: a step needs a column that no earlier step provides.
        ProcessingError: raised by a step (any subclass), passed on unchanged.

    Example:
        >>> import datetime as dt
        >>> import polars as pl
        >>> from data_pipeline.processing import ProcessingPipeline, WindowedAggregator
        >>> steps = ProcessingPipeline("per_minute").add_processor(WindowedAggregator(
        ...     name="w", config={"time_column": "ts", "window": "1m",
        ...                       "aggregations": {"v": "sum"}}))
        >>> stream = StreamProcessor(name="s", config={"emit": "final"}, pipeline=steps)
        >>> t = dt.datetime(2024, 1, 1)
        >>> batches = [pl.DataFrame({"ts": [t, t + dt.timedelta(seconds=30)], "v": [1, 2]}),
        ...            pl.DataFrame({"ts": [t + dt.timedelta(seconds=70), t], "v": [5, 9]})]
        >>> [out["v"].to_list() for out in stream.process_stream(batches)]
        [[], [3], [5]]
        >>> stream.progress["late_rows"], stream.last_batch.metrics["late"]
        (1, 1)
    """

    config_model = StreamProcessorConfig
    settings: StreamProcessorConfig

    def __init__(
        self,
        name: str,
        config: Any = None,
        *,
        pipeline: ProcessingPipeline | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        super().__init__(name, config)
        s = self.settings
        self.allowed_lateness = _delta(s.allowed_lateness) or dt.timedelta(0)
        self.max_out_of_orderness = _delta(s.max_out_of_orderness)
        self.idle_timeout = _delta(s.idle_timeout)
        self.clock: Callable[[], dt.datetime] = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.pipeline = pipeline if pipeline is not None else ProcessingPipeline(f"{name}_steps")
        self.reset()

    def set_pipeline(self, pipeline: ProcessingPipeline) -> StreamProcessor:
        self.pipeline = pipeline
        self.reset()
        return self

    def reset(self) -> None:
        """Forget the aggregation state, the watermarks and the counters."""
        self._groups: IncrementalAggregation | None = None
        self._windows: WindowState | None = None
        idle = self.idle_timeout
        self._marks = Watermarks(
            self.settings.partition_column,
            None if idle is None else int(idle / dt.timedelta(microseconds=1)),
        )
        self._emitted_until: int | None = None
        self._template: Any = None
        self._last_result: Any = None
        self.last_batch: StreamBatch | None = None
        self.last_rejects: Any = None
        self.progress: dict[str, Any] = {
            "batches": 0,
            "rows_in": 0,
            "rows_out": 0,
            "late_rows": 0,
            "rejected_rows": 0,
        }

    def required_columns(self, columns: Any) -> list[str]:
        steps = self.pipeline.processors
        return steps[0].required_columns(columns) if steps else []

    def output_columns(self, columns: Any) -> list[str]:
        current = list(columns)
        for step in self.pipeline.processors:
            current = step.output_columns(current)
        return current

    # -- public API ---------------------------------------------------------------------------

    def process_stream(self, batches: Iterable[Any]) -> Iterator[Any]:
        """Yield a result per micro-batch (possibly empty), then what :meth:`flush` emits."""
        for batch in batches:
            yield self.process_batch(batch)
        final = self.flush()
        if final is not None:
            yield final

    def process(self, data: Any) -> Any:
        """One frame = one micro-batch; an iterable = a whole stream, results concatenated."""
        try:
            to_narwhals(data)
        except Exception:  # an iterable of frames
            import polars as pl

            outputs = [to_polars(out) for out in self.process_stream(data)]
            outputs = [o for o in outputs if o.width]
            return pl.concat(outputs, how="diagonal_relaxed") if outputs else pl.DataFrame()
        return self.process_batch(data)

    def process_batch(self, batch: Any) -> Any:
        """Process one micro-batch and return what it emits (see :attr:`last_batch` for the
        late and rejected rows and the metrics)."""
        frame = to_narwhals(batch, component=self.label)
        with self._operation("process_batch") as op:
            started = time.perf_counter()
            result, late, rejected, metrics = self._step(frame, op)
            out = self._out(result)
            emitted = int(to_polars(result).height) if result is not None else 0
            metrics["emitted"] = emitted
            metrics["seconds"] = round(time.perf_counter() - started, 6)
            self.progress["rows_out"] += emitted
            self.last_batch = StreamBatch(out, late, rejected, metrics)
            self.last_rejects = rejected
            self._last_result = out
            op.rows_out = emitted
            op.rows_rejected = metrics.get("late", 0) + metrics.get("rejected", 0)
            op.details["progress"] = dict(self.progress)
            op.details["batch"] = {k: v for k, v in metrics.items() if k != "seconds"}
        return out

    def flush(self) -> Any:
        """Emit the windows still open (``emit: final``); None when there is nothing to emit.

        The end of the input: the state is emptied (the watermark and counters stay)."""
        if self.settings.emit != "final":
            return None
        windows = self._windows
        if windows is None or windows.state is None:
            return None
        with self._operation("flush") as op:
            result = self._post(self._open_windows(after=self._emitted_until))
            windows.clear()
            op.rows_out = int(to_polars(result).height)
            self.progress["rows_out"] += op.rows_out
            return self._out(result)

    def snapshot(self) -> Any:
        """The current result: every open window (or every group) over everything seen so far.

        Windows that closed have left the state (they were emitted); with ``emit: final`` the
        snapshot holds the windows not emitted yet. Without an aggregating step each
        micro-batch is complete by itself: the snapshot is the last micro-batch's result.
        None before the first micro-batch. The engine is the micro-batches' (``output:
        native``) or Polars (``output: polars``).

        Example:
            >>> import polars as pl
            >>> from data_pipeline.processing import DataAggregator, ProcessingPipeline
            >>> steps = ProcessingPipeline("per_user").add_processor(DataAggregator(
            ...     name="a", config={"group_by": ["user"], "aggregations": {"v": "sum"}}))
            >>> stream = StreamProcessor(name="s", pipeline=steps)
            >>> _ = stream.process_batch(pl.DataFrame({"user": ["a", "b"], "v": [1, 2]}))
            >>> _ = stream.process_batch(pl.DataFrame({"user": ["a"], "v": [5]}))
            >>> stream.snapshot().sort("user").rows()
            [('a', 6), ('b', 2)]
        """
        if self._groups is not None:
            return self._out(self._post(self._groups.result()))
        if self._windows is not None:
            return self._out(self._post(self._open_windows(after=self._closed_bound())))
        return self._last_result

    def get_state(self) -> Any:
        """The merged partial aggregates (a Polars DataFrame: panes, sessions or groups) or
        None."""
        if self._groups is not None:
            return self._groups.state
        return None if self._windows is None else self._windows.state

    @property
    def watermark(self) -> Any:
        """The stream's event-time watermark (a datetime) or None before the first event."""
        return self._time_value(self._marks.watermark)

    # -- state snapshot ---------------------------------------------------------------------

    def state_snapshot(self) -> bytes:
        """Everything needed to continue exactly after a restart, as bytes (an Arrow IPC stream).

        Holds the open windows' (or groups') partial aggregates, the per-partition watermarks
        and idle clocks, the stream's watermark, what was emitted (the watermark up to which
        windows were emitted), the arrival counter and the progress counters, plus a
        fingerprint of the pipeline's aggregation and of this processor's settings that
        :meth:`restore_state` checks. Store it with the output the same micro-batch produced.

        Example:
            >>> import datetime as dt
            >>> import polars as pl
            >>> from data_pipeline.processing import ProcessingPipeline, WindowedAggregator
            >>> def make():
            ...     steps = ProcessingPipeline("p").add_processor(WindowedAggregator(
            ...         name="w", config={"time_column": "ts", "window": "1m",
            ...                           "aggregations": {"v": "sum"}}))
            ...     return StreamProcessor(name="s", config={"emit": "final"}, pipeline=steps)
            >>> t = dt.datetime(2024, 1, 1)
            >>> first = make()
            >>> _ = first.process_batch(pl.DataFrame({"ts": [t], "v": [1]}))
            >>> saved = first.state_snapshot()
            >>> second = make()
            >>> second.restore_state(saved)
            >>> second.process_batch(pl.DataFrame({"ts": [t + dt.timedelta(minutes=1)], "v": [2]}))[
            ...     "v"].to_list()
            [1]
        """
        import polars as pl

        state = self.get_state()
        windows = self._windows
        time_dtype = windows.time_dtype if windows is not None else None
        marks = pl.DataFrame(
            {
                "time": pl.Series([None], dtype=time_dtype if time_dtype is not None else pl.Null),
            }
        )
        groups = windows.groups if windows is not None else None
        tables = {
            "state": state if state is not None else pl.DataFrame(),
            "groups": groups if groups is not None else pl.DataFrame(),
            "partitions": self._marks.table(),
            "marks": marks,
        }
        meta = {
            "version": _SNAPSHOT_VERSION,
            "fingerprint": self._fingerprint(),
            "has_state": state is not None,
            "has_groups": groups is not None,
            "watermark": self._marks.watermark,
            "emitted_until": self._emitted_until,
            "arrivals": windows.arrivals if windows is not None else 0,
            "progress": self.progress,
        }
        return pack_state(meta, tables)

    def restore_state(self, snapshot: bytes | Any | None) -> None:
        """Continue from a :meth:`state_snapshot` (None: start afresh, as :meth:`reset`).

        Raises:
            ConfigError: the snapshot was taken with another aggregation or other settings
                (window, keys, aggregations, emit, lateness, partitions), or is not a snapshot.
        """
        import polars as pl
        import pyarrow as pa

        self.reset()
        if snapshot is None:
            return
        try:
            meta, tables = unpack_state(snapshot)
        except (KeyError, ValueError, TypeError, pa.ArrowInvalid) as exc:
            raise ConfigError(
                f"not a stream state snapshot ({type(exc).__name__}: {exc})",
                component=self.label,
                hint="pass the bytes state_snapshot() returned",
            ) from exc
        if meta.get("version") != _SNAPSHOT_VERSION:
            raise ConfigError(
                f"the snapshot has version {meta.get('version')!r}; this version reads "
                f"{_SNAPSHOT_VERSION}",
                component=self.label,
                hint="start without the old checkpoint",
            )
        mine = self._fingerprint()
        if meta["fingerprint"] != mine:
            raise ConfigError(
                "the snapshot was taken by a stream processor with another aggregation or "
                "other settings (window, keys, aggregations, emit, lateness, partitions)",
                component=self.label,
                hint="restore it into the pipeline that made it, or start without the "
                "checkpoint (its windows are then lost)",
            )
        self.progress.update(meta["progress"])
        _, agg_step, _ = split_steps(self.pipeline.processors)
        marks = tables["marks"]
        self._marks.load(tables["partitions"], meta["watermark"])
        self._emitted_until = meta["emitted_until"]
        if agg_step is None:
            return
        state = tables["state"] if meta["has_state"] else None
        if isinstance(agg_step, WindowedAggregator):
            windows = WindowState(agg_step, self.label)
            windows.state = state
            windows.groups = tables["groups"] if meta["has_groups"] else None
            dtype = marks.schema["time"]
            windows.time_dtype = None if dtype == pl.Null else dtype
            windows.arrivals = int(meta["arrivals"])
            self._windows = windows
        else:
            groups = IncrementalAggregation(agg_step, self.label)
            groups.state = state
            self._groups = groups

    def _fingerprint(self) -> str:
        _, agg_step, _ = split_steps(self.pipeline.processors)
        s = self.settings
        described: dict[str, Any] = {
            "emit": s.emit,
            "allowed_lateness": str(self.allowed_lateness),
            "max_out_of_orderness": str(self.max_out_of_orderness),
            "partition_column": s.partition_column,
            "idle_timeout": str(self.idle_timeout),
        }
        if isinstance(agg_step, WindowedAggregator):
            described["windows"] = WindowState(agg_step, self.label).describe()
        elif agg_step is not None:
            described["groups"] = [agg_step.keys, [repr(p) for p in agg_step.plans]]
        text = json.dumps(described, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # -- internals ----------------------------------------------------------------------------

    def _step(self, frame: Any, op: Operation) -> tuple[Any, Any, Any, dict[str, Any]]:
        import polars as pl

        if self._template is None:
            self._template = frame
            self.pipeline.check(column_names(frame))
        pre, agg_step, post = split_steps(self.pipeline.processors)
        original = frame
        rows = frame.shape[0] if isinstance(frame, nw.DataFrame) else None
        self.progress["batches"] += 1
        for step in pre:
            frame = step.apply(frame)
        if (
            agg_step is not None
            and not isinstance(agg_step, WindowedAggregator)
            and self.settings.emit == "final"
        ):
            raise ConfigError(
                "emit 'final' needs a WindowedAggregator (a plain aggregation never closes)",
                component=self.label,
                hint="use emit 'updates', or aggregate with a WindowedAggregator",
            )
        collected = to_polars(frame)
        events = collected.height
        if rows is None:  # a lazy micro-batch: counted when computed (again, if steps ran first)
            rows = events if not pre else int(original.select(nw.len()).collect().item())
        self.progress["rows_in"] += rows
        op.rows_in = rows
        metrics: dict[str, Any] = {
            "events_in": events,
            "accepted": events,
            "late": 0,
            "rejected": 0,
        }
        if isinstance(agg_step, WindowedAggregator):
            return self._windowed(collected, agg_step, post, metrics, op)
        empty = collected.clear().with_columns(pl.lit(None, pl.String).alias(LATE_REASON))
        no_rejects = collected.clear().with_columns(pl.lit(None, pl.String).alias(REJECT_REASON))
        if agg_step is None:
            return collected, empty, no_rejects, metrics
        if self._groups is None:
            self._groups = IncrementalAggregation(agg_step, self.label)
        groups = self._groups
        started = time.perf_counter()
        partial = groups.add(nw.from_native(collected))
        op.details["merge_seconds"] = round(time.perf_counter() - started, 6)
        state = groups.state
        touched = partial.select(groups.keys).unique() if groups.keys else None
        if touched is not None:
            state = state.join(touched, on=groups.keys, how="semi", nulls_equal=True)
        metrics["state_rows"] = int(groups.state.height)
        metrics["state_bytes"] = int(groups.state.estimated_size())
        return self._post(groups.result(state), post), empty, no_rejects, metrics

    def _windowed(
        self,
        frame: Any,
        step: WindowedAggregator,
        post: list[Any],
        metrics: dict[str, Any],
        op: Operation,
    ) -> tuple[Any, Any, Any, dict[str, Any]]:
        import numpy as np
        import polars as pl

        s = self.settings
        now = self.clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.timezone.utc)
        now_us = (now - _EPOCH) // dt.timedelta(microseconds=1)
        if step.processing_time:
            frame = to_polars(step.stamp(nw.from_native(frame), now))
        part = s.partition_column
        if part is not None and part not in frame.columns:
            raise ColumnNotFoundError(
                f"the partition column {part!r} is not in the micro-batch",
                component=self.label,
                hint=f"columns: {', '.join(frame.columns)}; set partition_column to the column "
                "the source writes (e.g. '_partition' for Kafka, '_stream' for Redis and NATS)",
            )
        if self._windows is None:
            self._windows = WindowState(step, self.label)
        windows = self._windows
        tcol = step.time_column
        dtype = frame.schema[tcol]
        if dtype == pl.Date:
            frame = frame.with_columns(pl.col(tcol).cast(pl.Datetime("us")))
            dtype = frame.schema[tcol]
        elif dtype == pl.Null:  # an empty batch or all nulls
            dtype = windows.time_dtype or pl.Datetime("us")
            frame = frame.with_columns(pl.col(tcol).cast(dtype))
        if not isinstance(dtype, pl.Datetime):
            raise unsupported_time(tcol, dtype, self.label)
        if windows.time_dtype is None:
            windows.time_dtype = dtype
        elif dtype != windows.time_dtype:
            frame = frame.with_columns(pl.col(tcol).cast(windows.time_dtype))
        per_second = time_unit_per_second(windows.time_dtype)
        now_ticks = (now_us * per_second) // 1_000_000
        lateness = windows.ticks(self.allowed_lateness)
        marks = self._marks
        marks.start_batch(now_us)
        if step.processing_time:
            marks.observe(now_ticks)

        reason = pl.lit(f"null event time in {tcol!r}").alias(REJECT_REASON)
        if frame[tcol].null_count():
            null = pl.col(tcol).is_null()
            rejected = frame.filter(null).with_columns(reason)
            valid = frame.filter(~null)
        else:
            rejected, valid = frame.clear().with_columns(reason), frame
        late_parts = []
        if self.max_out_of_orderness is not None and not step.processing_time:
            limit = now_ticks + windows.ticks(self.max_out_of_orderness)
            future = valid[tcol].to_physical() > limit
            if future.any():
                why_future = (
                    f"future: more than {s.max_out_of_orderness} ahead of the processing-time clock"
                )
                late_parts.append(
                    valid.filter(future).with_columns(pl.lit(why_future).alias(LATE_REASON))
                )
                valid = valid.filter(~future)
        ticks = _physical(valid[tcol])
        parts = valid[s.partition_column] if s.partition_column is not None else None
        before = marks.before_each(pl.Series(tcol, ticks), parts, now_us)
        if step.kind == "session":
            why = f"late: more than allowed_lateness {s.allowed_lateness} behind the watermark"
        else:
            why = f"late: its window had closed (allowed_lateness {s.allowed_lateness})"
        late_at = self._late_rows(valid, ticks, before, step, windows, lateness)
        accepted = valid
        if late_at.size:
            late_parts.append(valid[late_at].with_columns(pl.lit(why).alias(LATE_REASON)))
            keep = np.ones(valid.height, dtype=bool)
            keep[late_at] = False
            accepted = valid.filter(pl.Series(keep))
        late_rows = (
            pl.concat(late_parts, how="vertical_relaxed")
            if late_parts
            else frame.clear().with_columns(pl.lit(None, pl.String).alias(LATE_REASON))
        )

        started = time.perf_counter()
        touched = windows.add(nw.from_native(accepted), checked=True)
        op.details["merge_seconds"] = round(time.perf_counter() - started, 6)
        watermark = marks.watermark
        final = s.emit == "final"
        if step.kind == "session":
            if final:
                result = (
                    windows.select_sessions(closed_before=watermark - lateness)
                    if watermark is not None
                    else windows.empty()
                )
            else:
                result = windows.select_sessions(touched) if touched.height else windows.empty()
            if watermark is not None:
                windows.drop_sessions_closed_before(watermark - lateness)
        else:
            width = windows.window_ticks
            if final:
                if watermark is None:
                    result = windows.empty()
                else:
                    after = (
                        None
                        if self._emitted_until is None
                        else self._emitted_until - lateness - width
                    )
                    result = windows.select_panes(
                        start_after=after, start_upto=watermark - lateness - width
                    )
            else:
                result = windows.select_panes(touched) if touched.height else windows.empty()
            if watermark is not None:
                windows.drop_panes_upto(watermark - lateness - width)
        if final and watermark is not None:
            self._emitted_until = watermark

        n_late = int(late_rows.height)
        n_rejected = int(rejected.height)
        self.progress["late_rows"] += n_late
        self.progress["rejected_rows"] += n_rejected
        metrics.update(
            accepted=int(accepted.height),
            late=n_late,
            rejected=n_rejected,
            watermark=self._time_value(watermark),
            partition_watermarks={
                str(p): self._time_value(v[0]) for p, v in marks.partitions.items()
            },
            idle_partitions=[str(p) for p in marks.idle(now_us)],
            state_rows=windows.rows,
            state_bytes=windows.size_bytes,
        )
        return self._post(result, post), late_rows, rejected, metrics

    @staticmethod
    def _late_rows(
        valid: Any, ticks: Any, before: Any, step: Any, windows: Any, lateness: int
    ) -> Any:
        """The positions of the late rows: a row is late when its window had closed under the
        watermark before it (``before``: per row, null while there is none), i.e. its pane's
        end plus the lateness is at or before that watermark (a session row: its time plus
        the lateness is before it).

        Either rule needs the row's time to be earlier than the watermark minus the lateness
        (a pane holds times from its start to its end), so only those rows are judged, by
        the exact rule, in Polars (panes are the step's truncation). Not for a zone other
        than UTC: a local calendar day can be longer than its ticks."""
        import numpy as np
        import polars as pl

        tcol = step.time_column
        zone = getattr(valid.schema[tcol], "time_zone", None)
        if step.kind != "session" and zone not in (None, "UTC"):
            candidates = np.arange(valid.height)
        else:
            if before.null_count():  # no watermark yet before the first rows
                bound = before.fill_null(np.iinfo(np.int64).min).to_numpy()
            else:
                bound = before.to_numpy()
            candidates = np.flatnonzero(ticks + lateness < bound)
        if candidates.size == 0:
            return candidates
        rows = valid if candidates.size == valid.height else valid[candidates]
        wm = pl.lit(before if candidates.size == valid.height else before[candidates])
        if step.kind == "session":
            late = pl.col(tcol).to_physical() + lateness < wm
        else:
            pane = pl.col(tcol).dt.truncate(step.pane_step).to_physical()
            late = pane + (windows.pane_ticks + lateness) <= wm
        judged = rows.select(late.fill_null(False)).to_series().to_numpy()
        return candidates[judged]

    def _open_windows(self, *, after: int | None) -> Any:
        windows = self._windows
        assert windows is not None
        if windows.kind == "session":
            return windows.select_sessions()
        bound = (
            None
            if after is None
            else after - windows.ticks(self.allowed_lateness) - (windows.window_ticks)
        )
        return windows.select_panes(start_after=bound)

    def _closed_bound(self) -> int | None:
        """The watermark up to which windows have closed (they left the state)."""
        return self._marks.watermark

    def _time_value(self, ticks: int | None) -> Any:
        """A physical time as a Python datetime (naive UTC, or in the column's zone) or None."""
        windows = self._windows
        if ticks is None or windows is None or windows.time_dtype is None:
            return None
        dtype = windows.time_dtype
        moment = _EPOCH + dt.timedelta(
            microseconds=ticks * 1_000_000 // time_unit_per_second(dtype)
        )
        zone = getattr(dtype, "time_zone", None)
        if zone is None:
            return moment.replace(tzinfo=None)
        from zoneinfo import ZoneInfo

        return moment.astimezone(ZoneInfo(zone))

    def _post(self, result: Any, post: list[Any] | None = None) -> Any:
        for step in post if post is not None else split_steps(self.pipeline.processors)[2]:
            result = step.apply(result)
        return result

    def _out(self, result: Any) -> Any:
        if result is None:
            return None
        native = result.to_native() if hasattr(result, "to_native") else result
        if self.settings.output == "polars" or self._template is None:
            return to_polars(native)
        polars_result = to_polars(native)
        if engine_of(self._template) == "pyspark":  # Spark has no unsigned integers
            import polars as pl

            unsigned = [c for c, t in polars_result.schema.items() if t.is_unsigned_integer()]
            polars_result = polars_result.with_columns(pl.col(unsigned).cast(pl.Int64))
        return _to_engine(self._template, polars_result)


def _physical(times: Any) -> Any:
    """A timestamp Series (no nulls) as its physical integers, a NumPy array."""
    import numpy as np

    values = times.to_numpy()
    return values.view(np.int64) if values.dtype.kind == "M" else values.astype(np.int64)


def pack_state(meta: dict[str, Any], tables: dict[str, Any]) -> bytes:
    """A snapshot: the named Polars tables as Arrow IPC streams in one IPC stream, ``meta`` as
    JSON in its schema metadata."""
    import pyarrow as pa

    from data_pipeline.core.checkpoint import _table_bytes  # the one Arrow IPC writer

    names = list(tables)
    blobs = [_table_bytes(tables[name].to_arrow()) for name in names]
    container = pa.table(
        {"name": pa.array(names, pa.string()), "data": pa.array(blobs, pa.large_binary())}
    ).replace_schema_metadata({_SNAPSHOT_KEY: json.dumps(meta).encode()})
    return _table_bytes(container)


def unpack_state(snapshot: bytes | Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``meta`` and Polars tables of a :func:`pack_state` snapshot (bytes or its table)."""
    import polars as pl
    import pyarrow as pa

    from data_pipeline.core.checkpoint import _bytes_table  # the one Arrow IPC reader

    container = snapshot if isinstance(snapshot, pa.Table) else _bytes_table(snapshot)
    meta = json.loads((container.schema.metadata or {})[_SNAPSHOT_KEY])
    tables = {
        name: pl.from_arrow(_bytes_table(blob))
        for name, blob in zip(
            container.column("name").to_pylist(), container.column("data").to_pylist(), strict=True
        )
    }
    return meta, tables
