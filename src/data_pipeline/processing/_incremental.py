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
    """Partial aggregates of each batch merged into one Polars state (exact, never avg of avgs)."""

    def __init__(self, step: Aggregating, component: str | None = None) -> None:
        self.step = step
        self.partials = PartialAggregation(step.keys, step.plans, component or step.label)
        self.state: Any = None  # polars.DataFrame of merged partials
        self.rows = 0

    @property
    def keys(self) -> list[str]:
        return self.partials.keys

    def prepare(self, frame: Any) -> Any:
        """Rows ready for the partial aggregation (windows assigned for a WindowedAggregator)."""
        if isinstance(self.step, WindowedAggregator):
            return self.step.assign_windows(frame)
        return frame

    def add(self, frame: Any, *, prepared: bool = False) -> Any:
        """Aggregate one batch (a Narwhals frame, any engine), merge it; return its partial.

        ``prepared``: the windows are already assigned (see :meth:`prepare`).
        """
        import polars as pl

        ready = frame if prepared else self.prepare(frame)
        partial = to_polars(self.partials.partial(ready).to_native())
        combined = (
            partial
            if self.state is None
            else pl.concat([self.state, partial], how="vertical_relaxed")
        )
        self.state = self.partials.merge(nw.from_native(combined)).to_native()
        return partial

    def result(self, state: Any = None) -> Any:
        """The finished aggregate (a Narwhals Polars frame): outputs, having, sort."""
        import polars as pl

        state = self.state if state is None else state
        if state is None:
            state = pl.DataFrame()
        if state.width == 0:  # no batch at all: an empty result with the output columns
            return nw.from_native(pl.DataFrame({c: [] for c in self.step.output_columns([])}))
        return self.step.finish(self.partials.finalize(nw.from_native(state)))
