"""A pipeline keeps what its steps routed out: counts in = counts out + rejected."""

from __future__ import annotations

import polars as pl

from data_pipeline.transformation import DataTypeConverter, TransformationPipeline


def test_pipeline_collects_rejects_and_counts_balance() -> None:
    pipeline = TransformationPipeline("p")
    pipeline.add_transformer(
        DataTypeConverter(name="to_int", config={"columns": {"qty": "int"}, "errors": "reject"})
    )
    data = pl.DataFrame({"qty": ["1", "2", "x", "4", "five"]})
    out = pipeline.transform(data)
    meta = pipeline.get_metadata()
    assert out["qty"].to_list() == [1, 2, 4]
    assert meta["rows_in"] == 5 and meta["rows_out"] == 3 and meta["rows_rejected"] == 2
    assert meta["rows_in"] == meta["rows_out"] + meta["rows_rejected"]
    rejects = pipeline.rejects["to_int"]
    assert rejects["qty"].to_list() == ["x", "five"]
    assert all("qty" in reason for reason in rejects["_reject_reason"].to_list())
    assert pipeline.step_metadata[0]["rows_rejected"] == 2
