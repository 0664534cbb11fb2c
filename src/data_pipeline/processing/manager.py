"""ProcessingManager: named processing pipelines."""

from __future__ import annotations

from typing import Any

from data_pipeline.core.manager import PipelineManager
from data_pipeline.processing.pipeline import ProcessingPipeline

__all__ = ["ProcessingManager"]


class ProcessingManager(PipelineManager[ProcessingPipeline]):
    """Create, get, list and remove processing pipelines, and run one by name."""

    pipeline_class = ProcessingPipeline

    def process(self, data: Any, pipeline_name: str) -> Any:
        """Run the pipeline named ``pipeline_name`` on ``data``; same native type out."""
        return self._run(data, pipeline_name)
