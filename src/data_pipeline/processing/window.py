"""WindowedAggregator: tumbling, sliding and session windows over event or processing time."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import narwhals as nw
from pydantic import Field, field_validator, model_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.engines import engine_of
from data_pipeline.core.errors import ConfigError, UnsupportedOperationError
from data_pipeline.core.expr import Expression, where
from data_pipeline.core.secrets import DATA_KEYS
from data_pipeline.processing._aggregation import AggPlan, aggregate_frame, parse_aggregations
from data_pipeline.processing.aggregate import SortKey, parse_sort, sort_frame
from data_pipeline.processing.base import DataProcessor

__all__ = [
    "PROCESSING_TIME",
    "WindowedAggregator",
    "WindowedAggregatorConfig",
    "parse_duration",
]

#: The column that holds the processing time of each row (``time: processing``).
PROCESSING_TIME = "__dp_processing_time"

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> tuple[int, str, dt.timedelta]:
    """``"15m"`` -> ``(15, "m", timedelta(minutes=15))``; units s, m, h, d."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or int(match.group(1)) <= 0:
        raise ValueError(
            f"bad duration {text!r}: write a positive number and a unit s, m, h or d "
            "(e.g. '30s', '15m', '1h', '7d')"
        )
    count, unit = int(match.group(1)), match.group(2)
    return count, unit, dt.timedelta(**{_UNITS[unit]: count})


def _spark_window_start(frame: Any, column: str, name: str, step: str) -> Any:
    """``frame`` with ``name`` = ``column`` truncated to ``step`` (e.g. 15m), epoch-aligned, on Spark."""
    from pyspark.sql import functions as F

    from data_pipeline.core.spark_names import spark_col

    count, unit, _ = parse_duration(step)
    native = frame.to_native()
    interval = f"{count} {_UNITS[unit]}"
    return nw.from_native(native.withColumn(name, F.window(spark_col(column), interval).start))


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


class WindowedAggregatorConfig(ConfigModel):
    """Config of :class:`WindowedAggregator` (see its docstring)."""

    time_column: str | None = None
    """The event-time column (a timestamp); omitted with ``time: processing``."""
    time: Literal["event", "processing"] = "event"
    """``event``: windows of ``time_column``; ``processing``: of the moment each row is
    processed (in a stream: when its micro-batch arrives)."""
    window: str | None = None
    """Tumbling (or, with ``slide``, sliding) window length, e.g. ``10s``, ``15m``, ``1h``."""
    slide: str | None = None
    """Sliding windows: a window starts every ``slide`` (``window`` must be a multiple)."""
    session_gap: str | None = None
    """Session windows instead of ``window``: a session of a group ends when no row follows
    within this gap."""
    group_by: list[str] = Field(default_factory=list)
    """Key columns (a name or a list): one output row per window and distinct combination
    (sessions are formed per combination). Empty: one row per window."""
    aggregations: Annotated[dict[str, Any], DATA_KEYS]
    """What to compute, by input column: an aggregation name (``sum``, ``mean``, ``min``,
    ``max``, ``count``, ``median``, ``n_unique``, ``first``, ``last``, ``std``; the output keeps
    the column's name), ``{"agg": ..., "as": "name", "order_by": ...}``, or a list of those
    (outputs ``<column>_<agg>`` unless ``as`` names them); ``"*": "count"`` counts rows into
    ``count``. Output names must differ from each other and from the group keys, the time column and the
    window columns."""
    having: str | None = None
    """A condition on the output columns (group keys, ``start_column``, ``end_column``,
    aggregate outputs) that keeps only some windows: ``"count >= 10"``. None: every window is kept."""
    sort: list[str | SortKey] | bool | None = None
    """The order of the output rows: None or ``true`` by window start, then the group keys;
    ``false`` no sort; or a list of output columns as in DataAggregator (``"count desc"``,
    ``{"column": ..., "descending": ...}``). Nulls sort last."""
    order_by: list[str] = Field(default_factory=list)
    """Columns that order the rows for ``first`` and ``last`` (ascending, nulls last), for each
    such aggregation without its own ``order_by``; needed for them on lazy frames (see
    DataAggregator)."""
    start_column: str = "window_start"
    """The name of the output column holding each window's start (inclusive)."""
    end_column: str = "window_end"
    """The name of the output column holding each window's end: exclusive for tumbling and
    sliding windows; for a session its last row's time plus ``session_gap``."""

    _lists = field_validator("group_by", "order_by", mode="before")(_as_list)

    @field_validator("window", "slide", "session_gap")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> WindowedAggregatorConfig:
        if (self.window is None) == (self.session_gap is None):
            raise ValueError(
                "give either window (tumbling; with slide: sliding) or session_gap (sessions)"
            )
        if self.slide is not None and self.session_gap is not None:
            raise ValueError("slide is for sliding windows; session windows take session_gap only")
        if self.time == "event" and not self.time_column:
            raise ValueError("time_column is required for event-time windows (time: event)")
        if self.time == "processing" and self.time_column:
            raise ValueError(
                "time_column is for event time; with time: processing each row gets the time "
                "it is processed (omit time_column)"
            )
        return self


