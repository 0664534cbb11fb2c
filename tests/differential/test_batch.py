"""BatchProcessor against the same oracle as DataAggregator.

Partial aggregates merged across batches must give exactly the one-pass answer, with the same
output schema, on every engine and for every batch size; what cannot be merged (median,
n_unique) is refused the same way everywhere.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from data_pipeline.core.errors import UnsupportedOperationError
from data_pipeline.processing import (
    BatchProcessor,
    DataAggregator,
    ProcessingPipeline,
)
from tests.differential.frames import build
from tests.differential.harness import Expected, check, engine_test, input_view, to_engine
from tests.differential.test_aggregate import aggregation_case, expected_aggregate


@st.composite
def batch_case(draw: st.DrawFn) -> dict[str, Any]:
    case = draw(aggregation_case())
    case["batch_size"] = draw(st.integers(1, 5))
    case["input"] = draw(st.sampled_from(["frame", "frame", "batches"]))
    case["output"] = draw(st.sampled_from(["polars", "native"]))
    return case


def expected_batched(case: dict[str, Any], df: Any, engine: str) -> Expected:
    for _column, func, _, _ in case["plans"]:  # known from the config: refused first
        if func in ("median", "n_unique"):
            return Expected(error=UnsupportedOperationError, match="cannot be combined")
    return expected_aggregate(case, df, engine)


CASE = batch_case()


def run_case(engine: str, case: dict[str, Any], request: Any) -> None:
    df = build(case["columns"])
    expected = expected_batched(case, input_view(df, engine), engine)
    pipeline = ProcessingPipeline("p").add_processor(
        DataAggregator(name="agg", config=case["config"])
    )
    runner = BatchProcessor(
        name="batches",
        config={"batch_size": case["batch_size"], "output": case["output"]},
        pipeline=pipeline,
    )
    if case["input"] == "batches":  # an iterable of frames of the engine, in order
        size = case["batch_size"]
        # a source that found nothing still yields one typed empty batch (an empty iterator
        # has no schema: tests/unit/processing/test_batch.py)
        parts = [df.slice(i, size) for i in range(0, df.height, size)] or [df]
        native: Any = [to_engine(p, engine, request) for p in parts]
    else:
        native = to_engine(df, engine, request)
    check(engine, runner.process, native, expected, context=repr(case))


test_batch_processor = engine_test(CASE, run_case)
