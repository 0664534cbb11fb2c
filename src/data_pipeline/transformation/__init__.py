"""Transformation layer: clean and reshape frames on every engine (native type in, same out).

Every transformer is written with Narwhals expressions, so it runs on pandas, Polars (eager and
lazy), PyArrow, DuckDB relations and PySpark, and stays lazy on lazy engines.
"""

from data_pipeline.transformation.base import DataFrameTransformer, Transformer
from data_pipeline.transformation.columns import ColumnRenamer, ColumnSelector
from data_pipeline.transformation.custom import CustomTransformer
from data_pipeline.transformation.manager import TransformationManager
from data_pipeline.transformation.missing import MissingValueHandler
from data_pipeline.transformation.outliers import OutlierHandler
from data_pipeline.transformation.pipeline import TransformationPipeline
from data_pipeline.transformation.types import DataTypeConverter

__all__ = [
    "ColumnRenamer",
    "ColumnSelector",
    "CustomTransformer",
    "DataFrameTransformer",
    "DataTypeConverter",
    "MissingValueHandler",
    "OutlierHandler",
    "TransformationManager",
    "TransformationPipeline",
    "Transformer",
]
