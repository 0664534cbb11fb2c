"""Aggregation state kept across batches or micro-batches (BatchProcessor, StreamProcessor)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import narwhals as nw

from data_pipeline.core.frames import to_polars
from data_pipeline.processing._aggregation import PartialAggregation
from data_pipeline.processing.aggregate import DataAggregator
from data_pipeline.processing.base import DataProcessor
from data_pipeline.processing.window import WindowedAggregator

__all__ = ["IncrementalAggregation", "split_steps"]

Aggregating = DataAggregator | WindowedAggregator


def split_steps(
    steps: Sequence[DataProcessor],
) -> tuple[list[DataProcessor], Aggregating | None, list[DataProcessor]]:
    """Steps before the first aggregating step, that step (or None), and the steps after it."""
    for index, step in enumerate(steps):
        if isinstance(step, (DataAggregator, WindowedAggregator)):
            return list(steps[:index]), step, list(steps[index + 1 :])
    return list(steps), None, []


class IncrementalAggregation:
    """Partial aggregates of each batch merged into one Polars state (exact, never avg of avgs).

    A DataAggregator keeps one row per group; a WindowedAggregator keeps its panes or sessions
    (:class:`~data_pipeline.processing._window_state.WindowState`, which never copies a row per
    sliding window).
    """

    def __init__(self, step: Aggregating, component: str | None = None) -> None:
        from data_pipeline.processing._window_state import WindowState

        self.step = step
        self.windows = (
            WindowState(step, component or step.label)
            if isinstance(step, WindowedAggregator)
            else None
        )
        self.partials = PartialAggregation(step.keys, step.plans, component or step.label)
        self._state: Any = None  # polars.DataFrame of merged partials (groups)
        self.rows = 0

    @property
    def state(self) -> Any:
        return self.windows.state if self.windows is not None else self._state

    @state.setter
    def state(self, value: Any) -> None:
        if self.windows is not None:
            self.windows.state = value
        else:
            self._state = value

    @property
    def keys(self) -> list[str]:
        return self.partials.keys

    def add(self, frame: Any) -> Any:
        """Aggregate one batch (a Narwhals frame, any engine), merge it; return its partial
        (windows: what the batch touched)."""
        import polars as pl

        if self.windows is not None:
            step = self.windows.step
            assert isinstance(step, WindowedAggregator)
            return self.windows.add(step.stamp(frame))
        partial = to_polars(self.partials.partial(frame).to_native())
        combined = (
            partial
            if self._state is None
            else pl.concat([self._state, partial], how="vertical_relaxed")
        )
        self._state = self.partials.merge(nw.from_native(combined)).to_native()
        return partial

    def result(self, state: Any = None) -> Any:
        """The finished aggregate (a Narwhals Polars frame): outputs, having, sort.

        Windows: every window of the state (``state`` is ignored)."""
        import polars as pl

        if self.windows is not None:
            if self.windows.kind == "session":
                return self.windows.select_sessions()
            return self.windows.select_panes()
        state = self._state if state is None else state
        if state is None:
            state = pl.DataFrame()
        if state.width == 0:  # no batch at all: an empty result with the output columns
            return nw.from_native(pl.DataFrame({c: [] for c in self.step.output_columns([])}))
        return self.step.finish(self.partials.finalize(nw.from_native(state)))