class WindowedAggregator(DataProcessor):
    """Aggregate rows per time window (and per group) of a timestamp column.

    Tumbling windows (``window`` only) cut time into ``[start, start + window)`` intervals
    aligned on the Unix epoch (a ``"1d"`` window starts at midnight UTC). Sliding (hopping)
    windows add ``slide``: a window of that length starts every ``slide``, so each row counts in
    ``window / slide`` windows (``window`` must be a multiple of ``slide``). Session windows
    (``session_gap`` instead of ``window``) group the rows of each group that follow each other
    within the gap: a session runs from its first row's time to its last row's time plus the
    gap, and a row more than the gap after the previous one starts a new session. Durations: a
    number and ``s``, ``m``, ``h`` or ``d``.

    ``time: event`` (default) windows the ``time_column``; ``time: processing`` windows the
    moment each row is processed (in a :class:`StreamProcessor`: when its micro-batch
    arrives), and takes no ``time_column``.

    The aggregations, ``having``, ``sort`` and ``order_by`` are those of
    :class:`DataAggregator` (the same code). Output: the group keys, ``window_start``,
    ``window_end``, then the aggregates, sorted by window start and the keys. Rows with a null
    timestamp belong to no window (a :class:`StreamProcessor` routes them to its rejects).
    DuckDB truncates only to one unit (``1h``, ``1d``); for ``15m`` on DuckDB use a Polars
    frame. The streaming form (:class:`StreamProcessor`) uses this same definition and keeps
    the partial aggregates of each slide-sized pane (or session) between micro-batches.

    Raises:
        ConfigError: the config is invalid when the aggregator is built: neither or both of
            ``window`` and ``session_gap``, a duration that is not a number and ``s``/``m``/``h``/
            ``d``, a ``window`` that is not a multiple of ``slide``, ``time_column`` missing for
            event time (or given for processing time), and the aggregation errors of
            :class:`DataAggregator`.
        ColumnNotFoundError: the time column, a group key or an aggregated column is not in the
            data.
        UnsupportedOperationError: a window or slide other than one unit (``1s``, ``1m``, ``1h``,
            ``1d``) on DuckDB, or ``first`` / ``last`` on a lazy frame without ``order_by``.
        ProcessingError: the engine failed otherwise (the message names the processor).

    Example:
        >>> import datetime as dt
        >>> import polars as pl
        >>> windows = WindowedAggregator(name="hourly", config={
        ...     "time_column": "ts", "window": "1h", "slide": "30m",
        ...     "group_by": ["region"],
        ...     "aggregations": {"amount": "sum", "*": "count"},
        ... })
        >>> df = pl.DataFrame({"ts": [dt.datetime(2024, 1, 1, 10, 10)], "region": ["north"],
        ...                    "amount": [5.0]})
        >>> [(r[1].strftime("%H:%M"), r[3]) for r in windows.process(df).rows()]
        [('09:30', 5.0), ('10:00', 5.0)]
        >>> sessions = WindowedAggregator(name="visits", config={
        ...     "time_column": "ts", "session_gap": "30m", "aggregations": {"*": "count"}})
        >>> t = dt.datetime(2024, 1, 1, 9, 0)
        >>> clicks = pl.DataFrame({"ts": [t, t + dt.timedelta(minutes=20),
        ...                               t + dt.timedelta(hours=2)]})
        >>> [(r[0].strftime("%H:%M"), r[1].strftime("%H:%M"), r[2])
        ...  for r in sessions.process(clicks).rows()]
        [('09:00', '09:50', 2), ('11:00', '11:30', 1)]
    """

    config_model = WindowedAggregatorConfig
    settings: WindowedAggregatorConfig

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        s = self.settings
        self.group_by: list[str] = list(s.group_by)
        self.processing_time = s.time == "processing"
        self.time_column: str = PROCESSING_TIME if self.processing_time else str(s.time_column)
        self.slide: dt.timedelta | None = None
        self.gap: dt.timedelta | None = None
        if s.session_gap is not None:
            self.kind: Literal["tumbling", "sliding", "session"] = "session"
            _, _, self.gap = parse_duration(s.session_gap)
            self.window_count, self.window_unit, self.window = 0, "s", dt.timedelta(0)
            self.step_count, self.step_unit = 0, "s"
        else:
            self.kind = "tumbling" if s.slide is None else "sliding"
            self.window_count, self.window_unit, self.window = parse_duration(str(s.window))
            self.step_count, self.step_unit = self.window_count, self.window_unit
        if s.slide is not None:
            self.step_count, self.step_unit, self.slide = parse_duration(s.slide)
            if self.window % self.slide:
                raise ConfigError(
                    f"config.window {s.window!r} is not a multiple of config.slide {s.slide!r}",
                    component=self.label,
                    hint="choose a slide that divides the window (e.g. window '1h', slide '15m')",
                )
        keys = [*self.group_by, s.start_column]
        self.plans: list[AggPlan] = parse_aggregations(
            s.aggregations,
            group_by=[*keys, s.end_column, self.time_column],
            default_order_by=s.order_by,
            component=self.label,
        )
        outputs = [*self.group_by, s.start_column, s.end_column, *[p.output for p in self.plans]]
        self.having: Expression | None = None
        if s.having is not None:
            self.having = Expression(s.having, what="having condition", component=self.label)
            self.having.check_columns(outputs)
        self.sort_keys = parse_sort(s.sort, [s.start_column, *self.group_by])
        unknown = [k for k, _ in self.sort_keys if k not in outputs]
        if unknown:
            raise ConfigError(
                f"config.sort names column(s) {', '.join(map(repr, unknown))} "
                "that the aggregation does not produce",
                component=self.label,
                hint=f"the output columns are: {', '.join(map(repr, outputs))}",
            )

    @property
    def keys(self) -> list[str]:
        """The grouping keys of the aggregation: the group columns and the window start."""
        return [*self.group_by, self.settings.start_column]

    @property
    def pane(self) -> dt.timedelta:
        """The pane: the slide of sliding windows, the window of tumbling ones (not sessions)."""
        return self.slide if self.slide is not None else self.window

    @property
    def pane_step(self) -> str:
        """The pane as a truncation step (``"10s"``)."""
        return f"{self.step_count}{self.step_unit}"

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        needed = [] if self.processing_time else [self.time_column]
        needed += [c for c in self.group_by if c not in needed]
        for plan in self.plans:
            needed.extend(c for c in plan.reads if c not in needed)
        return needed

    def output_columns(self, columns: Sequence[str]) -> list[str]:
        s = self.settings
        return [*self.group_by, s.start_column, s.end_column, *[p.output for p in self.plans]]

    # -- the shared definition (batch and stream) ------------------------------------------

    def stamp(self, frame: Any, now: dt.datetime | None = None) -> Any:
        """``time: processing``: the frame with the processing time (``now``, UTC) per row."""
        if not self.processing_time:
            return frame
        moment = now if now is not None else dt.datetime.now(dt.timezone.utc)
        return frame.with_columns(nw.lit(moment).alias(PROCESSING_TIME))

    def check_engine(self, frame: Any) -> None:
        """DuckDB truncates timestamps to one unit only: refuse other pane sizes there."""
        step = self.pane_step
        if self.kind != "session" and engine_of(frame) == "duckdb" and self.step_count != 1:
            raise UnsupportedOperationError(
                f"the engine 'duckdb' cannot cut windows of {step!r}: it truncates timestamps to "
                "one unit only",
                component=self.label,
                hint="use a window/slide of 1s, 1m, 1h or 1d on DuckDB, or pass a Polars frame "
                "(e.g. relation.pl())",
            )

    def pane_start(self, frame: Any, name: str) -> Any:
        """``frame`` with ``name`` = the start of the pane (slide-sized) each row falls in."""
        self.check_engine(frame)
        if engine_of(frame) == "pyspark":
            # Narwhals truncates on Spark to one unit only and date_trunc turns a naive timestamp
            # into a zoned one; Spark's window() cuts any step and keeps the type
            return _spark_window_start(frame, self.time_column, name, self.pane_step)
        return frame.with_columns(nw.col(self.time_column).dt.truncate(self.pane_step).alias(name))

    def assign_windows(self, frame: Any) -> Any:
        """Rows with their ``window_start`` (a row is repeated once per sliding window).

        The batch form of tumbling and sliding windows (the stream keeps panes instead).
        """
        start = self.settings.start_column
        frame = self.pane_start(frame.filter(~nw.col(self.time_column).is_null()), start)
        if self.slide is None:
            return frame
        copies = int(self.window / self.slide)
        base = nw.col(start)
        parts = [frame.with_columns((base - self.slide * j).alias(start)) for j in range(copies)]
        return nw.concat(parts, how="vertical")

    def session_ids(self, frame: Any, name: str) -> Any:
        """Rows (non-null time) with ``name``: the number of their session within their group.

        A row starts a new session when it is the group's first or comes more than the gap
        after the previous row of the group (by time).
        """
        time = nw.col(self.time_column)
        frame = frame.filter(~time.is_null())
        keys = self.group_by
        prev = time.shift(1).over(*keys, order_by=self.time_column) if keys else time.shift(1)
        new = (prev.is_null() | ((time - prev) > self.gap)).cast(nw.Int64)
        if not keys:
            frame = frame.sort(self.time_column)
        frame = frame.with_columns(new.alias(name))
        ids = nw.col(name).cum_sum()
        return frame.with_columns(
            (ids.over(*keys, order_by=self.time_column) if keys else ids).alias(name)
        )

    def finish(self, aggregated: Any, *, sort: bool = True) -> Any:
        """Add ``window_end``, order the columns, apply ``having`` and (``sort``) ``sort``."""
        s = self.settings
        if s.end_column not in aggregated.columns:
            aggregated = aggregated.with_columns(
                (nw.col(s.start_column) + self.window).alias(s.end_column)
            )
        result = aggregated.select(self.output_columns([]))
        if self.having is not None:
            result = where(result, self.having)
        return sort_frame(result, self.sort_keys) if sort else result

    def sort_windows(self, result: Any, *, one_start: bool = False) -> Any:
        """:meth:`finish`'s ``sort`` on its own; ``one_start``: every row has the same window
        start, so a leading sort by it is left out (same order, a cheaper sort)."""
        keys = self.sort_keys
        if one_start and keys and keys[0] == (self.settings.start_column, False):
            keys = keys[1:]
        return sort_frame(result, keys)

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        s = self.settings
        frame = self.stamp(frame)
        op.details["window"] = s.window or f"session gap {s.session_gap}"
        if s.slide:
            op.details["slide"] = s.slide
        if self.kind != "session":
            windowed = self.assign_windows(frame)
            aggregated = aggregate_frame(windowed, self.keys, self.plans, component=self.label)
            return self.finish(aggregated)
        if engine_of(frame) == "pyarrow":  # Narwhals has no ordered window functions there
            result = self._apply_frame(nw.from_native(frame.to_polars()), op)
            return nw.from_native(result.to_native().to_arrow())
        sid = "__dp_session"
        bounds = [
            AggPlan(self.time_column, "min", s.start_column),
            AggPlan(self.time_column, "max", "__dp_session_last"),
        ]
        aggregated = aggregate_frame(
            self.session_ids(frame, sid),
            [*self.group_by, sid],
            [*bounds, *self.plans],
            component=self.label,
        )
        assert self.gap is not None
        ended = aggregated.with_columns(
            (nw.col("__dp_session_last") + self.gap).alias(s.end_column)
        )
        return self.finish(ended)
