"""Frame steps and step pipelines: the mechanism shared by transformers and processors.

A :class:`FrameStep` takes a native frame and returns the same native type. Steps written with
Narwhals expressions implement :meth:`FrameStep._apply_frame` and never leave Narwhals, so a
:class:`StepPipeline` can chain them on a lazy frame and collect once at the end (or never, when
the caller passed a lazy frame and wants one back).

Before running, a pipeline checks from the schema alone (no computing) that every column each step
needs will exist: each step declares :meth:`FrameStep.required_columns` and
:meth:`FrameStep.output_columns`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

import narwhals as nw

from data_pipeline.core.component import Component, Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.engines import (
    check_column_case,
    check_spark_dotted_names,
    engine_of,
    is_case_insensitive,
)
from data_pipeline.core.errors import ColumnNotFoundError, DataPipelineError, NotFoundError
from data_pipeline.core.frames import column_names, require_columns, row_count, to_narwhals

__all__ = ["FrameStep", "StepPipeline"]

NwFrame = Any  # narwhals DataFrame | LazyFrame


class FrameStep(Component):
    """A component that maps a frame to a frame of the same engine.

    Subclasses implement :meth:`_apply_frame` on a Narwhals frame (preferred: runs on every engine
    and stays lazy), or override :meth:`_apply_native` to work on the native object.
    """

    operation_name: ClassVar[str] = "apply"

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        self.last_rejects: Any = None  # native frame of rows routed out, with a `_reject_reason`

    # -- hooks -------------------------------------------------------------------------------

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        """Columns this step reads, given the columns it will receive."""
        return []

    def output_columns(self, columns: Sequence[str]) -> list[str]:
        """Columns this step produces, given the columns it will receive (schema only)."""
        return list(columns)

    def _apply_frame(self, frame: NwFrame, op: Operation) -> NwFrame:
        """Map a Narwhals frame to a Narwhals frame. The default calls :meth:`_apply_native`."""
        native = frame.to_native()
        result = self._apply_native(native, op)
        return to_narwhals(result, component=self.label)

    def _apply_native(self, data: Any, op: Operation) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} must implement _apply_frame or _apply_native"
        )

    # -- the public mechanism ----------------------------------------------------------------

    def apply(self, frame: NwFrame) -> NwFrame:
        """Run the step on a Narwhals frame with metadata and error translation."""
        with self._operation(self.operation_name, rows_in=row_count(frame)) as op:
            names = column_names(frame)
            engine = engine_of(frame)
            if is_case_insensitive(engine):
                session = getattr(frame.to_native(), "sparkSession", None)
                check_column_case(names, engine, component=self.label, session=session)
            # PySpark: Narwhals quotes column names from here on (core.spark_names)
            check_spark_dotted_names(names, engine, component=self.label)
            require_columns(frame, self.required_columns(names), component=self.label)
            result = self._apply_frame(frame, op)
            op.rows_out = row_count(result)
            return result

    def run(self, data: Any) -> Any:
        """Native frame in, same native type out."""
        frame = to_narwhals(data, component=self.label)
        return self.apply(frame).to_native()


S = TypeVar("S", bound=FrameStep)


class _NoConfig(ConfigModel):
    pass


class StepPipeline(Component, Generic[S]):
    """Ordered steps; add, insert, remove, get; a schema check before running; per-step metadata."""

    config_model = _NoConfig
    step_type: ClassVar[type[FrameStep]] = FrameStep
    step_kind: ClassVar[str] = "step"
    pipeline_error: ClassVar[type[DataPipelineError]] = DataPipelineError

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        self.steps: list[S] = []
        self.step_metadata: list[dict[str, Any]] = []
        self.rejects: dict[str, Any] = {}
        """Rows each step routed out on the last run (native frames with ``_reject_reason``)."""

    def add(self, step: S) -> StepPipeline[S]:
        self._check_step(step)
        self.steps.append(step)
        return self

    def insert(self, index: int, step: S) -> StepPipeline[S]:
        self._check_step(step)
        self.steps.insert(index, step)
        return self

    def remove(self, name: str) -> S:
        step = self.get(name)
        self.steps.remove(step)
        return step

    def get(self, name: str) -> S:
        for step in self.steps:
            if step.name == name:
                return step
        known = ", ".join(repr(s.name) for s in self.steps) or f"no {self.step_kind}s yet"
        raise NotFoundError(
            f"no {self.step_kind} named {name!r}", component=self.label, hint=f"steps: {known}"
        )

    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def _check_step(self, step: S) -> None:
        if not isinstance(step, self.step_type):
            raise self.pipeline_error(
                f"expected a {self.step_type.__name__}, got {type(step).__name__}",
                component=self.label,
            )
        if any(s.name == step.name for s in self.steps):
            from data_pipeline.core.errors import DuplicateNameError

            raise DuplicateNameError(
                f"a {self.step_kind} named {step.name!r} is already in the pipeline",
                component=self.label,
                hint="give each step a unique name",
            )

    def check(self, columns: Sequence[str]) -> list[str]:
        """Check from column names alone that each step's inputs will exist; return the outputs."""
        current = list(columns)
        for position, step in enumerate(self.steps):
            needed = step.required_columns(current)
            missing = [c for c in needed if c not in current]
            if missing:
                raise _combine_column_error(self.pipeline_error)(
                    f"step {position} ({step.label}) needs column(s) {', '.join(map(repr, missing))}, "
                    f"which will not exist at that point",
                    component=self.label,
                    hint=f"columns available there: {', '.join(map(repr, current))}; "
                    "check the order of the steps and the column names",
                )
            current = step.output_columns(current)
        return current

    def run_frame(self, frame: NwFrame) -> NwFrame:
        """Run every step on a Narwhals frame; stays lazy when the input is lazy."""
        with self._operation("run", rows_in=row_count(frame)) as op:
            self.check(column_names(frame))
            self.step_metadata = []
            self.rejects = {}
            for step in self.steps:
                start = time.perf_counter()
                frame = step.apply(frame)
                rejected = step._last.rows_rejected if step._last is not None else None
                if rejected:
                    self.rejects[step.name] = step.last_rejects
                    op.rows_rejected = (op.rows_rejected or 0) + rejected
                self.step_metadata.append(
                    {
                        "step": step.name,
                        "type": type(step).__name__,
                        "seconds": round(time.perf_counter() - start, 6),
                        "rows_out": row_count(frame),
                        "rows_rejected": rejected,
                    }
                )
            op.rows_out = row_count(frame)
            op.details["steps"] = list(self.step_metadata)
            return frame

    def run(self, data: Any) -> Any:
        frame = to_narwhals(data, component=self.label)
        return self.run_frame(frame).to_native()

    def __len__(self) -> int:
        return len(self.steps)


def _combine_column_error(layer: type[DataPipelineError]) -> type[DataPipelineError]:
    from data_pipeline.core.component import _combine

    return _combine(layer, ColumnNotFoundError)


def is_narwhals_frame(obj: Any) -> bool:
    return isinstance(obj, (nw.DataFrame, nw.LazyFrame))
