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

    Raises:
        ColumnNotFoundError: a column the config names is not in the data (checked from the
            schema before anything runs).
        InputTypeError: the input is not a supported data frame.
        ProcessingError: processing failed; the message names the processor.

    Example:
        >>> import polars as pl
        >>> from data_pipeline.processing import DataFilter, DataProcessor
        >>> keep = DataFilter(name="big", config={"condition": "amount > 10"})
        >>> isinstance(keep, DataProcessor)
        True
        >>> keep.process(pl.DataFrame({"amount": [5, 20, 30]}))["amount"].to_list()
        [20, 30]
    """

    layer: ClassVar[str] = "processing"
    error_class = ProcessingError
    operation_name = "process"

    def process(self, data: Any) -> Any:
        """Process a native frame (pandas, Polars, PyArrow, DuckDB, PySpark); same type out."""
        return self.run(data)
