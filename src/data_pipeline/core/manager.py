"""Managers hold named components in a :class:`~data_pipeline.core.registry.Registry`."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from data_pipeline.core.registry import Registry
from data_pipeline.core.step import StepPipeline

__all__ = ["PipelineManager"]

P = TypeVar("P", bound=StepPipeline[Any])


class PipelineManager(Generic[P]):
    """Create, get, list, remove and run named step pipelines (transformation, processing)."""

    pipeline_class: ClassVar[type[StepPipeline[Any]]]

    def __init__(self) -> None:
        self.pipelines: Registry[P] = Registry("pipeline", type(self).__name__)

    def create_pipeline(self, name: str) -> P:
        """Create an empty pipeline, register it under ``name`` and return it."""
        pipeline: P = self.pipeline_class(name)  # type: ignore[assignment]
        return self.pipelines.add(name, pipeline)

    def register_pipeline(self, pipeline: P) -> P:
        return self.pipelines.add(pipeline.name, pipeline)

    def get_pipeline(self, name: str) -> P:
        return self.pipelines.get(name)

    def list_pipelines(self) -> list[str]:
        return self.pipelines.names()

    def remove_pipeline(self, name: str) -> P:
        return self.pipelines.remove(name)

    def get_metadata(self, name: str) -> dict[str, Any]:
        return self.pipelines.get(name).get_metadata()

    def _run(self, data: Any, name: str) -> Any:
        return self.pipelines.get(name).run(data)
