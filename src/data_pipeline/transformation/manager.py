"""TransformationManager: named transformation pipelines."""

from __future__ import annotations

from typing import Any

from data_pipeline.core.manager import PipelineManager
from data_pipeline.transformation.pipeline import TransformationPipeline

__all__ = ["TransformationManager"]


class TransformationManager(PipelineManager[TransformationPipeline]):
    """Create, get, list and remove transformation pipelines, and run one by name.

    Raises:
        DuplicateNameError: a pipeline of that name is registered already.
        NotFoundError: no pipeline has the given name (the message lists the registered ones).

    Example:
        >>> m = TransformationManager()
        >>> _ = m.create_pipeline("clean")
        >>> m.list_pipelines()
        ['clean']
    """

    pipeline_class = TransformationPipeline

    def transform(self, data: Any, pipeline_name: str) -> Any:
        """Run the pipeline named ``pipeline_name`` on ``data``; same native type out."""
        return self._run(data, pipeline_name)
