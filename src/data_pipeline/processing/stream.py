"""StreamProcessor: run a processing pipeline over micro-batches, keeping aggregation state."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import narwhals as nw
from pydantic import field_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import ConfigError
from data_pipeline.core.frames import column_names, to_narwhals, to_polars
from data_pipeline.processing._incremental import IncrementalAggregation, split_steps
from data_pipeline.processing.base import DataProcessor
from data_pipeline.processing.batch import _to_engine
from data_pipeline.processing.pipeline import ProcessingPipeline
from data_pipeline.processing.window import WindowedAggregator, parse_duration

__all__ = ["StreamProcessor", "StreamProcessorConfig"]


class StreamProcessorConfig(ConfigModel):
    """Config of :class:`StreamProcessor` (see its docstring)."""

    emit: Literal["updates", "final"] = "updates"
    allowed_lateness: str = "0s"
    output: Literal["native", "polars"] = "native"

    @field_validator("allowed_lateness")
    @classmethod
    def _duration(cls, value: str) -> str:
        if value.strip() not in ("0", "0s"):
            parse_duration(value)
        return value


class StreamProcessor(DataProcessor):
    """Process an iterable of micro-batches (frames) through a pipeline, keeping state.

    Steps before the pipeline's first aggregating step run on each micro-batch. A
    :class:`DataAggregator` or :class:`WindowedAggregator` keeps partial aggregates across
    micro-batches (the same exact merge as :class:`BatchProcessor`), so a group or window that
    spans batches is aggregated once, correctly. What each micro-batch yields:

    * ``emit: updates`` (default): the current aggregate of every group / window that the
      micro-batch touched (an upsert stream; the last value per key is the answer).
    * ``emit: final`` (WindowedAggregator only): a window is emitted once, when the watermark
      (the latest timestamp seen minus ``allowed_lateness``) passes its end; rows that arrive
      for a window already emitted are dropped and counted as ``late_rows``. :meth:`flush`
      (called at the end of :meth:`process_stream`) emits the windows still open.

    Without an aggregating step each micro-batch's result is yielded as it is. Results have the
    micro-batch's engine (``output: native``) or are Polars (``output: polars``). The streaming
    platforms (Kafka, NATS, Redis Streams, ...) feed this processor in a later issue; any
    iterator of frames works today.

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
        ...            pl.DataFrame({"ts": [t + dt.timedelta(seconds=70)], "v": [5]})]
        >>> [out["v"].to_list() for out in stream.process_stream(batches)]
        [[], [3], [5]]
    """

    config_model = StreamProcessorConfig
    settings: StreamProcessorConfig

    def __init__(
        self, name: str, config: Any = None, *, pipeline: ProcessingPipeline | None = None
    ) -> None:
        super().__init__(name, config)
        lateness = self.settings.allowed_lateness.strip()
        self.allowed_lateness = (
            dt.timedelta(0) if lateness in ("0", "0s") else parse_duration(lateness)[2]
        )
        self.pipeline = pipeline if pipeline is not None else ProcessingPipeline(f"{name}_steps")
        self.reset()

    def set_pipeline(self, pipeline: ProcessingPipeline) -> StreamProcessor:
        self.pipeline = pipeline
        self.reset()
        return self

    def reset(self) -> None:
        """Forget the aggregation state, the watermark and the counters."""
        self._incremental: IncrementalAggregation | None = None
        self._watermark: Any = None
        self._emitted_start: Any = None
        self._template: Any = None
        self._last_result: Any = None
        self.progress: dict[str, Any] = {"batches": 0, "rows_in": 0, "rows_out": 0, "late_rows": 0}

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
        """Process one micro-batch and return what it emits."""
        frame = to_narwhals(batch, component=self.label)
        with self._operation("process_batch") as op:
            result = self._step(frame, op)
            self._last_result = result  # the snapshot of a pipeline without aggregation
            op.details["progress"] = dict(self.progress)
            op.rows_out = None if result is None else int(to_polars(result).height)
        return result

    def flush(self) -> Any:
        """Emit the windows still open (``emit: final``); None when there is nothing to emit."""
        inc = self._incremental
        if inc is None or inc.state is None or self.settings.emit != "final":
            return None
        with self._operation("flush") as op:
            state = inc.state
            inc.state = None
            result = self._finish(inc, state)
            op.rows_out = int(to_polars(result).height)
            self.progress["rows_out"] += op.rows_out
            return self._out(result)

    def snapshot(self) -> Any:
        """The full current result: every group / window over everything seen so far.

        The merged partial aggregates are finished and the steps after the aggregating step
        applied, as if all micro-batches so far had been processed at once (``emit: final``:
        only the windows not emitted yet, since emitted ones leave the state). Without an
        aggregating step each micro-batch is complete by itself: the snapshot is the last
        micro-batch's result. None before the first micro-batch. The engine is the
        micro-batches' (``output: native``) or Polars (``output: polars``).

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
        inc = self._incremental
        if inc is None:
            return self._last_result
        return self._out(self._finish(inc, inc.state))

    def get_state(self) -> Any:
        """The merged partial aggregates (a Polars DataFrame) or None."""
        return None if self._incremental is None else self._incremental.state

    # -- internals ----------------------------------------------------------------------------

    def _step(self, frame: Any, op: Operation) -> Any:
        import polars as pl

        if self._template is None:
            self._template = frame
            self.pipeline.check(column_names(frame))
        pre, agg_step, post = split_steps(self.pipeline.processors)
        rows = frame.shape[0] if isinstance(frame, nw.DataFrame) else None
        op.rows_in = rows
        self.progress["batches"] += 1
        self.progress["rows_in"] += rows or 0
        for step in pre:
            frame = step.apply(frame)
        if agg_step is None:
            if isinstance(frame, nw.LazyFrame):
                frame = frame.collect()
            self.progress["rows_out"] += frame.shape[0]
            return self._out(frame)
        if self.settings.emit == "final" and not isinstance(agg_step, WindowedAggregator):
            raise ConfigError(
                "emit 'final' needs a WindowedAggregator (a plain aggregation never closes)",
                component=self.label,
                hint="use emit 'updates', or aggregate with a WindowedAggregator",
            )
        if self._incremental is None:
            self._incremental = IncrementalAggregation(agg_step, self.label)
        inc = self._incremental
        if isinstance(agg_step, WindowedAggregator):
            frame = self._drop_late(
                agg_step.assign_windows(self._advance(frame, agg_step)), agg_step
            )
        started = time.perf_counter()
        partial = inc.add(frame, prepared=True)
        op.details["merge_seconds"] = round(time.perf_counter() - started, 6)
        if self.settings.emit == "updates":
            touched = partial.select(inc.keys).unique() if inc.keys else None
            state = inc.state
            if touched is not None:
                state = state.join(touched, on=inc.keys, how="semi", nulls_equal=True)
            result = self._finish(inc, state, post)
        else:
            assert isinstance(agg_step, WindowedAggregator)
            result = self._emit_closed(inc, agg_step, post)
        out = to_polars(result.to_native()) if not isinstance(result, pl.DataFrame) else result
        self.progress["rows_out"] += out.height
        return self._out(result)

    def _advance(self, frame: Any, step: WindowedAggregator) -> Any:
        """Move the watermark to the latest timestamp of the micro-batch minus the lateness."""
        latest = frame.select(nw.col(step.time_column).max())
        if isinstance(latest, nw.LazyFrame):
            latest = latest.collect()
        value = latest.item()
        if hasattr(value, "to_pydatetime"):  # a pandas Timestamp
            value = value.to_pydatetime()
        if value is not None:
            mark = value - self.allowed_lateness
            if self._watermark is None or mark > self._watermark:
                self._watermark = mark
        return frame

    def _drop_late(self, windowed: Any, step: WindowedAggregator) -> Any:
        """Drop rows assigned to windows already emitted (``emit: final``); count them."""
        if self.settings.emit != "final" or self._emitted_start is None:
            return windowed
        late = nw.col(step.settings.start_column) <= self._emitted_start
        if isinstance(windowed, nw.DataFrame):
            self.progress["late_rows"] += int(windowed.select(late.sum()).item())
        return windowed.filter(~late)

    def _emit_closed(
        self, inc: IncrementalAggregation, step: WindowedAggregator, post: list[Any]
    ) -> Any:
        import polars as pl

        start = step.settings.start_column
        state = inc.state
        if self._watermark is None or state is None or state.height == 0:
            return inc.result(state.clear() if state is not None else None)
        # a window [s, s + window) is closed when s + window <= watermark
        cutoff = self._watermark - step.window
        closed = state.filter(pl.col(start) <= cutoff)
        inc.state = state.filter(pl.col(start) > cutoff)
        if closed.height:
            last = closed.select(pl.col(start).max()).item()
            if self._emitted_start is None or last > self._emitted_start:
                self._emitted_start = last
        return self._finish(inc, closed, post)

    def _finish(
        self, inc: IncrementalAggregation, state: Any, post: list[Any] | None = None
    ) -> Any:
        result = inc.result(state)
        for step in post if post is not None else split_steps(self.pipeline.processors)[2]:
            result = step.apply(result)
        return result

    def _out(self, result: Any) -> Any:
        if self.settings.output == "polars" or self._template is None:
            return to_polars(result.to_native() if hasattr(result, "to_native") else result)
        return _to_engine(self._template, to_polars(result.to_native()))
