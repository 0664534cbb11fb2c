"""ProcessingPipeline: ordered processors, checked from the schema before running."""

from __future__ import annotations

from typing import Any

from data_pipeline.core.errors import ProcessingPipelineError
from data_pipeline.core.step import StepPipeline
from data_pipeline.processing.base import DataProcessor

__all__ = ["ProcessingPipeline"]


class ProcessingPipeline(StepPipeline[DataProcessor]):
    """Apply processors in order; lazy end to end on lazy engines.

    Before anything runs, the pipeline checks from the column names alone that every column each
    processor reads will exist at its turn.

    Raises:
        ProcessingPipelineError: a processor needs a column that no earlier step provides, or a
            name is added twice.

    Example:
        >>> import polars as pl
        >>> from data_pipeline.processing import DataAggregator, DataFilter, ProcessingPipeline
        >>> pipeline = (
        ...     ProcessingPipeline("eu_revenue")
        ...     .add_processor(DataFilter(name="eu", config={"condition": "region = 'EU'"}))
        ...     .add_processor(DataAggregator(name="total", config={
        ...         "group_by": ["region"], "aggregations": {"revenue": "sum"}}))
        ... )
        >>> df = pl.DataFrame({"region": ["EU", "US", "EU"], "revenue": [1.0, 2.0, 3.0]})
        >>> pipeline.process(df).to_dicts()
        [{'region': 'EU', 'revenue': 4.0}]
    """

    layer = "processing"
    error_class = ProcessingPipelineError
    step_type = DataProcessor
    step_kind = "processor"
    pipeline_error = ProcessingPipelineError

    def add_processor(self, processor: DataProcessor) -> ProcessingPipeline:
        self.add(processor)
        return self

    def insert_processor(self, index: int, processor: DataProcessor) -> ProcessingPipeline:
        self.insert(index, processor)
        return self

    def remove_processor(self, name: str) -> DataProcessor:
        return self.remove(name)

    def get_processor(self, name: str) -> DataProcessor:
        return self.get(name)

    @property
    def processors(self) -> list[DataProcessor]:
        return self.steps

    def process(self, data: Any) -> Any:
        """Run every processor in order; native type in, same native type out."""
        return self.run(data)
