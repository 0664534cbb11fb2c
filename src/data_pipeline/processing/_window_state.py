"""The partial aggregates of open windows, kept between batches (StreamProcessor, BatchProcessor).

Tumbling and sliding windows keep one row of partial aggregates per group and *pane*: a
slide-sized slice of time (a tumbling window is its own pane). A row is aggregated into its
pane once, whatever the window/slide ratio; a window is the merge of the ``window / slide``
panes it covers, computed only when it is emitted, with rolling sums / minima / maxima over the
panes of each group (``rolling_*_by`` on one integer axis), so emitting a window costs the
same whatever window / slide is. ``first`` / ``last`` have no rolling form: their windows merge
the panes they cover (the one case whose cost grows with window / slide).

Session windows keep one row per open session (group, first and last time, partials); a batch's
rows are cut into sessions, then merged with the stored sessions they touch (gaps and islands).

All merges are exact (PartialAggregation: sum of sums, mean = sum / count, Chan's merge for std,
never an average of averages). ``first`` / ``last`` without an ``order_by`` follow the arrival
order of the rows (a sequence number each row gets on arrival), so the answer does not depend on
how the rows were cut into batches.

Inside, a group is a dense integer id (``groups`` maps it back to the group's values) and times
are the physical integers of the time column's unit (nanoseconds survive), so sorting, joining
and rolling work on integer columns only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import narwhals as nw

from data_pipeline.core.engines import engine_of
from data_pipeline.core.errors import UnsupportedOperationError
from data_pipeline.core.frames import to_polars
from data_pipeline.core.replay import Replay
from data_pipeline.processing._aggregation import (
    AggPlan,
    PartialAggregation,
    check_engine_support,
)
from data_pipeline.processing.window import WindowedAggregator

__all__ = ["ARRIVAL", "GROUP", "PANE", "WindowState", "time_unit_per_second", "unsupported_time"]

#: The arrival sequence number of each row (first/last without an order_by follow it).
ARRIVAL = "__dp_arrival"
#: The pane start of a row / state row (physical integer of the time column).
PANE = "__dp_pane"
#: The dense id of a group (a row of ``WindowState.groups``).
GROUP = "__dp_group"
_SESSION = "__dp_session"
_START = "__dp_start"
_LAST = "__dp_last"
_T = "__dp_t"
_AXIS = "__dp_axis"
_ANCHOR = "__dp_anchor"
_PANES = "__dp_panes"
_ORDERED = ("first", "last")
_SIMPLE = frozenset({"sum", "count", "mean", "min", "max"})
_UNITS = {"ns": 1_000_000_000, "us": 1_000_000, "ms": 1_000}


def time_unit_per_second(dtype: Any) -> int:
    """How many physical units of a Polars Datetime ``dtype`` make a second."""
    return _UNITS[getattr(dtype, "time_unit", None) or "us"]


def _ticks(delta: dt.timedelta, per_second: int) -> int:
    """A timedelta in physical units (exact: timedeltas are whole microseconds)."""
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros * per_second // 1_000_000


def _stream_plans(plans: list[AggPlan]) -> tuple[list[AggPlan], bool]:
    """``first``/``last`` without an order follow the arrival order (a hidden sequence column)."""
    out, arrival = [], False
    for plan in plans:
        if plan.func in _ORDERED and not plan.order_by and plan.column != "*":
            plan = dataclasses.replace(plan, order_by=(ARRIVAL,))
            arrival = True
        out.append(plan)
    return out, arrival


def unsupported_time(column: str, dtype: Any, component: str | None) -> UnsupportedOperationError:
    return UnsupportedOperationError(
        f"the time column {column!r} has the type {dtype}; windows need a timestamp or a date",
        component=component,
        hint="convert it first, e.g. with a DataTypeConverter to 'datetime'",
    )


def _extreme(dtype: Any, how: str) -> Any:
    """The NumPy value of ``dtype`` that loses every ``min`` / ``max`` comparison."""
    import numpy as np

    if dtype.kind == "f":
        return np.inf if how == "min" else -np.inf
    info = np.iinfo(dtype)
    return info.max if how == "min" else info.min


def _dense_fill(column: str, how: str, dtype: Any) -> Any:
    """``column`` as plain numbers for a NumPy grid: temporal values as Int64, a null sum as
    0, a null minimum / maximum as the value that loses every comparison (:func:`_extreme`)."""
    import numpy as np
    import polars as pl

    physical = pl.col(column).to_physical()
    if how == "sum":
        return physical.fill_null(0).alias(column)
    if not dtype.is_float():
        physical = physical.cast(pl.Int64)
    kind = np.dtype(np.float64 if dtype.is_float() else np.int64)
    return physical.fill_null(_extreme(kind, how)).alias(column)


def _dense_series(name: str, values: Any, fill: Any, dtype: Any) -> Any:
    """A column of a NumPy grid as a Polars Series of ``dtype``: ``fill`` (a minimum or maximum
    no row had) becomes null again."""
    import numpy as np
    import polars as pl

    series = pl.Series(name, values)
    if fill is not None:
        empty = np.flatnonzero(values == fill)
        if empty.size:
            series = series.scatter(empty, None)
    return series if series.dtype == dtype else series.cast(dtype)


class WindowState:
    """Open windows of one :class:`WindowedAggregator` as merged partial aggregates (Polars).

    ``add(frame)`` aggregates a batch (any engine) into the state; ``select_*`` give the
    windows to emit as finished rows (the step's output columns); ``drop_*`` remove what closed.
    Watermarks and lateness are the caller's (:class:`StreamProcessor`); this class only knows
    windows and their merge.
    """

    def __init__(self, step: WindowedAggregator, component: str | None = None) -> None:
        self.step = step
        self.component = component or step.label
        self.group_by = list(step.group_by)
        self.kind = step.kind
        self.original_plans = list(step.plans)
        self.plans, self.needs_arrival = _stream_plans(self.original_plans)
        if self.kind == "session":
            bounds = [
                AggPlan(step.time_column, "min", _START),
                AggPlan(step.time_column, "max", _LAST),
            ]
            self.plans = [*bounds, *self.plans]
            inner = _SESSION
        else:
            inner = PANE
        # partials of a batch (on its engine, by the group values) and of the state (by id)
        self.partials = PartialAggregation([*self.group_by, inner], self.plans, self.component)
        self.merger = PartialAggregation([GROUP, inner], self.plans, self.component)
        # polars.DataFrame: GROUP, PANE or _SESSION, partials; panes are kept sorted by PANE,
        # so the panes a batch changes, the windows read and the closed ones are slices
        self._state: Any = None
        self.groups: Any = None  # polars.DataFrame of the group values; row i = group id i
        self._id_table: Any = None
        self.time_dtype: Any = None  # the Polars dtype of the time column (set by the first add)
        self.arrivals = 0  # rows added so far (the next arrival number)
        # the same work for every micro-batch, planned once (core.replay)
        self._batch_partials = Replay(self._batch_plan)
        self._finished = Replay(self._finish_plan)

    def _types(self) -> tuple[Any, ...]:
        """What the kept plans depend on beside their inputs' schemas."""
        return (self.time_dtype, tuple(self.partials.dtypes.items()))

    # -- durations in the time column's unit ------------------------------------------------

    def ticks(self, delta: dt.timedelta) -> int:
        return _ticks(delta, time_unit_per_second(self.time_dtype))

    @property
    def window_ticks(self) -> int:
        return self.ticks(self.step.window)

    @property
    def pane_ticks(self) -> int:
        return self.ticks(self.step.pane)

    @property
    def gap_ticks(self) -> int:
        assert self.step.gap is not None
        return self.ticks(self.step.gap)

    @property
    def state(self) -> Any:
        return self._state

    @state.setter
    def state(self, value: Any) -> None:
        """A state from elsewhere (a snapshot): panes sorted by their start."""
        if value is not None and self.kind != "session" and value.height:
            value = value.sort(PANE)
        self._state = value

    def _span(self, low: int | None, high: int | None) -> Any:
        """The panes whose start is in ``[low, high]`` (None: unbounded), a slice."""
        start = 0 if low is None else self._position(low, "left")
        stop = self._state.height if high is None else self._position(high, "right")
        return self._state.slice(start, max(stop - start, 0))

    def _keep(self, *parts: Any) -> None:
        """Set the pane state from parts already in PANE order, rechunked now and then."""
        import polars as pl

        state = parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical_relaxed")
        if state.n_chunks() > 16:
            state = state.rechunk()
        self._state = state

    @property
    def rows(self) -> int:
        """Rows of state (panes or sessions)."""
        return 0 if self.state is None else int(self.state.height)

    @property
    def size_bytes(self) -> int:
        total = 0 if self.state is None else int(self.state.estimated_size())
        return total + (0 if self.groups is None else int(self.groups.estimated_size()))

    def _name(self, index: int, part: str) -> str:
        return self.partials._name(index, part)

    # -- adding a batch ---------------------------------------------------------------------

    def add(self, frame: Any, *, checked: bool = False) -> Any:
        """Aggregate a batch (a Narwhals frame) into the state; rows without a time are skipped.

        ``checked``: the rows all have a time of the state's type (the stream checked them).

        Returns what the batch touched, a Polars DataFrame: ``GROUP`` and ``PANE`` (panes) or
        ``GROUP`` and the merged sessions' start (sessions).
        """
        import polars as pl

        if not checked:
            frame = self._timed(frame.filter(~nw.col(self.step.time_column).is_null()))
        if self.needs_arrival:
            # first/last without an order: the arrival order, as a sequence number per row
            check_engine_support(frame, self.original_plans, self.component)
            height = int(frame.shape[0])
            frame = frame.with_row_index(ARRIVAL).with_columns(
                (nw.col(ARRIVAL).cast(nw.Int64) + self.arrivals).alias(ARRIVAL)
            )
            self.arrivals += height
        if self.kind == "session":
            return self._add_sessions(frame)
        if engine_of(frame) == "polars":  # a stream's micro-batch: the plans are kept
            native = frame.to_native()
            if self.groups is None:
                self.groups = native.select(self.group_by).clear()
            if self.time_dtype is None:
                self.time_dtype = native.schema[self.step.time_column]
            partial = self._with_ids(self._batch_partials(native, self._ids(), key=self._types()))
        else:
            framed = self.step.pane_start(frame, PANE)
            partial = self._identified(to_polars(self.partials.partial(framed).to_native()), PANE)
        if partial.height == 0:
            if self._state is None:
                self._state = partial
            return partial.select(GROUP, PANE)
        if self._state is None or self._state.height == 0:
            cut, tail = 0, partial.clear()
        else:
            # only the panes from the batch's oldest on can change (streams are mostly in order)
            oldest = int(partial[PANE].min())
            cut = self._position(oldest, "left")
            tail = self._state.slice(cut)
        merged = self._merge_dense(tail, partial)
        if merged is None:
            both = pl.concat([tail, partial], how="vertical_relaxed")
            merged = self._merge(both).sort(PANE)
        self._keep(merged) if cut == 0 else self._keep(self._state.slice(0, cut), merged)
        return pl.DataFrame([partial.get_column(GROUP), partial.get_column(PANE)])

    def _batch_plan(self, rows: Any, ids: Any) -> Any:
        """A micro-batch -> its partials per group id and pane (``PANE`` physical); the group
        values stay, and ``GROUP`` is null for a group not seen before."""

        partial = self.partials.partial_plan(self.step.pane_start(rows, PANE)).to_native()
        partial = self._numbered(partial)
        if not self.group_by:
            return nw.from_native(partial)
        ids = ids.to_native()
        return nw.from_native(partial.join(ids, on=self.group_by, how="left", nulls_equal=True))

    def _numbered(self, partial: Any) -> Any:
        """Pane partials (a Polars DataFrame or LazyFrame) with ``PANE`` as physical integers,
        and without group columns the one group id 0 in front."""
        import polars as pl

        partial = partial.with_columns(pl.col(PANE).to_physical().cast(pl.Int64))
        if self.group_by:
            return partial
        return partial.select(pl.lit(0, pl.Int64).alias(GROUP), pl.all())

    def _position(self, pane: int, side: str) -> int:
        """Where ``pane`` falls in the state's (sorted) panes."""
        import numpy as np

        return int(np.searchsorted(self._state[PANE].to_numpy(), pane, side=side))  # type: ignore[call-overload]

    def _identified(self, partial: Any, inner: str) -> Any:
        """A batch's partials with the group values replaced by group ids (new groups get new
        ids), and ``PANE`` as physical integers."""
        import polars as pl

        if inner == PANE:
            dtype = partial.schema[PANE]
            if self.time_dtype is None and isinstance(dtype, pl.Datetime):
                self.time_dtype = dtype
            partial = self._numbered(partial)
        elif self.time_dtype is None and partial.height:
            self.time_dtype = partial.schema[self._name(0, "v")]
        if not self.group_by:
            if self.groups is None:
                self.groups = pl.DataFrame()
            if inner == PANE:
                return partial  # numbered above
            return partial.select(pl.lit(0, pl.Int64).alias(GROUP), pl.all())
        if self.groups is None:
            self.groups = partial.select(self.group_by).clear()
        return self._with_ids(partial)

    def _with_ids(self, partial: Any) -> Any:
        """Partials with their group values -> with the group's id instead (``GROUP`` first);
        a group not seen before (``GROUP`` null or absent) gets the next id."""
        import polars as pl

        if not self.group_by:
            return partial
        keys = self.group_by
        if GROUP not in partial.columns:
            partial = partial.join(self._ids(), on=keys, how="left", nulls_equal=True)
        if partial[GROUP].null_count():
            fresh = partial.filter(pl.col(GROUP).is_null()).select(keys)
            self.groups = pl.concat(
                [self.groups, fresh.unique(maintain_order=True)], how="vertical_relaxed"
            )
            self._id_table = None
            partial = partial.drop(GROUP).join(self._ids(), on=keys, how="left", nulls_equal=True)
        dropped = {GROUP, *keys}
        rest = [partial.get_column(c) for c in partial.columns if c not in dropped]
        return pl.DataFrame([partial.get_column(GROUP), *rest])  # a new frame, no query

    def _ids(self) -> Any:
        """The group values with their ids (kept until the groups change)."""
        import polars as pl

        if self.groups is None:
            return pl.DataFrame(schema={GROUP: pl.Int64})
        if self._id_table is None:
            self._id_table = self.groups.with_row_index(GROUP).with_columns(
                pl.col(GROUP).cast(pl.Int64)
            )
        return self._id_table

    def _merge(self, frame: Any) -> Any:
        return self.merger.merge(nw.from_native(frame)).to_native()

    def _timed(self, frame: Any) -> Any:
        """Check the time column's type; a date becomes a timestamp (windows cut time)."""
        column = self.step.time_column
        schema = frame.collect_schema() if isinstance(frame, nw.LazyFrame) else frame.schema
        dtype = schema[column]
        if dtype == nw.Date:
            return frame.with_columns(nw.col(column).cast(nw.Datetime("us")))
        if not isinstance(dtype, nw.Datetime):
            raise unsupported_time(column, dtype, self.component)
        return frame

    def _islands(self, rows: Any, lo: str, hi: str, gap: int, name: str) -> Any:
        """``rows`` (sorted by ``GROUP`` and ``lo``) with ``name``: an id of the island of
        overlapping intervals ``[lo, hi + gap]`` each belongs to (unique across groups)."""
        import polars as pl

        group = pl.col(GROUP)
        reach = pl.col(hi).to_physical().cum_max().over(GROUP)
        rows = rows.with_columns(reach.alias("__dp_reach"))
        new = (group != group.shift(1)).fill_null(True) | (
            pl.col(lo).to_physical() > pl.col("__dp_reach").shift(1) + gap
        )
        return rows.with_columns(new.cast(pl.Int64).cum_sum().alias(name)).drop("__dp_reach")

    # -- sessions ---------------------------------------------------------------------------

    def _add_sessions(self, frame: Any) -> Any:
        import polars as pl

        if isinstance(frame, nw.DataFrame) and engine_of(frame) == "pyarrow":
            frame = nw.from_native(frame.to_polars())  # no ordered window functions there
        ids = self.step.session_ids(frame, _SESSION)
        partial = self._identified(to_polars(self.partials.partial(ids).to_native()), _SESSION)
        start, last = self._name(0, "v"), self._name(1, "v")
        if partial.height == 0:
            if self.state is None:
                self.state = partial
            return partial.select(GROUP, start)
        partial = partial.with_columns(pl.lit(True).alias(_ANCHOR))
        if self.state is None or self.state.height == 0:
            rest, mine = None, None
        else:
            touched_groups = partial.select(GROUP).unique()
            mine = self.state.join(touched_groups, on=GROUP, how="semi")
            rest = self.state.join(touched_groups, on=GROUP, how="anti")
        combined = (
            partial
            if mine is None
            else pl.concat(
                [mine.with_columns(pl.lit(False).alias(_ANCHOR)), partial], how="vertical_relaxed"
            )
        )
        ordered = self._islands(combined.sort(GROUP, start), start, last, self.gap_ticks, _SESSION)
        touched = (
            ordered.group_by(GROUP, _SESSION)
            .agg(pl.col(_ANCHOR).any())
            .filter(pl.col(_ANCHOR))
            .drop(_ANCHOR)
        )
        merged = self._merge(ordered.drop(_ANCHOR))
        result = merged.join(touched, on=[GROUP, _SESSION], how="semi")
        self.state = merged if rest is None else pl.concat([rest, merged], how="vertical_relaxed")
        # a session is known by its group and start from now on: renumber to keep ids unique
        self.state = self.state.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(_SESSION))
        return result.select(GROUP, start)

    # -- selecting windows ------------------------------------------------------------------

    def select_panes(
        self, seeds: Any = None, *, start_after: int | None = None, start_upto: int | None = None
    ) -> Any:
        """Finished windows that contain a pane of ``seeds`` (``GROUP``, ``PANE``; None: every
        pane of the state) and start ``> start_after`` and ``<= start_upto`` (physical time;
        None: no bound).

        Tumbling windows are their panes; a sliding window is the merge of the panes it covers.
        """

        if self.state is None or self.state.height == 0:
            return self.empty()
        state = self.state
        if self.step.slide is None:  # tumbling: a window is its pane
            rows = self._span(None if start_after is None else start_after + 1, start_upto)
            if seeds is not None:
                rows = rows.join(seeds.unique(), on=[GROUP, PANE], how="semi")
            return self._finish_panes(rows.rename({PANE: _START}))
        windows = None
        if seeds is None and start_upto is not None:
            windows = self._grid(start_after, start_upto)
        if windows is None:
            windows = self._windows_of(
                state.select(GROUP, PANE) if seeds is None else seeds, start_after, start_upto
            )
        if windows.height == 0:
            return self.empty()
        combined = self._combine_dense(windows)
        if combined is None:
            combined = self._combine_rolling(windows)
        if combined is None:
            combined = self._combine_by_merge(windows)
        return self._finish_panes(combined)

    def _simple_parts(self) -> list[tuple[str, str]] | None:
        """Each partial column and how it merges (``sum``, ``min``, ``max``) when every
        aggregation is a sum, count, mean, min or max (PartialAggregation's documented parts:
        counts and sums add up, minima and maxima take theirs); None otherwise (std, first and
        last merge through PartialAggregation itself)."""
        if any(p.func not in _SIMPLE and p.column != "*" for p in self.plans):
            return None
        kinds = {"count": "sum", "sum": "sum", "min": "min", "max": "max"}
        parts = []
        for part in self.partials.parts:
            if part.func not in kinds:
                return None
            parts.append((part.output, kinds[part.func]))
        return parts

    def _combine_dense(self, windows: Any) -> Any:
        """Merged partials per window from a dense group x pane grid (NumPy), in time that does
        not grow with window / slide: the grid is cut into blocks of ``window / slide`` panes,
        each block accumulated from both ends (prefix and suffix sums, minima, maxima); a window
        spans at most two blocks, so it is one suffix combined with one prefix (two reads; no
        subtraction, so no cancellation). The grid holds only the panes the windows asked for
        read, its blocks starting at the first of them: when windows close in time order (one
        start per group per batch) each window is one whole block, reduced in one pass.

        None when an aggregation is not a sum, count, mean, min or max, when the grid would be
        much larger than the state (sparse groups), or when a partial column is not numeric /
        temporal or holds NaN / inf in a minimum or maximum: the caller merges with Polars.
        """
        import numpy as np
        import polars as pl

        parts = self._simple_parts()
        if parts is None:
            return None
        slide = self.pane_ticks
        k = self.window_ticks // slide
        start_ticks = windows[_START].to_numpy()
        win_g = windows[GROUP].to_numpy()
        # the grid starts at the first window asked for and ends at the last one's last pane:
        # the panes outside no window reads (most of the state once windows close in order)
        base = int(start_ticks.min())
        top = int(start_ticks.max()) + (k - 1) * slide
        groups = int(win_g.max()) + 1
        columns = -(-((top - base) // slide + 1) // k) * k  # whole blocks
        cells = groups * columns
        if cells > 20_000_000:
            return None
        # the panes the windows read, as grid cells and plain numbers
        dense = self._dense([self._span(base, top)], parts, base)
        if dense is None:
            return None
        group, pane, values, fills = dense
        inside = group < groups
        cell = group[inside] * columns + pane[inside]
        if cells > 4 * (cell.size + windows.height) + 100_000:
            return None
        first = (start_ticks - base) // slide
        aligned = first % k == 0
        every_aligned = bool(aligned.all())

        def reduce(values: Any, fill: Any, how: str) -> Any:
            op = {"sum": np.add, "min": np.minimum, "max": np.maximum}[how]
            grid = np.full(cells, fill, dtype=values.dtype)
            grid[cell] = values
            blocks = grid.reshape(groups, columns // k, k)
            if every_aligned:  # each window is one whole block: one pass, no prefix / suffix
                return op.reduce(blocks, axis=2)[win_g, first // k]
            prefix = op.accumulate(blocks, axis=2).reshape(groups, columns)
            suffix = op.accumulate(blocks[:, :, ::-1], axis=2)[:, :, ::-1].reshape(groups, columns)
            head = suffix[win_g, first]
            if k == 1:
                return head
            return np.where(aligned, head, op(head, prefix[win_g, first + k - 1]))

        panes = reduce(np.ones(cell.size, dtype=np.int64), 0, "sum")
        keep = panes > 0
        out: dict[str, Any] = {GROUP: win_g[keep], _START: start_ticks[keep], _PANES: panes[keep]}
        schema = self.state.schema
        for column, how in parts:
            merged = reduce(values[column][inside], fills.get(column, 0), how)[keep]
            out[column] = _dense_series(column, merged, fills.get(column), schema[column])
        return pl.DataFrame(out)

    def _dense(self, frames: list[Any], parts: list[tuple[str, str]], base: int) -> Any:
        """The rows of ``frames`` (``GROUP``, ``PANE``, partials; one schema) as NumPy arrays
        for a dense grid: group ids, pane indexes from ``base`` (in panes), each partial column
        as plain numbers, and per minimum / maximum the fill that loses every comparison (a
        null minimum / maximum is read as that fill).

        None when NumPy would not give Polars' answer: a column that is not numeric or
        temporal (or a decimal), NaN in a minimum / maximum (NumPy propagates it, Polars
        ignores it), a value equal to its fill (it would read as null), or a pane off the
        ``base + n * slide`` grid."""
        import numpy as np

        schema = frames[0].schema
        if any(frame.schema != schema for frame in frames[1:]):
            return None
        for column, _ in parts:
            dtype = schema[column]
            if not (dtype.is_numeric() or dtype.is_temporal()) or dtype.is_decimal():
                return None
        pieces: dict[str, list[Any]] = {column: [] for column in (GROUP, PANE, *dict(parts))}
        nulls = dict.fromkeys(dict(parts), 0)
        for frame in frames:
            # plain numeric columns without nulls are read as they are; the others are made
            # plain numbers by Polars (one select)
            direct = {
                column
                for column, _ in parts
                if schema[column].is_numeric() and not frame[column].null_count()
            }
            exprs = [_dense_fill(c, how, schema[c]) for c, how in parts if c not in direct]
            filled = frame.select(exprs) if exprs else frame
            for column in pieces:
                source = frame if column in direct or column in (GROUP, PANE) else filled
                pieces[column].append(source[column].to_numpy())
            for column in nulls:
                nulls[column] += frame[column].null_count()
        arrays = {c: v[0] if len(v) == 1 else np.concatenate(v) for c, v in pieces.items()}
        fills: dict[str, Any] = {}
        for column, how in parts:
            values = arrays[column]
            if how == "sum":
                continue
            fills[column] = _extreme(values.dtype, how)
            if np.count_nonzero(values == fills[column]) != nulls[column]:
                return None
            if values.dtype.kind == "f" and np.isnan(values).any():
                return None
        offset = arrays[PANE] - base
        slide = self.pane_ticks
        if (offset % slide).any():
            return None
        values = {column: arrays[column] for column, _ in parts}
        return arrays[GROUP], offset // slide, values, fills

    def _merge_dense(self, tail: Any, partial: Any) -> Any:
        """The open panes (``tail``) merged with a batch's partials on a dense group x pane
        grid (NumPy), when every aggregation is a sum, count, mean, min or max: both are a few
        panes of every group, and a grid merges them in one pass where a group-by sorts.
        Panes come out sorted by start (then group id). None when :meth:`_dense` says no, or
        when the grid would be much larger than the rows: the caller merges with Polars."""
        import numpy as np
        import polars as pl

        parts = self._simple_parts()
        if parts is None:
            return None
        frames = [tail, partial] if tail.height else [partial]
        base = int(partial[PANE].min())  # the tail starts at the batch's oldest pane
        dense = self._dense(frames, parts, base)
        if dense is None:
            return None
        group, pane, values, fills = dense
        groups = int(group.max()) + 1
        cells = (int(pane.max()) + 1) * groups
        if cells > 4 * group.size + 100_000:
            return None
        cell = pane * groups + group
        seen = np.zeros(cells, dtype=bool)
        seen[cell] = True
        taken = np.flatnonzero(seen)
        out: dict[str, Any] = {
            GROUP: taken % groups,
            PANE: base + (taken // groups) * self.pane_ticks,
        }
        # a pane of a group is at most once in the tail and once in the batch: the tail's
        # values are written, the batch's combined in (no unbuffered ufunc.at)
        split = tail.height
        head, rest = cell[:split], cell[split:]
        schema = partial.schema
        for column, how in parts:
            column_values = values[column]
            merged = np.full(cells, fills.get(column, 0), dtype=column_values.dtype)
            merged[head] = column_values[:split]
            op = {"sum": np.add, "min": np.minimum, "max": np.maximum}[how]
            merged[rest] = op(merged[rest], column_values[split:])
            out[column] = _dense_series(column, merged[taken], fills.get(column), schema[column])
        merged_frame = pl.DataFrame(out)
        if merged_frame.columns != partial.columns:
            merged_frame = merged_frame.select(partial.columns)
        return merged_frame

    def _grid(self, after: int | None, upto: int) -> Any:
        """Every group of the state x every window start in ``(after, upto]`` (empty windows are
        dropped after the merge); None when that grid would be much larger than the state
        (sparse groups, a long jump of the watermark): the windows then come from the panes."""
        import polars as pl

        slide, width = self.pane_ticks, self.window_ticks
        panes = self.state[PANE]
        anchor = int(panes[0])
        low = int(panes.min()) - width + slide
        if after is not None:
            low = max(low, after + 1)
        first = anchor - ((anchor - low) // slide) * slide  # the first grid point >= low
        last = anchor + ((upto - anchor) // slide) * slide  # the last grid point <= upto
        if last < first:
            return pl.DataFrame(schema={GROUP: pl.Int64, _START: pl.Int64})
        import numpy as np

        points = (last - first) // slide + 1
        # every id up to the largest in the state (ids are dense: few have no pane left)
        groups = int(self.state[GROUP].max()) + 1
        if points * groups > 2 * self.state.height + 10_000:
            return None
        starts = np.arange(first, last + 1, slide, dtype=np.int64)
        return pl.DataFrame(
            {
                GROUP: np.repeat(np.arange(groups, dtype=np.int64), points),
                _START: np.tile(starts, groups),
            }
        )

    def _windows_of(self, seeds: Any, after: int | None, upto: int | None) -> Any:
        """The distinct windows (``GROUP``, ``_START``) containing the seed panes, in bounds.

        Each seed pane ``p`` lies in the windows starting at ``p - window + slide`` ... ``p``;
        the intervals of a group are united first, so the list has one row per window.
        """
        import polars as pl

        width, slide = self.window_ticks, self.pane_ticks
        pane = pl.col(PANE)
        lo = pane - width + slide
        hi = pane
        if after is not None:  # first start > after, on the seed's grid
            lo = pl.max_horizontal(lo, lo + ((after - lo) // slide + 1) * slide)
        if upto is not None:  # last start <= upto, on the seed's grid
            hi = pl.min_horizontal(hi, hi - ((hi - upto + slide - 1) // slide) * slide)
        spans = (
            seeds.select(GROUP, lo.alias("lo"), hi.alias("hi"))
            .filter(pl.col("lo") <= pl.col("hi"))
            .unique()
        )
        if spans.height == 0:
            return spans.select(GROUP, pl.col("lo").alias(_START))
        spans = self._islands(spans.sort(GROUP, "lo"), "lo", "hi", slide, "isl")
        islands = spans.group_by(GROUP, "isl").agg(pl.col("lo").min(), pl.col("hi").max())
        return islands.select(
            GROUP, pl.int_ranges("lo", pl.col("hi") + slide, slide).alias(_START)
        ).explode(_START)

    def _combine_rolling(self, windows: Any) -> Any:
        """Merged partials per window: rolling sums / minima / maxima over the panes, read at
        each window's last pane (an anchor row stands there); None unless every aggregation is
        a sum, count, mean, min or max, or when a minimum / maximum holds NaN (a rolling
        minimum does not skip NaN; ``min`` / ``max`` do, unless every value is NaN)."""
        import polars as pl

        parts = self._simple_parts()
        if parts is None:
            return None
        schema = self.state.schema
        if any(
            not (schema[c].is_numeric() or schema[c].is_temporal()) or schema[c].is_decimal()
            for c, _ in parts
        ):
            return None  # Polars rolls neither text minima nor decimals: merge those
        floats = [c for c, how in parts if how != "sum" and schema[c].is_float()]
        if floats and self.state.select(pl.any_horizontal(pl.col(floats).is_nan().any())).item():
            return None
        width, slide = self.window_ticks, self.pane_ticks
        panes = self.state
        if windows.height * 4 < panes.height:
            panes = panes.join(windows.select(GROUP).unique(), on=GROUP, how="semi")
        anchors = windows.select(
            GROUP, _START, (pl.col(_START) + width - slide).alias(_T), pl.lit(True).alias(_ANCHOR)
        )
        rows = pl.concat(
            [
                panes.rename({PANE: _T}).with_columns(
                    pl.lit(False).alias(_ANCHOR), pl.lit(1, pl.Int64).alias(_PANES)
                ),
                anchors,
            ],
            how="diagonal_relaxed",
        )
        # one integer axis: groups laid end to end, far enough apart that no window spans two
        low = int(rows[_T].min())
        span = int(rows[_T].max()) - low + width + 1
        groups = int(rows[GROUP].max()) + 1
        flat = groups * span * 2 < 2**62
        if flat:
            axis = (pl.col(GROUP) * span + (pl.col(_T) - low)) * 2 + pl.col(_ANCHOR).cast(pl.Int64)
            rows = rows.with_columns(axis.alias(_AXIS)).sort(_AXIS)
            by, size = _AXIS, f"{2 * width}i"
        else:
            rows = rows.sort(GROUP, _T, _ANCHOR)
            by, size = _T, f"{width}i"

        def roll(column: str, how: str) -> Any:
            expr = getattr(pl.col(column), f"rolling_{how}_by")(by, window_size=size)
            return (expr if flat else expr.over(GROUP)).alias(column)

        exprs = [roll(_PANES, "sum"), *[roll(column, how) for column, how in parts]]
        return rows.with_columns(exprs).filter(pl.col(_ANCHOR) & (pl.col(_PANES).fill_null(0) > 0))

    def _combine_by_merge(self, windows: Any) -> Any:
        """Merged partials per window by merging the panes each window covers with
        PartialAggregation (std, first, last; sparse groups): cost grows with window / slide."""
        import polars as pl

        width, slide = self.window_ticks, self.pane_ticks
        pane = pl.col(PANE)
        low, high = windows[_START].min(), windows[_START].max()
        needed = self.state.filter(pane.is_between(low, high + width - slide)).join(
            windows.select(GROUP).unique(), on=GROUP, how="semi"
        )
        exploded = (
            needed.with_columns(
                pl.int_ranges(pane - width + slide, pane + slide, slide).alias(_START)
            )
            .explode(_START)
            .join(windows, on=[GROUP, _START], how="semi")
            .sort(PANE)
            .drop(PANE)
        )
        by_window = PartialAggregation([GROUP, _START], self.plans, self.component)
        by_window.dtypes = self.partials.dtypes
        return by_window.merge(nw.from_native(exploded)).to_native()

    def select_sessions(self, starts: Any = None, *, closed_before: int | None = None) -> Any:
        """Finished sessions: those in ``starts`` (``GROUP`` and start; None: all), or those
        whose end (last time + gap) is ``< closed_before`` (physical time)."""
        import polars as pl

        if self.state is None or self.state.height == 0:
            return self.empty()
        rows = self.state
        start, last = self._name(0, "v"), self._name(1, "v")
        if starts is not None:
            rows = rows.join(starts, on=[GROUP, start], how="semi")
        if closed_before is not None:
            rows = rows.filter(pl.col(last).to_physical() + self.gap_ticks < closed_before)
        return self._finish_sessions(rows)

    # -- dropping closed windows --------------------------------------------------------------

    def drop_panes_upto(self, pane_upto: int) -> int:
        """Forget the panes whose start is ``<= pane_upto``; returns how many were dropped."""
        if self.state is None:
            return 0
        before = self._state.height
        self._state = self._span(pane_upto + 1, None)
        self._compact()
        return int(before - self.state.height)

    def drop_sessions_closed_before(self, closed_before: int) -> int:
        """Forget the sessions whose end (last time + gap) is ``< closed_before``."""
        import polars as pl

        if self.state is None:
            return 0
        last = self._name(1, "v")
        before = self.state.height
        self.state = self.state.filter(pl.col(last).to_physical() + self.gap_ticks >= closed_before)
        self._compact()
        return int(before - self.state.height)

    def clear(self) -> None:
        if self.state is not None:
            self.state = self.state.clear()
        self._compact()

    def _compact(self) -> None:
        """Forget the groups that have no open window any more (their ids are reused)."""
        import polars as pl

        if self.groups is None or not self.group_by or self.state is None:
            return
        if self.groups.height <= 2 * self.state.height + 1_000:
            return
        live = self.state.select(pl.col(GROUP).unique().sort())
        renumber = live.with_row_index("__dp_new").with_columns(pl.col("__dp_new").cast(pl.Int64))
        self.groups = self.groups.select(pl.all().gather(live[GROUP]))
        self._id_table = None
        self.state = (
            self.state.join(renumber, on=GROUP, how="left").drop(GROUP).rename({"__dp_new": GROUP})
        )

    # -- finishing --------------------------------------------------------------------------

    def empty(self) -> Any:
        """No windows: an empty result with the output columns (typed once rows were seen)."""
        import polars as pl

        if self.state is None or self.time_dtype is None:
            return nw.from_native(pl.DataFrame({c: [] for c in self.step.output_columns([])}))
        if self.kind == "session":
            return self._finish_sessions(self.state.clear())
        return self._finish_panes(self.state.clear().rename({PANE: _START}))

    def _values(self, rows: Any) -> Any:
        """``rows`` with the group values in place of the group id."""
        import polars as pl

        if not self.group_by:
            return rows
        values = self.groups.select(pl.all().gather(rows[GROUP]))
        return pl.concat([values, rows], how="horizontal")

    def _finish_panes(self, rows: Any) -> Any:
        """Merged pane partials (``GROUP``, ``_START``, partials) -> the step's output."""
        done = nw.from_native(self._finished(self._values(rows), key=self._types()))
        # sorted here: an eager sort of a few thousand rows costs half of a planned one
        starts = rows[_START]
        return self.step.sort_windows(done, one_start=starts.len() > 0 and starts.n_unique() == 1)

    def _finish_plan(self, rows: Any) -> Any:
        """The windows' bounds in the time column's type, the aggregates, then ``having``
        (lazy; the group values are in ``rows`` already; :meth:`_finish_panes` sorts)."""
        s = self.step.settings
        start = nw.col(_START).cast(nw.Int64)
        typed = rows.with_columns(
            start.cast(self._time_type()).alias(s.start_column),
            (start + self.window_ticks).cast(self._time_type()).alias(s.end_column),
        )
        finalizer = self._finalizer(self.group_by)
        return self.step.finish(finalizer.finalize(typed).drop(GROUP), sort=False)

    def _time_type(self) -> Any:
        """The time column's type (a Polars Datetime) as a Narwhals dtype."""
        return nw.Datetime(self.time_dtype.time_unit, self.time_dtype.time_zone)

    def _finish_sessions(self, rows: Any) -> Any:
        import polars as pl

        s = self.step.settings
        assert self.step.gap is not None
        start, last = self._name(0, "v"), self._name(1, "v")
        typed = rows.with_columns(
            pl.col(start).alias(s.start_column),
            (pl.col(last) + self.step.gap).alias(s.end_column),
        )
        return self.step.finish(self._finalize(typed).drop(_START, _LAST))

    def _finalizer(self, values: list[str] | None = None) -> PartialAggregation:
        """Finishes merged partials; ``values``: the group columns the rows carry already."""
        s = self.step.settings
        finalizer = PartialAggregation(
            [*(values or []), GROUP, s.start_column, s.end_column], self.plans, self.component
        )
        finalizer.dtypes = self.partials.dtypes  # the input types: outputs get their logical type
        return finalizer

    def _finalize(self, rows: Any) -> Any:
        """Partials -> group keys, window bounds and the aggregates (a Narwhals frame)."""
        done = self._finalizer().finalize(nw.from_native(rows)).to_native()
        return nw.from_native(self._values(done).drop(GROUP))

    # -- snapshot -----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What must match for a snapshot of this state to be restored here."""
        step = self.step
        return {
            "kind": self.kind,
            "window": str(step.window),
            "slide": str(step.slide),
            "gap": str(step.gap),
            "group_by": self.group_by,
            "time": step.time_column,
            "plans": [dataclasses.astuple(p) for p in self.plans],
        }
