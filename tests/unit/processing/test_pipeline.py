"""ProcessingPipeline and ProcessingManager with the layer's processors, on every engine."""

from __future__ import annotations

from typing import Any

import narwhals as nw
import polars as pl
import pytest

from data_pipeline.core.errors import NotFoundError, ProcessingPipelineError
from data_pipeline.processing import (
    DataAggregator,
    DataEnricher,
    DataFilter,
    DataJoiner,
    ProcessingManager,
    WindowedAggregator,
)
from data_pipeline.processing.config import data_aggregator_config
from tests.unit.processing.oracle import assert_same, duck

SALES = {
    "date": ["2024-01-01", "2024-01-01", "2024-01-02", None, "2024-01-02"],
    "product_id": [1, 2, 1, 1, None],
    "region": ["north", "south", "east", "north", "south"],
    "quantity": [3, 5, 1, 2, 4],
    "price": [10.0, None, 11.0, 9.0, 8.0],
}
PRODUCTS = {"product_id": [1, 2], "category": ["toys", "food"]}


def test_spec_flow_on_every_engine(make_frame: Any) -> None:
    manager = ProcessingManager()
    pipeline = manager.create_pipeline("process_pipeline")
    pipeline.add_processor(DataFilter(name="no_east", config={"condition": "region <> 'east'"}))
    pipeline.add_processor(
        DataEnricher(name="revenue", config={"derived": {"revenue": "quantity * price"}})
    )
    pipeline.add_processor(
        DataJoiner(
            name="category", config={"how": "left", "on": "product_id"}, right=make_frame(PRODUCTS)
        )
    )
    pipeline.add_processor(DataAggregator(name="aggregate_data", config=data_aggregator_config))
    native = make_frame(SALES)
    result = manager.process(native, "process_pipeline")
    assert type(result) is type(native)
    expected = duck(
        "select date, product_id, sum(quantity) as quantity, avg(price) as price, "
        "coalesce(sum(quantity * price), 0) as revenue from t where region <> 'east' "
        "group by all order by date nulls last, product_id nulls last",
        t=SALES,
    )
    assert_same(result, expected, ordered=True)
    steps = pipeline.get_metadata()["details"]["steps"]
    assert [s["step"] for s in steps] == ["no_east", "revenue", "category", "aggregate_data"]


def test_lazy_stays_lazy() -> None:
    manager = ProcessingManager()
    manager.create_pipeline("lazy").add_processor(
        DataFilter(name="f", config={"condition": "price > 8"})
    ).add_processor(
        DataAggregator(name="a", config={"group_by": "region", "aggregations": {"price": "sum"}})
    )
    result = manager.process(pl.DataFrame(SALES).lazy(), "lazy")
    assert isinstance(result, pl.LazyFrame)
    assert result.collect().height == 2


def test_check_catches_a_column_dropped_by_an_earlier_step() -> None:
    manager = ProcessingManager()
    pipeline = manager.create_pipeline("bad_order")
    pipeline.add_processor(
        DataAggregator(
            name="a", config=data_aggregator_config | {"aggregations": {"quantity": "sum"}}
        )
    )
    pipeline.add_processor(DataFilter(name="f", config={"condition": "region = 'north'"}))
    with pytest.raises(ProcessingPipelineError, match="needs column\\(s\\) 'region'") as info:
        manager.process(pl.DataFrame(SALES), "bad_order")
    assert "'quantity'" in str(info.value)


def test_schema_hooks_chain() -> None:
    manager = ProcessingManager()
    pipeline = manager.create_pipeline("schema")
    pipeline.add_processor(
        DataEnricher(name="e", config={"derived": ["revenue = quantity * price"]})
    )
    pipeline.add_processor(
        WindowedAggregator(
            name="w",
            config={"time_column": "date", "window": "1d", "aggregations": {"revenue": "sum"}},
        )
    )
    assert pipeline.check(list(SALES)) == ["window_start", "window_end", "revenue"]


def test_manager_unknown_pipeline_lists_known() -> None:
    manager = ProcessingManager()
    manager.create_pipeline("one")
    with pytest.raises(NotFoundError, match="one"):
        manager.process(pl.DataFrame(SALES), "two")


def test_narwhals_frames_pass_through() -> None:
    frame = nw.from_native(pl.DataFrame(SALES))
    out = DataFilter(name="f", config={"condition": "quantity >= 3"}).apply(frame)
    assert isinstance(out, nw.DataFrame)
    assert out.shape[0] == 3
