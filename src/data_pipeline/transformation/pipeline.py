"""TransformationPipeline: ordered transformers, checked from the schema before running."""

from __future__ import annotations

from typing import Any

from data_pipeline.core.errors import TransformationPipelineError
from data_pipeline.core.step import StepPipeline
from data_pipeline.transformation.base import Transformer

__all__ = ["TransformationPipeline"]


class TransformationPipeline(StepPipeline[Transformer]):
    """Apply transformers in order; lazy end to end on lazy engines (one collect at the end).

    Raises:
        TransformationPipelineError: ``add_transformer`` got something that is not a Transformer, or
            a step needs a column that will not exist at that point (checked from the column names
            before any step runs; it is also a ColumnNotFoundError).
        DuplicateNameError: a transformer of that name is in the pipeline already.
        NotFoundError: ``get_transformer`` / ``remove_transformer`` of an unknown name.
        TransformationError: raised by a step (any subclass), passed on unchanged.

    Example:
        >>> from data_pipeline.transformation import TransformationPipeline, ColumnRenamer
        >>> p = TransformationPipeline("clean")
        >>> _ = p.add_transformer(ColumnRenamer(name="r", config={"mapping": {"a": "b"}}))
        >>> p.names()
        ['r']
    """

    layer = "transformation"
    error_class = TransformationPipelineError
    step_type = Transformer
    step_kind = "transformer"
    pipeline_error = TransformationPipelineError

    def add_transformer(self, transformer: Transformer) -> TransformationPipeline:
        self.add(transformer)
        return self

    def insert_transformer(self, index: int, transformer: Transformer) -> TransformationPipeline:
        self.insert(index, transformer)
        return self

    def remove_transformer(self, name: str) -> Transformer:
        return self.remove(name)

    def get_transformer(self, name: str) -> Transformer:
        return self.get(name)

    @property
    def transformers(self) -> list[Transformer]:
        return self.steps

    def transform(self, data: Any) -> Any:
        """Run every transformer in order; native type in, same native type out."""
        return self.run(data)
