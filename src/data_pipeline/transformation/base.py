"""Transformer bases.

:class:`Transformer` is the contract: ``transform(data)`` takes a native frame and returns the same
native type. :class:`DataFrameTransformer` is the base for transformers written with Narwhals
expressions, which then run on pandas, Polars (eager and lazy), PyArrow, DuckDB and PySpark.
"""

from __future__ import annotations

from typing import Any, ClassVar

from data_pipeline.core.errors import TransformationError
from data_pipeline.core.step import FrameStep

__all__ = ["DataFrameTransformer", "Transformer"]


class Transformer(FrameStep):
    """Abstract base for all transformers: ``transform(data) -> same type as data``."""

    layer: ClassVar[str] = "transformation"
    error_class = TransformationError
    operation_name = "transform"

    def transform(self, data: Any) -> Any:
        """Transform a native frame (pandas, Polars, PyArrow, DuckDB, PySpark); same type out."""
        return self.run(data)


class DataFrameTransformer(Transformer):
    """Base for transformers written with Narwhals expressions.

    Write a new transformer by declaring a config model and implementing ``_apply_frame`` on a
    Narwhals frame; it then runs on every engine and stays lazy on lazy ones::

        import narwhals as nw
        from data_pipeline.core.config import ConfigModel
        from data_pipeline.transformation import DataFrameTransformer

        class UpperConfig(ConfigModel):
            columns: list[str]

        class Upper(DataFrameTransformer):
            config_model = UpperConfig

            def required_columns(self, columns):
                return self.settings.columns

            def _apply_frame(self, frame, op):
                return frame.with_columns(nw.col(*self.settings.columns).str.to_uppercase())

        Upper(name="upper", config={"columns": ["city"]}).transform(df)
    """
