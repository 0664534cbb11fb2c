"""DataProcessor: the base of every processor (Narwhals; native in, same native type out)."""

from __future__ import annotations

from typing import Any, ClassVar

from data_pipeline.core.errors import ProcessingError
from data_pipeline.core.step import FrameStep

__all__ = ["DataProcessor"]


class DataProcessor(FrameStep):
    """Abstract base for all data processors: ``process(data) -> same type as data``.

    Subclasses implement ``_apply_frame(frame, op)`` on a Narwhals frame, declare the columns they
    read in ``required_columns`` and the columns they produce in ``output_columns``.
    """

    layer: ClassVar[str] = "processing"
    error_class = ProcessingError
    operation_name = "process"

    def process(self, data: Any) -> Any:
        """Process a native frame (pandas, Polars, PyArrow, DuckDB, PySpark); same type out."""
        return self.run(data)
