"""WindowedAggregator: tumbling and sliding time windows with DataAggregator's aggregations."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import narwhals as nw
from pydantic import Field, field_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.engines import engine_of
from data_pipeline.core.errors import ConfigError, UnsupportedOperationError
from data_pipeline.processing._aggregation import AggPlan, aggregate_frame, parse_aggregations
from data_pipeline.processing._expr import SqlExpression
from data_pipeline.processing.aggregate import SortKey, parse_sort, sort_frame
from data_pipeline.processing.base import DataProcessor

__all__ = ["WindowedAggregator", "WindowedAggregatorConfig", "parse_duration"]

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

    count, unit, _ = parse_duration(step)
    native = frame.to_native()
    interval = f"{count} {_UNITS[unit]}"
    return nw.from_native(native.withColumn(name, F.window(F.col(column), interval).start))


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


class WindowedAggregatorConfig(ConfigModel):
    """Config of :class:`WindowedAggregator` (see its docstring)."""

    time_column: str
    window: str
    slide: str | None = None
    group_by: list[str] = Field(default_factory=list)
    aggregations: dict[str, Any]
    having: str | None = None
    sort: list[str | SortKey] | bool | None = None
    order_by: list[str] = Field(default_factory=list)
    start_column: str = "window_start"
    end_column: str = "window_end"

    _lists = field_validator("group_by", "order_by", mode="before")(_as_list)

    @field_validator("window", "slide")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class WindowedAggregator(DataProcessor):
    """Aggregate rows per time window (and per group) of a timestamp column.

    Tumbling windows (``window`` only) cut time into ``[start, start + window)`` intervals
    aligned on the Unix epoch (a ``"1d"`` window starts at midnight UTC). Sliding (hopping)
    windows add ``slide``: a window of that length starts every ``slide``, so each row counts in
    ``window / slide`` windows (``window`` must be a multiple of ``slide``). Durations: a number
    and ``s``, ``m``, ``h`` or ``d``. The aggregations, ``having``, ``sort`` and ``order_by`` are
    those of :class:`DataAggregator` (the same code). Output: the group keys, ``window_start``,
    ``window_end``, then the aggregates, sorted by window start and the keys. Rows with a null
    timestamp belong to no window. DuckDB truncates only to one unit (``1h``, ``1d``); for
    ``15m`` on DuckDB use a Polars frame. The streaming form (:class:`StreamProcessor`) uses this
    same definition and keeps the partial aggregates between micro-batches.

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
    """

    config_model = WindowedAggregatorConfig
    settings: WindowedAggregatorConfig

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        s = self.settings
        self.group_by: list[str] = list(s.group_by)
        self.time_column = s.time_column
        self.window_count, self.window_unit, self.window = parse_duration(s.window)
        self.slide: dt.timedelta | None = None
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
        self.having: SqlExpression | None = None
        if s.having is not None:
            self.having = SqlExpression(s.having, what="having condition", component=self.label)
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

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        needed = [self.time_column, *[c for c in self.group_by if c != self.time_column]]
        for plan in self.plans:
            needed.extend(c for c in plan.reads if c not in needed)
        return needed

    def output_columns(self, columns: Sequence[str]) -> list[str]:
        s = self.settings
        return [*self.group_by, s.start_column, s.end_column, *[p.output for p in self.plans]]

    # -- the shared definition (batch and stream) ------------------------------------------

    def assign_windows(self, frame: Any) -> Any:
        """Rows with their ``window_start`` (a row is repeated once per sliding window)."""
        start = self.settings.start_column
        step = f"{self.step_count}{self.step_unit}"
        if engine_of(frame) == "duckdb" and self.step_count != 1:
            raise UnsupportedOperationError(
                f"the engine 'duckdb' cannot cut windows of {step!r}: it truncates timestamps to "
                "one unit only",
                component=self.label,
                hint="use a window/slide of 1s, 1m, 1h or 1d on DuckDB, or pass a Polars frame "
                "(e.g. relation.pl())",
            )
        frame = frame.filter(~nw.col(self.time_column).is_null())
        if engine_of(frame) == "pyspark":
            # Narwhals truncates on Spark to one unit only and date_trunc turns a naive timestamp
            # into a zoned one; Spark's window() cuts any step and keeps the type
            frame = _spark_window_start(frame, self.time_column, start, step)
            base = nw.col(start)
        else:
            base = nw.col(self.time_column).dt.truncate(step)
        if self.slide is None:
            return frame.with_columns(base.alias(start))
        copies = int(self.window / self.slide)
        parts = [frame.with_columns((base - self.slide * j).alias(start)) for j in range(copies)]
        return nw.concat(parts, how="vertical")

    def finish(self, aggregated: Any) -> Any:
        """Add ``window_end``, order the columns, apply ``having`` and ``sort``."""
        s = self.settings
        result = aggregated.with_columns(
            (nw.col(s.start_column) + self.window).alias(s.end_column)
        ).select(self.output_columns([]))
        if self.having is not None:
            result = result.filter(self.having.to_narwhals(predicate=True))
        return sort_frame(result, self.sort_keys)

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        windowed = self.assign_windows(frame)
        aggregated = aggregate_frame(windowed, self.keys, self.plans, component=self.label)
        op.details["window"] = self.settings.window
        if self.settings.slide:
            op.details["slide"] = self.settings.slide
        return self.finish(aggregated)
