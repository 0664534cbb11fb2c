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
    """Abstract base for all transformers: ``transform(data) -> same type as data``.

    Every transformer takes a native frame (pandas, Polars eager or lazy, PyArrow, DuckDB,
    PySpark) and returns the same native type; its metadata records rows in and out, the time
    taken and the last error. Write a transformer by subclassing :class:`DataFrameTransformer`.

    Raises:
        ColumnNotFoundError: a column the config names is not in the data (checked from the
            schema before anything runs).
        InputTypeError: the input is not a supported data frame.
        TransformationError: the transformation failed; the message names the transformer.

    Example:
        >>> import polars as pl
        >>> from data_pipeline.transformation import ColumnRenamer, Transformer
        >>> renamer = ColumnRenamer(name="rename", config={"mapping": {"qty": "quantity"}})
        >>> isinstance(renamer, Transformer)
        True
        >>> renamer.transform(pl.DataFrame({"qty": [1, 2]})).columns
        ['quantity']
        >>> renamer.get_metadata()["rows_out"]
        2
    """

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

    Raises:
        ConfigError: the config is invalid (raised when the transformer is built).
        ColumnNotFoundError: a column the config names is not in the data (checked from the schema
            before anything runs).
        InputTypeError: the input is not a supported data frame.
        UnsupportedOperationError: the engine cannot do an operation (e.g. a fill that needs a row
            order on a lazy frame without ``order_by``).
        TransformationError: any other failure; the message names the transformer.

    Example:
        >>> import narwhals as nw
        >>> import polars as pl
        >>> from data_pipeline.core.config import ConfigModel
        >>> class UpperConfig(ConfigModel):
        ...     columns: list[str]
        >>> class Upper(DataFrameTransformer):
        ...     config_model = UpperConfig
        ...     def required_columns(self, columns):
        ...         return self.settings.columns
        ...     def _apply_frame(self, frame, op):
        ...         return frame.with_columns(nw.col(*self.settings.columns).str.to_uppercase())
        >>> Upper(name="upper", config={"columns": ["city"]}).transform(
        ...     pl.DataFrame({"city": ["oslo", "lima"]}))["city"].to_list()
        ['OSLO', 'LIMA']
    """
