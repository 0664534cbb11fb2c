"""TransformationPipeline and TransformationManager: order, schema check, metadata, laziness."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from data_pipeline.core.errors import (
    DuplicateNameError,
    NotFoundError,
    TransformationError,
    TransformationPipelineError,
)
from data_pipeline.transformation import (
    ColumnRenamer,
    ColumnSelector,
    CustomTransformer,
    DataTypeConverter,
    MissingValueHandler,
    OutlierHandler,
    TransformationManager,
    TransformationPipeline,
)
from tests.conftest import to_polars
from tests.unit.transformation.conftest import LAZY_ENGINES, assert_same, oracle


def sales() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "Unit Price": [10.0, None, 12.0, 500.0, 11.0],
            "Qty": ["1", "2", None, "4", "5"],
            "age": [30.0, None, 40.0, 50.0, None],
        }
    )


def chain(manager: TransformationManager) -> TransformationPipeline:
    pipeline = manager.create_pipeline("clean")
    pipeline.add_transformer(ColumnRenamer(name="names", config={"function": "snake_case"}))
    pipeline.add_transformer(DataTypeConverter(name="types", config={"columns": {"qty": "int"}}))
    pipeline.add_transformer(MissingValueHandler(name="fill", config={"strategy": "median"}))
    pipeline.add_transformer(
        OutlierHandler(
            name="clip", config={"method": "bounds", "upper": 100, "columns": ["unit_price"]}
        )
    )
    pipeline.add_transformer(
        CustomTransformer(name="rev", config={"expression": "revenue = unit_price * qty"})
    )
    pipeline.add_transformer(
        ColumnSelector(name="keep", config={"include": ["id", "revenue", "age"]})
    )
    return pipeline


def test_chain_on_every_engine(make_frame: Any, engine: str, check_type: Any) -> None:
    manager = TransformationManager()
    pipeline = chain(manager)
    frame = make_frame(sales())
    result = manager.transform(frame, "clean")
    check_type(frame, result)
    expected = oracle(
        """with a as (select id, coalesce("Unit Price", median("Unit Price") over ()) as p,
                             coalesce(cast("Qty" as bigint), median(cast("Qty" as bigint)) over ()) as q,
                             coalesce(age, median(age) over ()) as age from t)
           select id, least(p, 100) * q as revenue, age from a""",
        t=sales(),
    )
    assert_same(result, expected)
    steps = pipeline.get_metadata()["details"]["steps"]
    assert [s["step"] for s in steps] == ["names", "types", "fill", "clip", "rev", "keep"]
    assert all(s["seconds"] >= 0 for s in steps)
    if engine not in LAZY_ENGINES:
        assert [s["rows_out"] for s in steps] == [5] * 6
    else:
        assert all(s["rows_out"] is None for s in steps)


def test_lazy_end_to_end_returns_lazy() -> None:
    manager = TransformationManager()
    chain(manager)
    lazy = sales().lazy()
    result = manager.transform(lazy, "clean")
    assert isinstance(result, pl.LazyFrame)  # nothing was collected into the result
    assert result.collect().height == 5


def test_schema_check_before_running() -> None:
    pipeline = TransformationPipeline("p")
    pipeline.add_transformer(ColumnSelector(name="keep", config={"include": ["id"]}))
    pipeline.add_transformer(MissingValueHandler(name="fill", config={"columns": ["age"]}))
    calls: list[int] = []

    def spy(frame: Any) -> Any:
        calls.append(1)
        return frame

    pipeline.insert_transformer(0, CustomTransformer(name="spy", config={"function": spy}))
    with pytest.raises(TransformationPipelineError) as info:
        pipeline.transform(sales())
    text = str(info.value)
    assert "'age'" in text and "MissingValueHandler 'fill'" in text and "'id'" in text
    assert calls == []  # checked from the schema alone, before any step ran


def test_add_insert_remove_get() -> None:
    pipeline = TransformationPipeline("p")
    a = ColumnRenamer(name="a", config={"function": "lower"})
    b = ColumnSelector(name="b", config={"include": ["id"]})
    pipeline.add_transformer(b).insert_transformer(0, a)
    assert pipeline.names() == ["a", "b"]
    assert pipeline.get_transformer("b") is b
    assert pipeline.remove_transformer("a") is a
    assert pipeline.names() == ["b"]
    with pytest.raises(NotFoundError, match="'b'"):
        pipeline.get_transformer("zzz")
    with pytest.raises(DuplicateNameError):
        pipeline.add_transformer(ColumnSelector(name="b", config={"include": ["x"]}))
    with pytest.raises(TransformationError):
        pipeline.add_transformer("not a transformer")  # type: ignore[arg-type]


def test_manager() -> None:
    manager = TransformationManager()
    manager.create_pipeline("one")
    manager.create_pipeline("two")
    assert manager.list_pipelines() == ["one", "two"]
    with pytest.raises(DuplicateNameError):
        manager.create_pipeline("one")
    with pytest.raises(NotFoundError) as info:
        manager.transform(sales(), "three")
    assert "'one'" in str(info.value) and "'two'" in str(info.value)
    manager.remove_pipeline("one")
    assert manager.list_pipelines() == ["two"]
    assert manager.get_pipeline("two").name == "two"
    # an empty pipeline returns the data unchanged
    assert to_polars(manager.transform(sales(), "two")).equals(sales())


def test_spec_basic_usage_flow() -> None:
    manager = TransformationManager()
    pipeline = manager.create_pipeline("transform_pipeline")
    pipeline.add_transformer(
        MissingValueHandler(
            name="handle_missing_values",
            config={"strategy": "fill", "columns": ["age", "income", "education"]},
        )
    )
    data = pl.DataFrame(
        {"age": [20.0, None, 40.0], "income": [None, 5.0, 7.0], "education": ["a", "a", None]}
    )
    out = manager.transform(data, "transform_pipeline")
    assert out.to_dict(as_series=False) == {
        "age": [20.0, 30.0, 40.0],
        "income": [6.0, 5.0, 7.0],
        "education": ["a", "a", "a"],
    }
    meta = pipeline.get_transformer("handle_missing_values").get_metadata()
    assert meta["details"]["filled"] == {"age": 1, "income": 1, "education": 1}
