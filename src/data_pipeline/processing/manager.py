"""ProcessingManager: named processing pipelines."""

from __future__ import annotations

from typing import Any

from data_pipeline.core.manager import PipelineManager
from data_pipeline.processing.pipeline import ProcessingPipeline

__all__ = ["ProcessingManager"]


class ProcessingManager(PipelineManager[ProcessingPipeline]):
    """Create, get, list and remove processing pipelines, and run one by name.

    Raises:
        NotFoundError: no pipeline has that name (the message lists the known names).
        DuplicateNameError: a pipeline of that name exists already.

    Example:
        >>> import polars as pl
        >>> from data_pipeline.processing import DataFilter
        >>> manager = ProcessingManager()
        >>> manager.create_pipeline("positive").add_processor(
        ...     DataFilter(name="pos", config={"condition": "x > 0"}))
        ProcessingPipeline(name='positive', config={})
        >>> manager.process(pl.DataFrame({"x": [-1, 2]}), "positive")["x"].to_list()
        [2]
        >>> manager.list_pipelines()
        ['positive']
    """

    pipeline_class = ProcessingPipeline

    def process(self, data: Any, pipeline_name: str) -> Any:
        """Run the pipeline named ``pipeline_name`` on ``data``; same native type out."""
        return self._run(data, pipeline_name)
