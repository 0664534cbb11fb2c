"""Event-time watermarks per source partition, for StreamProcessor.

A partition's watermark is the largest event time seen in it (rows with a null or
future-stamped time do not count). The stream's watermark is the smallest of the partitions'
watermarks, over the partitions that are not idle, and never moves back. A partition is idle
when no row of it arrived for ``idle_timeout`` of processing time: it stops holding the
watermark back until its next row.

The watermark is computed *per row*, in arrival order: the watermark a row is judged against
is the one left by the rows before it. That makes lateness a property of the order of the
events alone, never of how they were cut into micro-batches. Everything is vectorised: a
running maximum per partition (one column per partition present), their minimum across
partitions, a running maximum of that (cost: rows x partitions, on Polars columns; one
partition: a NumPy running maximum).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Watermarks"]

_MISSING = object()


class Watermarks:
    """Per-partition maxima, idle clocks and the stream's watermark (physical time integers).

    Args:
        partition_column: the column naming each row's source partition (None: one partition).
        idle_ticks: processing time (microseconds) after which a quiet partition is idle
            (None: never).
    """

    def __init__(self, partition_column: str | None, idle_ticks: int | None) -> None:
        self.partition_column = partition_column
        self.idle_ticks = idle_ticks
        self.partitions: dict[Any, list[int]] = {}  # value -> [max event time, last seen (us)]
        self.watermark: int | None = None
        self.partition_dtype: Any = None

    def active(self, now_us: int) -> list[Any]:
        """The partitions that hold the watermark at processing time ``now_us``."""
        if self.idle_ticks is None:
            return list(self.partitions)
        return [p for p, (_, seen) in self.partitions.items() if now_us - seen <= self.idle_ticks]

    def idle(self, now_us: int) -> list[Any]:
        active = set(self.active(now_us))
        return [p for p in self.partitions if p not in active]

    def start_batch(self, now_us: int) -> int | None:
        """Raise the watermark to what the active partitions allow at ``now_us`` (a partition
        that became idle stops holding it back); returns the watermark."""
        active = self.active(now_us)
        if active:
            self._raise(min(self.partitions[p][0] for p in active))
        return self.watermark

    def _raise(self, value: int | None) -> None:
        if value is not None and (self.watermark is None or value > self.watermark):
            self.watermark = value

    def before_each(self, ticks: Any, parts: Any, now_us: int) -> Any:
        """The watermark before each row (arrival order), as an Int64 Series (null where no
        watermark exists yet); then move the state past all the rows.

        ``ticks``: each row's event time as a physical integer (a Polars Series, no nulls);
        ``parts``: each row's partition (a Series) or None (one partition).
        """
        import polars as pl

        active = set(self.active(now_us))
        if len(ticks) == 0:
            return pl.Series("wm", [], dtype=pl.Int64)
        ticks = ticks.cast(pl.Int64)
        if parts is None:
            known = self.partitions.get(None)
            start = known[0] if known is not None and None in active else None
            before, top = self._one_partition(ticks, start)
            self._advance({None: top}, active, now_us)
            return before
        frame = pl.DataFrame({"t": ticks, "p": parts})
        if self.partition_dtype is None:
            self.partition_dtype = parts.dtype
        grouped = frame.group_by("p", maintain_order=True).agg(pl.col("t").max())
        maxima = dict(zip(grouped["p"].to_list(), grouped["t"].to_list(), strict=True))
        columns = []
        for value in sorted(set(maxima) | active, key=_sort_key):
            mask = pl.col("p").is_null() if value is None else pl.col("p") == value
            run = pl.when(mask).then(pl.col("t")).cum_max().forward_fill().shift(1)
            if value in active:
                run = run.fill_null(self.partitions[value][0])
            columns.append(run)
        lowest = columns[0] if len(columns) == 1 else pl.min_horizontal(columns)
        watermark = lowest.cum_max().forward_fill()
        if self.watermark is not None:
            watermark = watermark.fill_null(self.watermark).clip(lower_bound=self.watermark)
        before = frame.select(watermark.cast(pl.Int64).alias("wm")).to_series()
        self._advance(maxima, active, now_us)
        return before

    def _one_partition(self, ticks: Any, start: int | None) -> tuple[Any, int]:
        """:meth:`before_each` of one partition (NumPy: a running maximum, shifted by one):
        the watermark before row ``i`` is the largest of ``start``, the stream's watermark and
        the times of rows ``0 .. i-1``; also the batch's largest time."""
        import numpy as np
        import polars as pl

        values = ticks.to_numpy()
        running = np.maximum.accumulate(values)
        floors = [v for v in (start, self.watermark) if v is not None]
        floor = max(floors) if floors else None
        before = np.empty_like(running)
        before[1:] = running[:-1]
        before[0] = running[0] if floor is None else floor
        if floor is not None:
            np.maximum(before, floor, out=before)
        series = pl.Series("wm", before, dtype=pl.Int64)
        if floor is None:  # no watermark before the first row
            series = pl.concat([pl.Series("wm", [None], dtype=pl.Int64), series.slice(1)])
        return series, int(running[-1])

    def _advance(self, maxima: dict[Any, int], active: set[Any], now_us: int) -> None:
        """Move the partitions past a batch (their largest times) and raise the watermark."""
        for value, mark in maxima.items():
            known = self.partitions.get(value)
            self.partitions[value] = [mark if known is None else max(known[0], mark), now_us]
        held = [self.partitions[p][0] for p in (active | set(maxima))]
        self._raise(min(held) if held else None)

    def observe(self, now_ticks: int) -> None:
        """Processing time: the watermark is the clock."""
        self._raise(now_ticks)

    # -- snapshot -----------------------------------------------------------------------------

    def table(self) -> Any:
        """The partitions as a Polars frame (partition, max event time, last seen)."""
        import polars as pl

        values = list(self.partitions)
        dtype = self.partition_dtype if self.partition_dtype is not None else pl.Null
        return pl.DataFrame(
            {
                "partition": pl.Series(values, dtype=dtype),
                "watermark": pl.Series([v[0] for v in self.partitions.values()], dtype=pl.Int64),
                "last_seen": pl.Series([v[1] for v in self.partitions.values()], dtype=pl.Int64),
            }
        )

    def load(self, table: Any, watermark: int | None) -> None:
        dtype = table.schema["partition"]
        self.partition_dtype = None if str(dtype) == "Null" else dtype
        self.partitions = {
            p: [int(w), int(s)]
            for p, w, s in zip(
                table["partition"].to_list(),
                table["watermark"].to_list(),
                table["last_seen"].to_list(),
                strict=True,
            )
        }
        self.watermark = watermark


def _sort_key(value: Any) -> tuple[int, str]:
    return (0, "") if value is None else (1, repr(value))
