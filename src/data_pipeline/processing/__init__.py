"""Processing layer: aggregate, filter, join, enrich and window data; batch and stream runners.

Every processor is written with Narwhals: a pandas, Polars (eager or lazy), PyArrow, DuckDB or
PySpark frame in, the same type out.
"""

from data_pipeline.processing.aggregate import DataAggregator
from data_pipeline.processing.base import DataProcessor
from data_pipeline.processing.batch import BatchProcessor
from data_pipeline.processing.enrich import DataEnricher
from data_pipeline.processing.filter import DataFilter
from data_pipeline.processing.join import DataJoiner
from data_pipeline.processing.manager import ProcessingManager
from data_pipeline.processing.pipeline import ProcessingPipeline
from data_pipeline.processing.stream import StreamProcessor
from data_pipeline.processing.window import WindowedAggregator

__all__ = [
    "BatchProcessor",
    "DataAggregator",
    "DataEnricher",
    "DataFilter",
    "DataJoiner",
    "DataProcessor",
    "ProcessingManager",
    "ProcessingPipeline",
    "StreamProcessor",
    "WindowedAggregator",
]
